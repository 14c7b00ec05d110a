//! What can go wrong in the backtest, each with the fix.

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(
        "the test part has no windows with an origin on the clock's grid of `stride` steps: give features.build a test split (split: {{test: 0.2}}) with windows one step apart (windows: {{stride: 1}})"
    )]
    NoTestWindows,
    #[error(
        "the validation part has no windows, and `auto` chooses each series' method and calibrates quantiles there: give features.build a validation split (split: {{validation: 0.2, test: 0.2}})"
    )]
    NoValidationWindows,
    #[error(
        "external: {path}: {error}; give the Parquet file of forecasts that benches/statsforecast_reference.py writes"
    )]
    External { path: String, error: std::io::Error },
}
