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

/// `plan.resources` → `plan_backtest`: per method, setting, resource and series (`key`
/// empty: all series), the test part replayed against its requests.
pub mod plan_backtest {
    pub const NAME: &str = "plan_backtest";
    pub const METHOD: &str = "method";
    pub const SETTING: &str = "setting";
    /// `yes` for the configured setting (model) or the tool's default (VPA, KRR).
    pub const DEFAULT: &str = "default";
    pub const RESOURCE: &str = "resource";
    pub const KEY: &str = "key";
    pub const PROVISIONED_HOURS: &str = "provisioned_hours";
    pub const USED_HOURS: &str = "used_hours";
    pub const SLACK_HOURS: &str = "slack_hours";
    pub const SLACK_PCT: &str = "slack_pct";
    pub const UNDER_PROVISIONED_PCT: &str = "under_provisioned_pct";
    pub const UNDER_PROVISIONED_STEPS: &str = "under_provisioned_steps";
    pub const CHANGES: &str = "changes";
}

/// `plan.resources` → `plan_comparison`: the model's slack at each recommender's risk.
pub mod plan_comparison {
    pub const NAME: &str = "plan_comparison";
    pub const RESOURCE: &str = "resource";
    pub const BASELINE: &str = "baseline";
    pub const BASELINE_UNDER_PROVISIONED_PCT: &str = "baseline_under_provisioned_pct";
    pub const BASELINE_SLACK_PCT: &str = "baseline_slack_pct";
    pub const MODEL_SLACK_PCT: &str = "model_slack_pct";
}

/// `plan.resources` → `plan`: per workload and interval ahead, requests and the memory limit
/// of the resources the model forecasts.
pub mod plan {
    pub const NAME: &str = "plan";
    pub const KEY: &str = "key";
    pub const NAMESPACE: &str = "namespace";
    pub const WORKLOAD: &str = "workload";
    pub const CONTAINER: &str = "container";
    pub const FROM: &str = "from";
    pub const UNTIL: &str = "until";
    pub const CPU_REQUEST_CORES: &str = "cpu_request_cores";
    pub const MEMORY_REQUEST_BYTES: &str = "memory_request_bytes";
    pub const MEMORY_LIMIT_BYTES: &str = "memory_limit_bytes";
}
