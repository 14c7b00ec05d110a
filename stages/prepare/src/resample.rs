//! `clean.resample`: the ingested samples → one row per series and grid step, CPU and
//! memory side by side, in segments without gaps.
//!
//! Order of work, for a range of groups at a time ([`pass`](crate::pass)):
//! 1. drop non-finite and negative values (counted);
//! 2. bin every series on the step grid with the chosen aggregation;
//! 3. group series into workloads (or keep them apart) and combine replicas per step;
//! 4. fill gaps up to `max_gap` (flagged), leave longer ones;
//! 5. align the roles on the grid (a row needs every role);
//! 6. split at the remaining gaps into segments, trim segment edges, drop short segments;
//! 7. drop series that are constant or all zero.
//!
//! It is one ordered pass in plain Rust, not SQL: the samples arrive sorted by series and
//! time, and a dozen queries per range (binning, islands, windows, joins) cost more to
//! plan and hash than the work itself. DataFusion still builds the sparse `allocation` rows.

use crate::PrepareError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use applearner_pipeline::arrow::array::{ArrayRef, AsArray, RecordBatch};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType, UInt64Type,
};
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{BoxError, Output, ParamProblem, Stage, StageContext, StageParams, Summary};
use serde::{Deserialize, Serialize};

use applearner_pipeline::Duration;

/// What a series measures: the ingest stage maps metrics to roles, one per resource.
pub use applearner_contracts::Resource as Role;
use applearner_contracts::tables::{allocation as alloc, quotas, resampled, workloads};

use crate::identity::{self, Identity, SeriesLabels};
use crate::kube;
use crate::pass::{Key, Range, Sample};

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

const AGGREGATES: &str = "mean, max, min, last, sum, or a percentile such as p50, p90, p95, p99";

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
}

impl StageParams for ResampleParams {
    const KIND: &'static str = "clean.resample";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        Ok(Box::new(Resample { plan: self.plan()? }))
    }
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
        if self.group.by == GroupBy::Labels && self.group.labels.is_empty() {
            problems.push(ParamProblem::new(
                &["group", "labels"],
                "`by: labels` needs the labels to group by",
                "list the labels whose values make one series, such as [namespace, instance]",
            ));
        }
        if self.group.by != GroupBy::Labels && !self.group.labels.is_empty() {
            problems.push(ParamProblem::new(
                &["group", "labels"],
                "labels are only used with `by: labels`",
                "set `by: labels` or remove `labels`",
            ));
        }
        for label in &self.group.labels {
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
            }),
            _ => Err(problems),
        }
    }
}

struct Resample {
    plan: Plan,
}

impl Stage for Resample {
    fn reads(&self) -> Vec<String> {
        vec!["samples".into(), "series".into()]
    }

    fn writes(&self) -> Vec<Output> {
        vec![
            Output::table("resampled"),
            Output::table("allocation"),
            Output::table(workloads::NAME),
            Output::table(quotas::NAME),
        ]
    }

    fn shard_order(&self) -> Option<Vec<(&'static str, Vec<&'static str>)>> {
        Some(vec![
            ("resampled", vec![resampled::KEY, resampled::TIMESTAMP]),
            ("allocation", vec![alloc::KEY, alloc::SIGNAL, alloc::TIMESTAMP]),
            (workloads::NAME, vec![workloads::KEY]),
            (quotas::NAME, vec![quotas::NAMESPACE, quotas::QUOTA, quotas::RESOURCE, quotas::TYPE]),
        ])
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let p = &self.plan;
        let columns = identity::key_columns(p.group.by, &p.group.labels);
        let schema =
            output_schema(&columns.iter().map(String::as_str).collect::<Vec<_>>(), &p.roles, p.group.aggregate);
        let in_shard = |key: &str| ctx.in_shard(key.as_bytes());
        let scope = Scope { shard: ctx.shard().map(|_| &in_shard as &dyn Fn(&str) -> bool) };
        let series = ctx.read_table("series")?;
        let read = ["series_id", "timestamp", "value"];
        let mut batches = ctx.table_batches("samples", Some(&read), &[])?.map(|b| b.map_err(BoxError::from));
        let mut allocate = |kept: &[(&SeriesLabels, String)], counts: &mut Counts| {
            ctx.store().block_on(async {
                let session = crate::session(Some(ctx));
                crate::register_input(&session, ctx, "samples").await?;
                crate::allocation::rows(&session, p, kept, counts).await
            })
        };
        let cancelled = || ctx.check_cancelled().map_err(Into::into);
        let cleaned = crate::stream_tables(ctx, &[("resampled", schema)], |sinks| {
            let input = Input { series: &series, samples: &mut batches };
            clean_into(input, p, &cancelled, scope, &mut allocate, &mut |b| crate::send(&sinks[0], b))
        })?;
        for w in &cleaned.warnings {
            tracing::warn!("{w}");
        }
        ctx.write_table("allocation", crate::allocation::schema(), &cleaned.allocation)?;
        let kube = &cleaned.kube;
        ctx.write_table(workloads::NAME, kube::workloads_schema(), &[kube::workloads_table(&kube.workloads)?])?;
        ctx.write_table(quotas::NAME, kube::quotas_schema(), &[kube::quotas_table(&kube.quotas)?])?;
        let mut summary = match serde_json::to_value(&cleaned.counts)? {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("counts serialize to an object"),
        };
        summary.insert("warnings".into(), cleaned.warnings.into());
        Ok(summary)
    }
}

