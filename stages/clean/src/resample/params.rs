//! `clean.resample`'s parameters, checked.

use std::collections::BTreeMap;

use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{Duration, ParamProblem};
use serde::{Deserialize, Serialize};

use super::Role;

/// Puts every series on a fixed time grid and cleans it for learning. Reads the ingest
/// stage's `samples` and `series`; writes `resampled`: one row per series and step with a column per role
/// (`cpu`, `memory`: cores and bytes), a `<role>_filled` flag on every filled point, and a
/// `segment` number that changes wherever a gap longer than `max_gap` split the series.
/// A series is identified by `key` (its group labels joined by `/`) and the label columns.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResampleParams {
    /// Grid step: `30s`, `1m`, `5m`, `1h`…
    pub step: Duration,
    /// How the samples within one step become one value: `mean`, `max`, `min`, `last`,
    /// `sum`, or a percentile `p50`, `p90`, `p95`, `p99` (any `pNN`).
    #[serde(default = "default_aggregate")]
    pub aggregate: String,
    /// Roles to keep, each becoming a value column; with several, a row needs all of them.
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// Longest run of missing steps that is filled; a longer gap splits the series into
    /// segments. Default: 5 steps.
    #[serde(default)]
    pub max_gap: Option<Duration>,
    /// How a short gap is filled: `linear` (between its neighbours), `ffill` (last value
    /// before it) or `zero`.
    #[serde(default)]
    pub fill: Fill,
    /// Segments with fewer points (after trimming) are dropped.
    #[serde(default = "default_min_points")]
    pub min_points: u32,
    /// Points dropped from both ends of every segment (a pod's first and last minutes are
    /// usually partial).
    #[serde(default)]
    pub trim: u32,
    /// Drop series in which a role never changes (nothing to learn; scaling would divide by 0).
    #[serde(default = "yes")]
    pub drop_constant: bool,
    /// Drop series in which a role is zero throughout (counted apart from other constants).
    #[serde(default = "yes")]
    pub drop_zero: bool,
    /// What one series is: a pod's container, a workload's container, or any labels.
    #[serde(default)]
    pub group: Group,
    /// Input points cleaned at a time: workloads are cleaned in groups of at most this
    /// many points, whatever the input's size (about 150 bytes a point; with more than one
    /// group, each group's samples wait in a local temporary file, 20 bytes a point); one
    /// workload needs all of its points at once.
    #[serde(default = "default_max_points")]
    pub max_points_in_memory: u64,
    /// Model inputs beside the usage, by the column each becomes: any ingested metric
    /// (`{net_rx: {metric: container_network_receive_bytes_total, as: rate}}`). Each series
    /// is placed on a usage series as requests and limits are (one matching several is left
    /// out and counted, never merged), combined across replicas as the usage is, binned with
    /// `aggregate` and its short gaps filled with its own `fill`. It never decides which rows
    /// exist: a step without it holds 0, flagged filled and counted.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputParams>,
}

/// One model input: the metric, and how its samples become a level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputParams {
    /// The metric name as ingested (the series' `__name__`).
    pub metric: String,
    /// `rate` for a counter (per second, a lower value is a reset: counted, and all of it
    /// counts as the increase, as in PromQL); `value` for a gauge.
    #[serde(rename = "as")]
    pub level: Level,
    /// How its short gaps are filled: `ffill` (the default), `linear` or `zero`.
    #[serde(default = "ffill")]
    pub fill: Fill,
    /// What the metric counts or measures (`bytes`, `requests`): its column's `unit` in the
    /// `resampled` schema, per second for a rate (`bytes/s`).
    #[serde(default)]
    pub unit: Option<String>,
}

impl InputParams {
    /// The unit of its column, where the metric's is given.
    pub fn column_unit(&self) -> Option<String> {
        let unit = self.unit.as_ref()?;
        Some(if self.level == Level::Rate { format!("{unit}/s") } else { unit.clone() })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Rate,
    Value,
}

fn ffill() -> Fill {
    Fill::Ffill
}

fn default_max_points() -> u64 {
    1 << 20
}

fn default_aggregate() -> String {
    "mean".into()
}

fn default_roles() -> Vec<Role> {
    vec![Role::Cpu, Role::Memory]
}

fn default_min_points() -> u32 {
    30
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    #[default]
    Linear,
    Ffill,
    Zero,
}

/// Which series are learned as one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// `series`: every input series apart (key namespace/pod/container, plus `name=value`
    /// of any other label that tells series with the same three apart, such as a node's
    /// `instance`); `workload`: pods of one Deployment, ReplicaSet, StatefulSet, DaemonSet or
    /// Job together (the pod name loses its hash suffixes or ordinal; key
    /// namespace/workload/container, other series kept apart as with `series`); `labels`:
    /// series sharing the values of `labels` together.
    #[serde(default)]
    pub by: GroupBy,
    /// With `by: labels`: any labels of the series (`namespace`, `instance`, `machine_id`…).
    #[serde(default)]
    pub labels: Vec<String>,
    /// How replicas combine at each step: `max` (the default: one pod's size, the busiest
    /// replica, so a request that covers it covers every pod) or `sum` (the workload's
    /// total, for capacity and quotas; plan.resources refuses to patch pods with it). The
    /// replicas present at each step are counted in the `replicas` column either way.
    #[serde(default)]
    pub aggregate: Combine,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Series,
    Workload,
    Labels,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    #[default]
    Max,
    Sum,
}

