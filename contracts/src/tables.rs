//! The tables that cross from one stage to the next, by the names their columns and schema
//! metadata have in Parquet. The writer and every reader use these constants, so renaming
//! a column is one change that the compiler follows.

/// `ingest.prometheus` → `samples`: one row per sample, sorted by metric, series and time;
/// beside these, a column per common label (`namespace`, `pod`, `container`, …).
pub mod samples {
    pub const NAME: &str = "samples";
    pub const METRIC: &str = "metric";
    /// What the metric measures: `cpu`, `memory`, an allocation line, or `other`.
    pub const ROLE: &str = "role";
    /// The series' identity: a hash of its metric and every label.
    pub const SERIES_ID: &str = "series_id";
    /// The labels without a column of their own, as a JSON object.
    pub const LABELS: &str = "labels";
    pub const TIMESTAMP: &str = "timestamp";
    pub const VALUE: &str = "value";
}

/// `ingest.prometheus` → `series`: one row per series, with its labels as `samples` has
/// them, its first and last sample and how many it has.
pub mod series {
    pub const NAME: &str = "series";
    pub const SERIES_ID: &str = "series_id";
    pub const METRIC: &str = "metric";
    pub const ROLE: &str = "role";
    pub const LABELS: &str = "labels";
    pub const FIRST_TIMESTAMP: &str = "first_timestamp";
    pub const LAST_TIMESTAMP: &str = "last_timestamp";
    pub const POINTS: &str = "points";
}

/// `features.build` → `features`: one row per series and step: the scaled values and features.
pub mod features {
    pub const NAME: &str = "features";
    pub const KEY: &str = "key";
    pub const SEGMENT: &str = "segment";
    pub const TIMESTAMP: &str = "timestamp";
    /// The part (`train`, `validation`, `test`) the row's step falls in.
    pub const SPLIT: &str = "split";
    /// Schema metadata: the value columns beyond the usage (clean.resample's `inputs:`), and
    /// the features derived from them (`net_rx`, `net_rx_mean12`, …), each comma-separated.
    pub const COVARIATES_KEY: &str = "covariates";
    pub const COVARIATE_FEATURES_KEY: &str = "covariate_features";
}

/// `features.build` → `windows`: one row per run of windows (those of one series, segment
/// and part, `stride` rows apart): where the first starts in `features` and how many there
/// are. Window `i` of a run starts at row `start + i × stride`.
pub mod windows {
    pub const NAME: &str = "windows";
    pub const SPLIT: &str = "split";
    pub const KEY: &str = "key";
    pub const SEGMENT: &str = "segment";
    /// The first `features` row of the run's first window.
    pub const START: &str = "start";
    /// The time of that window's last input step, where its forecast starts from.
    pub const ORIGIN: &str = "origin";
    /// How many windows the run holds.
    pub const WINDOWS: &str = "windows";
    /// Schema metadata: the steps a window sees and forecasts, the rows between the starts
    /// of a run's windows, and the leading steps of each segment no window uses (rolling
    /// features warm up there).
    pub const LOOKBACK_KEY: &str = "applearner.lookback";
    pub const HORIZON_KEY: &str = "applearner.horizon";
    pub const STRIDE_KEY: &str = "applearner.stride";
    pub const WARMUP_KEY: &str = "applearner.warmup";
}

/// `features.build` → `scalers`: per series and value column, the transform and scaling,
/// and the centre and scale fitted on its training part (value = centre + scale × feature,
/// before the transform's inverse).
pub mod scalers {
    pub const NAME: &str = "scalers";
    pub const KEY: &str = "key";
    pub const COLUMN: &str = "column";
    pub const TRANSFORM: &str = "transform";
    pub const METHOD: &str = "method";
    pub const CENTER: &str = "center";
    pub const SCALE: &str = "scale";
}