/// What cleaning did, for the manifest.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub input_points: u64,
    pub non_finite_dropped: u64,
    pub negative_dropped: u64,
    pub input_series: u64,
    /// Series after grouping (pods of one workload count once).
    pub grouped_series: u64,
    /// Grid points holding at least one sample, summed over roles.
    pub grid_points: u64,
    pub filled_points: u64,
    /// Series missing one of the roles entirely.
    pub series_without_all_roles: u64,
    /// Segments before the filters; more than the series where long gaps split them.
    pub segments: u64,
    pub trimmed_points: u64,
    pub short_segments_dropped: u64,
    pub zero_series_dropped: u64,
    pub constant_series_dropped: u64,
    pub series: u64,
    pub output_segments: u64,
    pub points: u64,
    /// Requests, limits and pain series (the `allocation` table), those matching no usage
    /// series or several (left out), and the rows written.
    pub allocation_series: u64,
    pub allocation_series_without_usage: u64,
    pub allocation_series_ambiguous: u64,
    pub allocation_points: u64,
    /// kube-state-metrics' `kube_pod_owner` links, those naming pods without usage, and the
    /// workloads whose pods name no owner or several (left unresolved, never guessed).
    pub owner_series: u64,
    pub owner_series_without_usage: u64,
    pub workloads_without_owner: u64,
    /// HPAs attached to the workloads they scale, those whose target has no usage, and the
    /// namespaces with quotas but no workloads.
    pub hpas: u64,
    pub hpas_without_usage: u64,
    pub quota_namespaces_without_workloads: u64,
}

/// What kube-state-metrics says of the workloads and namespaces cleaned.
#[derive(Debug, Default)]
pub struct Kube {
    pub workloads: BTreeMap<String, kube::Workload>,
    pub quotas: kube::Quotas,
}

/// The cleaned table and its story.
#[derive(Debug)]
pub struct Cleaned {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The `allocation` table's rows.
    pub allocation: Vec<RecordBatch>,
    /// Owners, HPAs and quotas.
    pub kube: Kube,
    pub counts: Counts,
    pub warnings: Vec<String>,
}

/// Which series a run cleans: all, or those of one shard (by key).
#[derive(Clone, Copy, Default)]
pub struct Scope<'a> {
    pub shard: Option<&'a dyn Fn(&str) -> bool>,
}

/// What cleaning reads: the `series` table whole, and the `samples` table's batches once
/// (their `series_id`, `timestamp` and `value` columns).
pub struct Input<'a> {
    pub series: &'a [RecordBatch],
    pub samples: &'a mut dyn Iterator<Item = Result<RecordBatch, BoxError>>,
}

/// Builds the `allocation` rows of the allocation series placed on usage keys (a query
/// over the samples; only called when some are placed).
pub type Allocate<'a> = dyn FnMut(&[(&SeriesLabels, String)], &mut Counts) -> Result<Vec<RecordBatch>, BoxError> + 'a;