impl Combine {
    pub fn name(self) -> &'static str {
        match self {
            Combine::Max => "max",
            Combine::Sum => "sum",
        }
    }
}

pub const AGGREGATES: &str = "mean, max, min, last, sum, or a percentile such as p50, p90, p95, p99";

/// The aggregation of the samples within one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregate {
    Mean,
    Max,
    Min,
    Last,
    Sum,
    Percentile(f64),
}

impl Aggregate {
    pub fn parse(text: &str) -> Option<Aggregate> {
        Some(match text {
            "mean" => Aggregate::Mean,
            "max" => Aggregate::Max,
            "min" => Aggregate::Min,
            "last" => Aggregate::Last,
            "sum" => Aggregate::Sum,
            p => {
                let digits = p.strip_prefix('p')?;
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 2 {
                    return None;
                }
                let q: f64 = digits.parse().ok()?;
                if q == 0.0 {
                    return None;
                }
                Aggregate::Percentile(q / 100.0)
            }
        })
    }
}

/// The parameters, checked and in milliseconds.
#[derive(Debug, Clone)]
pub struct Plan {
    pub step_ms: i64,
    pub aggregate: Aggregate,
    pub roles: Vec<Role>,
    pub max_gap_ms: i64,
    pub fill: Fill,
    pub min_points: u32,
    pub trim: u32,
    pub max_points: u64,
    pub drop_constant: bool,
    pub drop_zero: bool,
    pub group: Group,
    /// The model inputs, by column name in name order.
    pub inputs: Vec<(String, InputParams)>,
}

impl ResampleParams {
    pub fn plan(&self) -> Result<Plan, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        let step_ms = self.step.ms();
        if step_ms < 1000 || step_ms % 1000 != 0 {
            problems.push(ParamProblem::new(
                &["step"],
                format!("`{}` is not a whole number of seconds", self.step),
                "Prometheus resolves to the second; use a step such as 15s, 1m or 5m",
            ));
        }
        let aggregate = Aggregate::parse(&self.aggregate);
        if aggregate.is_none() {
            problems.push(ParamProblem::new(
                &["aggregate"],
                format!("unknown aggregation `{}`", self.aggregate),
                format!("use one of {AGGREGATES}"),
            ));
        }
        let max_gap_ms = self.max_gap.as_ref().map_or(5 * step_ms, Duration::ms);
        if self.roles.is_empty() {
            problems.push(ParamProblem::new(&["roles"], "no roles", "keep `cpu`, `memory` or both"));
        }
        let mut roles = self.roles.clone();
        roles.sort();
        roles.dedup();
        self.group.check(&mut problems);
        check_inputs(&self.inputs, &mut problems);
        if self.min_points == 0 {
            problems.push(ParamProblem::new(&["min_points"], "must be at least 1", "use 1 or more"));
        }
        match aggregate {
            Some(aggregate) if problems.is_empty() => Ok(Plan {
                step_ms,
                aggregate,
                roles,
                max_gap_ms,
                fill: self.fill,
                min_points: self.min_points,
                trim: self.trim,
                drop_constant: self.drop_constant,
                drop_zero: self.drop_zero,
                group: self.group.clone(),
                max_points: self.max_points_in_memory,
                inputs: self.inputs.clone().into_iter().collect(),
            }),
            _ => Err(problems),
        }
    }
}

/// Input names are column names, none a usage role's; each metric feeds one input.
fn check_inputs(inputs: &BTreeMap<String, InputParams>, problems: &mut Vec<ParamProblem>) {
    let mut metrics = BTreeMap::new();
    for (name, input) in inputs {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid || Role::ALL.iter().any(|r| r.name() == name) || name.ends_with("_filled") {
            problems.push(ParamProblem::new(
                &["inputs", name],
                format!("`{name}` cannot name an input column"),
                "use lowercase letters, digits and `_`, not `cpu`, `memory` or a name ending in `_filled`, such as net_rx",
            ));
        }
        if let Some(other) = metrics.insert(&input.metric, name) {
            problems.push(ParamProblem::new(
                &["inputs", name, "metric"],
                format!("`{}` already feeds the input `{other}`", input.metric),
                "give each metric one input",
            ));
        }
    }
}

impl Group {
    /// Labels given exactly when grouping by labels, each a Prometheus label name.
    pub(super) fn check(&self, problems: &mut Vec<ParamProblem>) {
        if self.by == GroupBy::Labels && self.labels.is_empty() {
            problems.push(ParamProblem::new(
                &["group", "labels"],
                "`by: labels` needs the labels to group by",
                "list the labels whose values make one series, such as [namespace, instance]",
            ));
        }
        if self.by != GroupBy::Labels && !self.labels.is_empty() {
            problems.push(ParamProblem::new(
                &["group", "labels"],
                "labels are only used with `by: labels`",
                "set `by: labels` or remove `labels`",
            ));
        }
        for label in &self.labels {
            let mut chars = label.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                problems.push(ParamProblem::new(
                    &["group", "labels"],
                    format!("`{label}` is not a Prometheus label name"),
                    "label names are letters, digits and `_`, not starting with a digit, such as instance or machine_id",
                ));
            }
        }
    }
}