/// `clean.resample` → `resampled`: one row per series and grid step; beside these, the key's
/// label columns and, per role, its value (`cpu`, `memory`) and a `<role>_filled` flag.
pub mod resampled {
    pub const NAME: &str = "resampled";
    pub const KEY: &str = "key";
    pub const SEGMENT: &str = "segment";
    pub const TIMESTAMP: &str = "timestamp";
    /// How many of the group's series (pods of a workload) held samples at the step.
    pub const REPLICAS: &str = "replicas";
    /// Schema metadata: how replicas were combined per step, `max` (one pod's size) or
    /// `sum` (the workload's total).
    pub const COMBINED: &str = "applearner.replicas";
    /// Field metadata of a model input's column (clean.resample's `inputs:`): its unit,
    /// where the config gives one (`bytes/s`).
    pub const UNIT_KEY: &str = "unit";

    /// Whether a key is a node's or VM's (a series without namespace, pod or container,
    /// keyed by its labels) rather than a container's: it starts with `name=value`, which no
    /// Kubernetes name can.
    pub fn is_node(key: &str) -> bool {
        key.split('/').next().is_some_and(|first| first.contains('='))
    }
}

/// `clean.resample` → `workloads`: per container key, what kube-state-metrics says of it:
/// the object its pods belong to (`kube_pod_owner`, `kube_replicaset_owner`,
/// `kube_job_owner`; null where they name none or several), its pods over the data, and the
/// HorizontalPodAutoscaler scaling that object (null where none).
pub mod workloads {
    pub const NAME: &str = "workloads";
    pub const KEY: &str = "key";
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job`, `ReplicaSet` or `Pod`.
    pub const OWNER_KIND: &str = "owner_kind";
    pub const OWNER_NAME: &str = "owner_name";
    pub const PODS: &str = "pods";
    /// The HPA's name, its utilization targets (% of the request), whether it also scales
    /// on other metrics, and its latest current and desired replicas.
    pub const HPA: &str = "hpa";
    pub const HPA_CPU_TARGET_PCT: &str = "hpa_cpu_target_pct";
    pub const HPA_MEMORY_TARGET_PCT: &str = "hpa_memory_target_pct";
    pub const HPA_OTHER_METRICS: &str = "hpa_other_metrics";
    pub const HPA_REPLICAS: &str = "hpa_replicas";
    pub const HPA_DESIRED_REPLICAS: &str = "hpa_desired_replicas";
}

/// `clean.resample` → `quotas`: kube-state-metrics' `kube_resourcequota`, the latest value
/// per namespace, quota, resource (`requests.cpu`, `limits.memory`, …) and type (`hard`,
/// `used`).
pub mod quotas {
    pub const NAME: &str = "quotas";
    pub const NAMESPACE: &str = "namespace";
    pub const QUOTA: &str = "resourcequota";
    pub const RESOURCE: &str = "resource";
    pub const TYPE: &str = "type";
    pub const VALUE: &str = "value";
}

/// `plan.resources` → `hpas`: per workload scaled by an HPA on CPU or memory utilization,
/// how the plan keeps its scale point (usage per pod = target × request): the target and
/// request now and planned, that point now and planned, the data's steps with the busiest
/// pod above it under each (equal when it is kept), and the action taken.
pub mod hpas {
    pub const NAME: &str = "hpas";
    pub const KEY: &str = "key";
    pub const HPA: &str = "hpa";
    pub const RESOURCE: &str = "resource";
    pub const TARGET_PCT: &str = "target_pct";
    pub const PLANNED_TARGET_PCT: &str = "planned_target_pct";
    /// Cores or bytes.
    pub const REQUEST: &str = "request";
    pub const PLANNED_REQUEST: &str = "planned_request";
    pub const SCALE_POINT: &str = "scale_point";
    pub const PLANNED_SCALE_POINT: &str = "planned_scale_point";
    pub const ABOVE_TARGET_STEPS: &str = "above_target_steps";
    pub const PLANNED_ABOVE_TARGET_STEPS: &str = "planned_above_target_steps";
    pub const ACTION: &str = "action";
}

/// `plan.resources` → `namespaces`: per namespace with workloads and quota resource
/// (`requests.cpu`, `limits.cpu`, `requests.memory`, `limits.memory`), the total now and as
/// planned (one pod's value × replicas, over the workloads with both) beside its
/// ResourceQuota's hard limit and use (null without one).
pub mod namespaces {
    pub const NAME: &str = "namespaces";
    pub const NAMESPACE: &str = "namespace";
    pub const RESOURCE: &str = "resource";
    pub const CURRENT: &str = "current";
    pub const PLANNED: &str = "planned";
    pub const QUOTA_HARD: &str = "quota_hard";
    pub const QUOTA_USED: &str = "quota_used";
}

/// `evaluate.backtest` → `scores`: one row per method, resource, scope (a series `key`, or
/// `mean` / `median` over series), horizon step (0: all steps) and metric.
pub mod scores {
    pub const NAME: &str = "scores";
    /// `validation` or `test`.
    pub const PART: &str = "part";
    pub const METHOD: &str = "method";
    pub const RESOURCE: &str = "resource";
    pub const SCOPE: &str = "scope";
    pub const KEY: &str = "key";
    /// `all`, a horizon bucket (`1h`, `6h`, `1d`, `more`), or empty on the rows of one step.
    pub const BUCKET: &str = "bucket";
    pub const STEP: &str = "step";
    pub const METRIC: &str = "metric";
    pub const VALUE: &str = "value";
}

/// `evaluate.backtest` → `forecasts`: one row per method, series, resource, origin and step
/// ahead: what happened and the forecast, then a column per quantile level (`p50`, `p90`, …).
pub mod forecasts {
    pub const NAME: &str = "forecasts";
    /// `validation` (where methods are chosen and quantiles and plans calibrated), `test`
    /// (scored) or `ahead` (from the end of the data: no actual yet); every method in each.
    pub const PART: &str = "part";
    pub const AHEAD: &str = "ahead";
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

/// `plan.resources` → `plan_backtest`: per line (`cpu_request`, `cpu_limit`,
/// `memory_request`, `memory_limit`), change budget, method, variant, setting and series
/// (`key` empty: all series), the test part replayed against that line.
pub mod plan_backtest {
    pub const NAME: &str = "plan_backtest";
    /// `model`, `krr`, `vpa` or `oracle`.
    pub const METHOD: &str = "method";
    /// `calibrated` or `fixed` (the model), `default`, `tuned` (to the risk, on validation),
    /// `oracle`, `sweep` (trade-off curve points).
    pub const VARIANT: &str = "variant";
    pub const SETTING: &str = "setting";
    pub const LINE: &str = "line";
    pub const BUDGET: &str = "changes_per_day_allowed";
    pub const KEY: &str = "key";
    pub const TARGET_PCT: &str = "target_pct";
    pub const PROVISIONED_HOURS: &str = "provisioned_hours";
    pub const USED_HOURS: &str = "used_hours";
    pub const SLACK_HOURS: &str = "slack_hours";
    pub const SLACK_PCT: &str = "slack_pct";
    /// The share of steps with usage above the line.
    pub const RISK_PCT: &str = "risk_pct";
    pub const UNDER_STEPS: &str = "steps_above";
    pub const STEPS: &str = "steps";
    pub const CHANGES: &str = "changes";
    /// Per workload-day.
    pub const CHANGES_PER_DAY: &str = "changes_per_day";
}

/// `plan.resources` → `plan_comparison`: per line and change budget, the model's plan
/// beside KRR and VPA (default and tuned to the same risk) and the oracle: for each of
/// [`METHODS`](plan_comparison::METHODS), `{method}_risk_pct`, `{method}_slack_pct` and
/// `{method}_changes_per_day`.
pub mod plan_comparison {
    pub const NAME: &str = "plan_comparison";
    pub const LINE: &str = "line";
    pub const BUDGET: &str = "changes_per_day_allowed";
    pub const TARGET_PCT: &str = "target_pct";
    /// `current`: what was allocated at each step (where the data has allocation series).
    pub const METHODS: [&str; 7] = ["model", "current", "krr", "krr_tuned", "vpa", "vpa_tuned", "oracle"];
    pub const RISK_PCT: &str = "_risk_pct";
    pub const SLACK_PCT: &str = "_slack_pct";
    pub const CHANGES_PER_DAY: &str = "_changes_per_day";
    /// `krr_tuned` or `vpa_tuned`: the one with less slack.
    pub const BEST_TUNED: &str = "best_tuned";
    /// The model's slack as a multiple of the best tuned recommender's and the oracle's.
    pub const SLACK_VS_BEST_TUNED: &str = "slack_vs_best_tuned";
    pub const SLACK_VS_ORACLE: &str = "slack_vs_oracle";
    /// The share of the gap between the best tuned recommender and the oracle the model closes.
    pub const GAP_CLOSED: &str = "gap_closed";
}

/// `plan.resources` → `plan`: per workload, the lines to set now (for the resources the
/// model forecasts) and how long they hold: `{line}_cores` for CPU, `{line}_bytes` for memory.
pub mod plan {
    pub const NAME: &str = "plan";
    pub const KEY: &str = "key";
    pub const NAMESPACE: &str = "namespace";
    pub const WORKLOAD: &str = "workload";
    pub const CONTAINER: &str = "container";
    pub const FROM: &str = "from";
    pub const UNTIL: &str = "until";
    pub const CPU_REQUEST_CORES: &str = "cpu_request_cores";
    pub const CPU_LIMIT_CORES: &str = "cpu_limit_cores";
    pub const MEMORY_REQUEST_BYTES: &str = "memory_request_bytes";
    pub const MEMORY_LIMIT_BYTES: &str = "memory_limit_bytes";
}

/// `clean.resample` → `allocation`: what each series had allocated and what hurt it, on the
/// same grid and keys as `resampled`: per key and signal, requests and limits at the steps
/// where they change (the value in force from then on), the pain signals at every step they
/// occur.
pub mod allocation {
    pub const NAME: &str = "allocation";
    pub const KEY: &str = "key";
    pub const SIGNAL: &str = "signal";
    pub const TIMESTAMP: &str = "timestamp";
    pub const VALUE: &str = "value";
    /// Requests and limits (kube-state-metrics), in cores and bytes: the signals are named
    /// after the plan's lines.
    pub const LINES: [&str; 4] = [
        crate::Line::CpuRequest.name(),
        crate::Line::CpuLimit.name(),
        crate::Line::MemoryRequest.name(),
        crate::Line::MemoryLimit.name(),
    ];
    /// OOM kills and restarts in the step (from the restart counter and the last terminated
    /// reason), and the share of CFS periods throttled (0–1, the busiest replica).
    pub const OOM_KILLS: &str = "oom_kills";
    pub const RESTARTS: &str = "restarts";
    pub const CPU_THROTTLED: &str = "cpu_throttled";
}

/// `plan.resources` → `recommendations`: per workload or node, what is allocated now beside
/// the plan's first values, the change in reserved capacity and its cost, and the flags.
/// `current_{line}` and `planned_{line}` per line (cores, bytes; null where unknown).
pub mod recommendations {
    pub const NAME: &str = "recommendations";
    pub const KEY: &str = "key";
    /// `container` or `node` (nodes and VMs: planned, never patched).
    pub const KIND: &str = "kind";
    pub const CURRENT: &str = "current_";
    pub const PLANNED: &str = "planned_";
    /// The workload's replicas at the end of the data. Requests and limits are one pod's;
    /// the changes and their cost are the workload's, one pod's × replicas.
    pub const REPLICAS: &str = "replicas";
    /// The object its patch goes to (from `owners`), empty where unknown.
    pub const OWNER_KIND: &str = "owner_kind";
    pub const OWNER_NAME: &str = "owner_name";
    /// The highest usage of one pod seen over the data, and each planned limit as a
    /// multiple of it: the limit's evidence.
    pub const MAX_SEEN_CPU_CORES: &str = "max_seen_cpu_cores";
    pub const MAX_SEEN_MEMORY_BYTES: &str = "max_seen_memory_bytes";
    pub const CPU_LIMIT_OVER_MAX_SEEN: &str = "cpu_limit_over_max_seen";
    pub const MEMORY_LIMIT_OVER_MAX_SEEN: &str = "memory_limit_over_max_seen";
    /// Planned − current requests over the replicas (negative: capacity given back).
    pub const CPU_CHANGE_CORES: &str = "cpu_request_change_cores";
    pub const MEMORY_CHANGE_GIB: &str = "memory_request_change_gib";
    /// The change in requests priced per month (730 h).
    pub const COST_CHANGE_PER_MONTH: &str = "cost_change_per_month";
    /// Changes of the allocation over the data (a request or limit that moved).
    pub const ALLOCATION_CHANGES: &str = "allocation_changes";
    /// Steps of the data with usage above the limit then in force.
    pub const CPU_ABOVE_LIMIT_STEPS: &str = "cpu_above_limit_steps";
    pub const MEMORY_ABOVE_LIMIT_STEPS: &str = "memory_above_limit_steps";
    pub const OOM_KILLS: &str = "oom_kills";
    /// The mean share of CFS periods throttled over the data, in %.
    pub const THROTTLED_PCT: &str = "throttled_pct";
    /// Comma-separated: `no_allocation`, `oom_killed`, `throttled`, `cpu_request_below_plan`,
    /// `memory_request_below_plan` (the request now runs above the stated risk),
    /// `cpu_above_limit`, `memory_above_limit` (usage went above the limit in force),
    /// `replicated` (more than one replica: totals are per pod × replicas), `owner_unknown`
    /// (no kube_pod_owner: the patch assumes a Deployment), `job` (a Job or CronJob), `hpa`
    /// (scaled by an HPA: see `hpas`).
    pub const FLAGS: &str = "flags";
}

/// `train.fit` → `metrics`: one row per epoch run.
pub mod metrics {
    pub const NAME: &str = "metrics";
    pub const EPOCH: &str = "epoch";
    pub const LR: &str = "lr";
    pub const TRAIN_LOSS: &str = "train_loss";
    pub const VALIDATION_LOSS: &str = "validation_loss";
    /// On the scaled values.
    pub const VALIDATION_MAE: &str = "validation_mae";
}

/// `evaluate.backtest` → `choices`: per series and resource, the forecaster `auto` chose on
/// the validation part and each forecaster's validation MASE (`validation_mase_<method>`).
pub mod choices {
    pub const NAME: &str = "choices";
    pub const KEY: &str = "key";
    pub const RESOURCE: &str = "resource";
    pub const METHOD: &str = "method";
    pub const VALIDATION_MASE_PREFIX: &str = "validation_mase_";
}

/// `plan.resources` → `plan_risk`: per line, workload and UTC day of the test part, as the
/// plan's loop ran: steps, steps above the line, their share beside the target, and the
/// factor at the day's end.
pub mod plan_risk {
    pub const NAME: &str = "plan_risk";
    pub const LINE: &str = "line";
    pub const KEY: &str = "key";
    pub const DAY: &str = "day";
    pub const STEPS: &str = "steps";
    pub const ABOVE: &str = "above";
    pub const RISK_PCT: &str = "risk_pct";
    pub const TARGET_PCT: &str = "target_pct";
    pub const FACTOR: &str = "factor";
}