/// Cleans the series of `scope`, handing the output rows to `sink` in series and time order.
///
/// Groups of series (one per key, numbered in key order) are cleaned a range at a time,
/// each range at most `max_points` input points, so memory holds one range whatever the
/// input's size: one pass over the samples puts every range's samples aside (in memory
/// when there is one range, else in a local file per range), then each range is cleaned
/// in turn ([`pass`](crate::pass)).
pub fn clean_into(
    input: Input<'_>,
    plan: &Plan,
    check_cancelled: &dyn Fn() -> Result<(), BoxError>,
    scope: Scope<'_>,
    allocate: &mut Allocate<'_>,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), BoxError>,
) -> Result<Cleaned, BoxError> {
    let started = std::time::Instant::now();
    // Between steps: stop if the run is cancelled; `-vv` shows where the time goes.
    let checkpoint = |step: &str| {
        tracing::debug!(step, elapsed_ms = started.elapsed().as_millis() as u64, "clean.resample");
        check_cancelled()
    };
    let (mut counts, mut warnings) = (Counts::default(), Vec::new());
    let (series, spans) = read_series(input.series)?;
    let usage: Vec<SeriesLabels> =
        series.iter().filter(|s| plan.roles.iter().any(|r| r.name() == s.role)).cloned().collect();
    let identities = identify(plan, &usage, &mut warnings)?;
    let kept = crate::allocation::place(plan, &identities, &series, scope, &mut counts);
    let allocation = if kept.is_empty() { Vec::new() } else { allocate(&kept, &mut counts)? };
    checkpoint("allocation")?;
    let key_columns = identity::key_columns(plan.group.by, &plan.group.labels);
    let schema =
        output_schema(&key_columns.iter().map(String::as_str).collect::<Vec<_>>(), &plan.roles, plan.group.aggregate);
    let groups = Groups::of(plan, &identities, &usage, &spans, scope, &mut counts)?;
    // The latest value of each kube-state-metrics series that carries one (HPA targets,
    // replicas, quotas), read in the same pass as the usage.
    let mut latest: HashMap<u64, (i64, f64)> =
        series.iter().filter(|s| kube::valued(&s.role)).map(|s| (s.series_id, (i64::MIN, f64::NAN))).collect();
    let mut aside = put_aside(input.samples, &groups, &mut latest, &mut counts, check_cancelled)?;
    let latest: HashMap<u64, f64> = latest.into_iter().filter(|(_, v)| v.0 > i64::MIN).map(|(k, v)| (k, v.1)).collect();
    let workloads = kube::workloads(&series, &identities, &usage, &latest, scope, &mut counts);
    let quotas = kube::quotas(&series, &latest, &identities, scope, &mut counts);
    say_kube(&counts, &mut warnings);
    let kube = Kube { workloads, quotas };
    if scope.shard.is_some() && counts.grouped_series == 0 {
        warnings.push("this shard holds no series (more shards than series): its tables are empty".into());
        return Ok(Cleaned { schema, batches: Vec::new(), allocation, kube, counts, warnings });
    }
    check_inputs(plan, &counts, groups.spacing, &mut warnings)?;
    checkpoint("input")?;
    let mut out = crate::pass::Output::new(schema.clone(), key_columns.len(), plan.roles.len());
    for (i, range) in groups.ranges.iter().enumerate() {
        crate::pass::clean_range(plan, range, &groups.keys, aside.take(i)?, &mut counts, &mut out, sink)?;
        checkpoint(&format!("groups {}–{}", range.first, range.last))?;
    }
    if out.rows > 0 {
        sink(out.finish()?)?;
    }
    check_left(plan, &counts, scope, &mut warnings)?;
    Ok(Cleaned { schema, batches: Vec::new(), allocation, kube, counts, warnings })
}

/// The identities of the usage series; with `by: labels`, a label no series has is an
/// error, one only some have a warning.
fn identify(plan: &Plan, usage: &[SeriesLabels], warnings: &mut Vec<String>) -> Result<Vec<Identity>, BoxError> {
    if plan.group.by == GroupBy::Labels {
        for label in &plan.group.labels {
            let without = usage.iter().filter(|s| !s.labels.contains_key(label)).count();
            if without == usage.len() && without > 0 {
                return Err(PrepareError::MissingLabel(label.clone()).into());
            }
            if without > 0 {
                warnings.push(format!(
                    "{without} series have no `{label}` label; as in PromQL's `by ({label})` they are grouped \
                     as if it were empty"
                ));
            }
        }
    }
    Ok(identity::identify(usage, plan.group.by, &plan.group.labels))
}

