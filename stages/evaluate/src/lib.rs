//! Backtests: how good the forecasts are against what users run today
//! (`evaluate.backtest`, [`backtest`]), and what resources to give each workload, replayed
//! against the usage that really followed (`plan.resources`, [`plan`]).

pub mod backtest;
pub mod baselines;
mod conformal;
mod error;
mod fallback;
pub mod metrics;
pub mod plan;
pub mod recommend;
mod scoring;
mod table;
mod units;

pub use error::EvaluateError;

pub fn register(registry: &mut applearner_pipeline::Registry) {
    registry.register::<backtest::BacktestParams>();
    registry.register::<plan::PlanParams>();
}
