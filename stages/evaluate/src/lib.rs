//! `evaluate.backtest`: how good the forecasts are against what users run today (the
//! baselines here, KRR and VPA from `applearner-plan`).

pub mod backtest;
pub mod baselines;
mod blend;
mod conformal;
mod error;
mod fallback;
mod forecasts;
mod groups;
pub mod metrics;
mod scoring;
mod tally;

pub use error::EvaluateError;

pub fn register(registry: &mut applearner_pipeline::Registry) {
    registry.register::<backtest::BacktestParams>();
}