/// A series' extent in the `series` table: its points and first and last times (ms).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub points: u64,
    pub first: i64,
    pub last: i64,
}

/// The series of a run: their groups (one per key, in key order), the ranges of groups
/// cleaned at a time, and where each series' samples go.
struct Groups {
    keys: Vec<Key>,
    ranges: Vec<Range>,
    /// Series id → (range, slot in it).
    slot_of: HashMap<u64, (u32, u32)>,
    /// The median time between a series' samples (ms), where known.
    spacing: Option<i64>,
}

impl Groups {
    /// The groups of the usage series of `scope`; a group alone above `max_points` is an
    /// error naming it.
    fn of(
        plan: &Plan,
        identities: &[Identity],
        usage: &[SeriesLabels],
        spans: &HashMap<u64, Span>,
        scope: Scope<'_>,
        counts: &mut Counts,
    ) -> Result<Groups, BoxError> {
        let mine: Vec<(&Identity, &SeriesLabels)> =
            identities.iter().zip(usage).filter(|(i, _)| scope.shard.is_none_or(|keep| keep(&i.key))).collect();
        let mut by_key: BTreeMap<&str, Vec<(&Identity, &SeriesLabels)>> = BTreeMap::new();
        for &(i, s) in &mine {
            by_key.entry(i.key.as_str()).or_default().push((i, s));
        }
        [counts.input_series, counts.grouped_series] = [mine.len() as u64, by_key.len() as u64];
        let role = |s: &SeriesLabels| plan.roles.iter().position(|r| r.name() == s.role).expect("a usage role");
        let mut groups = Groups { keys: Vec::new(), ranges: Vec::new(), slot_of: HashMap::new(), spacing: None };
        let mut held = 0;
        for (k, members) in by_key.values().enumerate() {
            let roles: BTreeSet<usize> = members.iter().map(|(_, s)| role(s)).collect();
            counts.series_without_all_roles += u64::from(roles.len() < plan.roles.len());
            let points: u64 = members.iter().map(|(i, _)| spans[&i.series_id].points).sum();
            let key = members[0].0.key.clone();
            if points > plan.max_points {
                return Err(PrepareError::GroupTooLarge { key, points, max: plan.max_points }.into());
            }
            match groups.ranges.last_mut() {
                Some(range) if held + points <= plan.max_points => {
                    range.last = k;
                    held += points;
                }
                _ => {
                    groups.ranges.push(Range { first: k, last: k, slots: Vec::new() });
                    held = points;
                }
            }
            let range = groups.ranges.len() - 1;
            for (i, s) in members {
                let slots = &mut groups.ranges[range].slots;
                groups.slot_of.insert(i.series_id, (range as u32, slots.len() as u32));
                slots.push((k, role(s)));
            }
            groups.keys.push(Key { key, columns: members[0].0.columns.clone() });
        }
        groups.spacing = median_spacing(mine.iter().map(|(i, _)| spans[&i.series_id]));
        Ok(groups)
    }
}

/// The median time between samples (ms) of the series of `spans` with two or more points
/// (of two middle values, their mean rounded down, as SQL's `median` of integers).
fn median_spacing(spans: impl Iterator<Item = Span>) -> Option<i64> {
    let mut spacings: Vec<i64> =
        spans.filter(|s| s.points > 1).map(|s| (s.last - s.first) / (s.points as i64 - 1)).collect();
    spacings.sort_unstable();
    match spacings.len() {
        0 => None,
        n if n % 2 == 0 => Some((spacings[n / 2 - 1] + spacings[n / 2]) / 2),
        n => Some(spacings[n / 2]),
    }
}

/// Each range's samples, put aside by one pass over the input.
enum Aside {
    Memory(Vec<Sample>),
    /// A local file per range (`slot`, `ts`, `value`, little-endian), removed with the folder.
    Files(tempfile::TempDir, Vec<Option<std::io::BufWriter<std::fs::File>>>),
}

/// Bytes of one sample put aside in a file.
const SAMPLE_BYTES: usize = 20;

