//! The tables that cross from one stage to the next, by the names their columns and schema
//! metadata have in Parquet. The writer and every reader use these constants, so renaming
//! a column is one change that the compiler follows.

/// `features.build` → `features`: one row per series and step: the scaled values and features.
pub mod features {
    pub const KEY: &str = "key";
    pub const SEGMENT: &str = "segment";
    pub const TIMESTAMP: &str = "timestamp";
    /// The part (`train`, `validation`, `test`) the row's step falls in.
    pub const SPLIT: &str = "split";
}

/// `features.build` → `windows`: one row per window: where it starts in `features`.
pub mod windows {
    pub const SPLIT: &str = "split";
    pub const KEY: &str = "key";
    pub const SEGMENT: &str = "segment";
    /// The first `features` row of the window.
    pub const START: &str = "start";
    /// The time of its last input step, where the forecast starts from.
    pub const ORIGIN: &str = "origin";
    /// Schema metadata: the steps a window sees and forecasts, and the leading steps of
    /// each segment no window uses (rolling features warm up there).
    pub const LOOKBACK_KEY: &str = "applearner.lookback";
    pub const HORIZON_KEY: &str = "applearner.horizon";
    pub const WARMUP_KEY: &str = "applearner.warmup";
}

/// `clean.resample` → `resampled`: one row per series and grid step; beside these, the key's
/// label columns and, per role, its value (`cpu`, `memory`) and a `<role>_filled` flag.
pub mod resampled {
    pub const NAME: &str = "resampled";
    pub const KEY: &str = "key";
    pub const SEGMENT: &str = "segment";
    pub const TIMESTAMP: &str = "timestamp";
}

/// `evaluate.backtest` → `scores`: one row per method, resource, scope (a series `key`, or
/// `mean` / `median` over series), horizon step (0: all steps) and metric.
pub mod scores {
    pub const NAME: &str = "scores";
    pub const METHOD: &str = "method";
    pub const RESOURCE: &str = "resource";
    pub const SCOPE: &str = "scope";
    pub const KEY: &str = "key";
    pub const STEP: &str = "step";
    pub const METRIC: &str = "metric";
    pub const VALUE: &str = "value";
}

/// `evaluate.backtest` → `forecasts`: one row per method, series, resource, origin and step
/// ahead: what happened and the forecast, then a column per quantile level (`p50`, `p90`, …).
pub mod forecasts {
    pub const NAME: &str = "forecasts";
    pub const METHOD: &str = "method";
    pub const KEY: &str = "key";
    pub const RESOURCE: &str = "resource";
    pub const ORIGIN: &str = "origin";
    pub const STEP: &str = "step";
    pub const TIMESTAMP: &str = "timestamp";
    pub const ACTUAL: &str = "actual";
    /// The point forecast.
    pub const FORECAST: &str = "forecast";
}
