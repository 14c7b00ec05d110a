//! What can go wrong in the plan, each with the fix.

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{resource}.source `{asked}`: the model forecasts [{forecast}]; choose one of them (or `point`)")]
    SourceNotForecast { resource: &'static str, asked: String, forecast: String },
    #[error("the forecasts table has no `{method}` forecasts: run evaluate.backtest (of this version) first")]
    NoModelForecasts { method: String },
    #[error(
        "the forecasts have no validation part, so plans cannot be calibrated to a risk: give features.build a validation split (split: {{validation: 0.1, test: 0.2}}), or size each resource with `source` and `margin` instead of a risk"
    )]
    NoValidation,
    #[error("no series has forecasts of cpu or memory with actuals: run evaluate.backtest on a model of them")]
    NoActuals,
    #[error(
        "the clean stage summed the replicas of {workloads} workloads (clean.resample `group: {{aggregate: sum}}`): patched onto pods, every replica would reserve the whole workload's usage. Size one pod: set `group: {{by: workload, aggregate: max}}` in the clean stage (the default); keep `sum` only in pipelines that forecast workload totals without plan.resources"
    )]
    SummedReplicas { workloads: usize },
    #[error(
        "another refresh wrote the state after number {previous} while this one ran ({path} exists): its plan stands and this one's is not kept; run the refresh again to continue from it"
    )]
    StateRace { path: String, previous: u64 },
    #[error(
        "{path}: a state table of format {version}, written by another version of AppLearner; this version reads format 1. Run the version that wrote it, or move the folder away to start the loop afresh from the replay (the values in force and the change budget used are then forgotten)"
    )]
    StateVersion { path: String, version: String },
    #[error(
        "{path}: row {row}: changed_last_day is not a list of times ({error}); the state was altered: move the folder away to start the loop afresh"
    )]
    StateRow { path: String, row: usize, error: std::num::ParseIntError },
}