impl Aside {
    fn new(ranges: usize) -> Result<Aside, BoxError> {
        if ranges <= 1 {
            return Ok(Aside::Memory(Vec::new()));
        }
        let dir = tempfile::Builder::new().prefix("applearner-clean").tempdir()?;
        let files = (0..ranges)
            .map(|i| Ok(Some(std::io::BufWriter::new(std::fs::File::create(dir.path().join(i.to_string()))?))))
            .collect::<Result<_, std::io::Error>>()?;
        Ok(Aside::Files(dir, files))
    }

    fn push(&mut self, range: u32, s: Sample) -> Result<(), BoxError> {
        use std::io::Write;
        match self {
            Aside::Memory(samples) => samples.push(s),
            Aside::Files(_, files) => {
                let file = files[range as usize].as_mut().expect("a range is taken once, after the pass");
                let mut bytes = [0u8; SAMPLE_BYTES];
                bytes[..4].copy_from_slice(&s.slot.to_le_bytes());
                bytes[4..12].copy_from_slice(&s.ts.to_le_bytes());
                bytes[12..].copy_from_slice(&s.value.to_le_bytes());
                file.write_all(&bytes)?;
            }
        }
        Ok(())
    }

    /// The samples of range `i`, in input order.
    fn take(&mut self, i: usize) -> Result<Vec<Sample>, BoxError> {
        match self {
            Aside::Memory(samples) => Ok(std::mem::take(samples)),
            Aside::Files(dir, files) => {
                let file = files[i].take().expect("a range is taken once").into_inner().map_err(|e| e.into_error())?;
                drop(file);
                let path = dir.path().join(i.to_string());
                let bytes = std::fs::read(&path)?;
                std::fs::remove_file(&path)?;
                Ok(bytes
                    .chunks_exact(SAMPLE_BYTES)
                    .map(|b| Sample {
                        slot: u32::from_le_bytes(b[..4].try_into().expect("4 bytes")),
                        ts: i64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
                        value: f64::from_le_bytes(b[12..].try_into().expect("8 bytes")),
                    })
                    .collect())
            }
        }
    }
}

/// Reads the samples once: those of the run's series are counted, non-finite and negative
/// ones dropped (counted), the rest put aside by range.
fn put_aside(
    samples: &mut dyn Iterator<Item = Result<RecordBatch, BoxError>>,
    groups: &Groups,
    latest: &mut HashMap<u64, (i64, f64)>,
    counts: &mut Counts,
    check_cancelled: &dyn Fn() -> Result<(), BoxError>,
) -> Result<Aside, BoxError> {
    let mut aside = Aside::new(groups.ranges.len())?;
    // Samples come a series at a time: look each series up once (its range and slot, or
    // whether its latest value is wanted).
    type Place = Option<(u32, u32)>;
    let mut last: Option<(u64, Place, bool)> = None;
    for batch in samples {
        let batch = batch?;
        check_cancelled()?;
        let ids = cast(column(&batch, "series_id")?, &DataType::UInt64)?;
        let times = cast(column(&batch, "timestamp")?, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let values = cast(column(&batch, "value")?, &DataType::Float64)?;
        let (ids, times, values) = (
            ids.as_primitive::<UInt64Type>(),
            times.as_primitive::<TimestampMillisecondType>(),
            values.as_primitive::<Float64Type>(),
        );
        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            let (place, watched) = match last {
                Some((seen, place, watched)) if seen == id => (place, watched),
                _ => {
                    let (_, place, watched) =
                        last.insert((id, groups.slot_of.get(&id).copied(), latest.contains_key(&id)));
                    (*place, *watched)
                }
            };
            let Some((range, slot)) = place else {
                if watched
                    && let Some(last) = latest.get_mut(&id)
                    && times.value(row) >= last.0
                {
                    *last = (times.value(row), values.value(row));
                }
                continue;
            };
            counts.input_points += 1;
            let value = values.value(row);
            if !value.is_finite() {
                counts.non_finite_dropped += 1;
            } else if value < 0.0 {
                counts.negative_dropped += 1;
            } else {
                aside.push(range, Sample { slot, ts: times.value(row), value })?;
            }
        }
    }
    Ok(aside)
}

fn column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef, BoxError> {
    batch.column_by_name(name).ok_or_else(|| format!("the samples table has no `{name}` column").into())
}

/// kube-state-metrics series that describe nothing cleaned are said, not only counted.
fn say_kube(counts: &Counts, warnings: &mut Vec<String>) {
    let said = [
        (counts.owner_series_without_usage, "kube_pod_owner series name pods without usage: left out"),
        (counts.hpas_without_usage, "HPAs scale workloads without usage (or whose pods name no owner): left out"),
        (
            counts.quota_namespaces_without_workloads,
            "namespaces have a ResourceQuota but no workload: their quotas are compared with nothing",
        ),
    ];
    for (n, what) in said.into_iter().filter(|(n, _)| *n > 0) {
        warnings.push(format!("{n} {what}"));
    }
}

/// No usable sample is an error; a step finer than the samples' spacing a warning.
fn check_inputs(
    plan: &Plan,
    counts: &Counts,
    spacing: Option<i64>,
    warnings: &mut Vec<String>,
) -> Result<(), BoxError> {
    let role_names = || plan.roles.iter().map(|r| r.name()).collect::<Vec<_>>().join("/");
    if counts.input_points == 0 {
        return Err(PrepareError::NoSamples { roles: role_names() }.into());
    }
    if counts.non_finite_dropped == counts.input_points {
        return Err(PrepareError::AllNonFinite { count: counts.input_points, roles: role_names() }.into());
    }
    // A step finer than the data's own interval makes most grid points gaps.
    if let Some(spacing) = spacing.filter(|s| *s > 0)
        && plan.step_ms < spacing * 9 / 10
    {
        warnings.push(format!(
            "the step ({} s) is finer than the data's resolution (about {} s between samples): most grid \
             points will be gaps; use a step of at least {} s",
            plan.step_ms as f64 / 1000.0,
            spacing as f64 / 1000.0,
            spacing as f64 / 1000.0
        ));
    }
    Ok(())
}

/// Nothing left after cleaning is an error with the counts of why (a shard: a warning, the
/// other shards may hold the series).
fn check_left(plan: &Plan, c: &Counts, scope: Scope<'_>, warnings: &mut Vec<String>) -> Result<(), BoxError> {
    if c.points > 0 {
        return Ok(());
    }
    let error = PrepareError::NothingLeft {
        series: c.grouped_series,
        without_roles: c.series_without_all_roles,
        short: c.short_segments_dropped,
        min_points: plan.min_points,
        trim: plan.trim,
        zero: c.zero_series_dropped,
        constant: c.constant_series_dropped,
    };
    match scope.shard {
        Some(_) => warnings.push(format!("this shard: {error}")),
        None => return Err(error.into()),
    }
    Ok(())
}

/// The `resampled` table's schema.
pub fn output_schema(labels: &[&str], roles: &[Role], combine: Combine) -> SchemaRef {
    let mut fields = vec![Field::new(resampled::KEY, DataType::Utf8, false)];
    fields.extend(labels.iter().map(|l| Field::new(*l, DataType::Utf8, true)));
    fields.push(Field::new(resampled::SEGMENT, DataType::UInt32, false));
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    fields.push(Field::new(resampled::TIMESTAMP, timestamp, false));
    fields.push(Field::new(resampled::REPLICAS, DataType::UInt32, false));
    for r in roles {
        fields.push(Field::new(r.name(), DataType::Float64, false));
        fields.push(Field::new(format!("{}_filled", r.name()), DataType::Boolean, false));
    }
    let combined = HashMap::from([(resampled::COMBINED.to_string(), combine.name().to_string())]);
    Arc::new(Schema::new_with_metadata(fields, combined))
}

/// Every series of the `series` table (labels by series id) and its extent.
pub(crate) fn read_series(batches: &[RecordBatch]) -> Result<(Vec<SeriesLabels>, HashMap<u64, Span>), BoxError> {
    let mut series = Vec::new();
    let mut spans = HashMap::new();
    for b in batches {
        let text = |name: &str| -> Result<ArrayRef, BoxError> {
            Ok(cast(
                b.column_by_name(name).ok_or_else(|| format!("the series table has no `{name}` column"))?,
                &DataType::Utf8,
            )?)
        };
        let int = |name: &str, to: &DataType| -> Result<ArrayRef, BoxError> {
            let c = b.column_by_name(name).ok_or_else(|| format!("the series table has no `{name}` column"))?;
            Ok(cast(&cast(c, to)?, &DataType::Int64)?)
        };
        let ids = cast(
            b.column_by_name("series_id").ok_or("the series table has no `series_id` column")?,
            &DataType::UInt64,
        )?;
        let ids = ids.as_primitive::<UInt64Type>();
        let (roles, metrics, labels) = (text("role")?, text("metric")?, text("labels")?);
        let (roles, metrics, labels) =
            (roles.as_string::<i32>(), metrics.as_string::<i32>(), labels.as_string::<i32>());
        let stamp = DataType::Timestamp(TimeUnit::Millisecond, None);
        let (first, last, points) =
            (int("first_timestamp", &stamp)?, int("last_timestamp", &stamp)?, int("points", &DataType::Int64)?);
        let (first, last, points) =
            (first.as_primitive::<Int64Type>(), last.as_primitive::<Int64Type>(), points.as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            let labels = serde_json::from_str(labels.value(i)).map_err(|e| {
                format!("series {}: its `labels` column is not a JSON object of strings ({e})", ids.value(i))
            })?;
            series.push(SeriesLabels {
                series_id: ids.value(i),
                role: roles.value(i).to_string(),
                metric: metrics.value(i).to_string(),
                labels,
            });
            let span = Span { points: points.value(i).max(0) as u64, first: first.value(i), last: last.value(i) };
            spans.insert(ids.value(i), span);
        }
    }
    series.sort_by_key(|s| s.series_id);
    Ok((series, spans))
}

/// Kubernetes names generated suffixes from this alphabet (no vowels, no 0, 1, 3).
fn is_generated(s: &str) -> bool {
    s.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
}

/// Strips the suffixes Kubernetes controllers add to pod names: Deployment pods
/// (`name-<template hash>-<5>`), CronJob pods (`name-<scheduled minute>-<5>`, so that every
/// run is one workload), StatefulSet pods (`name-<ordinal>`), DaemonSet and Job pods
/// (`name-<5>`). Other names are kept whole.
pub fn workload_of(pod: &str) -> &str {
    let mut parts = pod.rsplitn(3, '-');
    let (last, middle, rest) = (parts.next(), parts.next(), parts.next());
    if let (Some(last), Some(middle), Some(rest)) = (last, middle, rest)
        && last.len() == 5
        && is_generated(last)
        && (((6..=10).contains(&middle.len()) && is_generated(middle))
            || (middle.len() >= 8 && middle.bytes().all(|b| b.is_ascii_digit())))
    {
        return rest;
    }
    let Some((name, last)) = pod.rsplit_once('-') else { return pod };
    let ordinal =
        last == "0" || (!last.starts_with('0') && !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()));
    if ordinal || (last.len() == 5 && is_generated(last)) { name } else { pod }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_map_to_their_workloads() {
        assert_eq!(workload_of("cartservice-579f59597d-wc2lz"), "cartservice");
        assert_eq!(workload_of("ts-admin-basic-info-service-5f55b6cf68-77cfw"), "ts-admin-basic-info-service");
        assert_eq!(workload_of("web-0"), "web");
        assert_eq!(workload_of("web-12"), "web");
        assert_eq!(workload_of("node-exporter-x7k2p"), "node-exporter");
        // A CronJob's runs: its Job is named after the scheduled minute.
        assert_eq!(workload_of("report-29892961-x5b2c"), "report");
        // Zero-padded numbers are not ordinals (bitbrains' VMs), vowels are never generated.
        assert_eq!(workload_of("vm-0001"), "vm-0001");
        assert_eq!(workload_of("my-redis"), "my-redis");
        assert_eq!(workload_of("standalone"), "standalone");
    }

    #[test]
    fn aggregations_parse_and_unknown_ones_are_refused() {
        assert_eq!(Aggregate::parse("p95"), Some(Aggregate::Percentile(0.95)));
        assert_eq!(Aggregate::parse("last"), Some(Aggregate::Last));
        for bad in ["median", "p", "p0", "p100", "p9x", "P90"] {
            assert_eq!(Aggregate::parse(bad), None, "{bad}");
        }
    }
}
