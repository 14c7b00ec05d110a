//! `clean.resample`: the ingested samples → one row per series and grid step, CPU and
//! memory side by side, in segments without gaps.
//!
//! Order of work, each step a DataFusion query over the previous one:
//! 1. drop non-finite and negative values (counted);
//! 2. bin every series on the step grid (`date_bin`) with the chosen aggregation;
//! 3. group series into workloads (or keep them apart) and combine replicas per step;
//! 4. fill gaps up to `max_gap` (flagged), leave longer ones;
//! 5. align the roles on the grid (a row needs every role);
//! 6. split at the remaining gaps into segments, trim segment edges, drop short segments;
//! 7. drop series that are constant or all zero.

use crate::PrepareError;
use std::sync::Arc;

use applearner_pipeline::arrow::array::{Int64Array, RecordBatch, StringArray};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{BoxError, Output, ParamProblem, Stage, StageContext, StageParams, Summary};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use applearner_pipeline::Duration;

/// What a series measures: the ingest stage maps metrics to roles, one per resource.
pub use applearner_contracts::Resource as Role;
use applearner_contracts::tables::{allocation as alloc, resampled};

use crate::identity::{self, Identity, SeriesLabels};
use crate::{collect, ident, literal, register_batches, register_input};

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
    /// many points, whatever the input's size (the default peaks at about 0.5 GB); one
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
    /// How replicas combine at each step: `sum` (the workload's total) or `max` (its
    /// busiest replica).
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
    Sum,
    Max,
}

/// 2³²: step numbers (ts / step, below 2³² for steps of a second or more until 2106) live in
/// the low 32 bits of the integers that address points.
const SHIFT: i64 = 1 << 32;

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

    fn sql(self) -> String {
        match self {
            Aggregate::Mean => "avg(value)".into(),
            Aggregate::Max => "max(value)".into(),
            Aggregate::Min => "min(value)".into(),
            Aggregate::Last => "last_value(value ORDER BY timestamp)".into(),
            Aggregate::Sum => "sum(value)".into(),
            Aggregate::Percentile(q) => format!("percentile_cont({q}) WITHIN GROUP (ORDER BY value)"),
        }
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
        vec![Output::table("resampled"), Output::table("allocation")]
    }

    fn shard_order(&self) -> Option<Vec<(&'static str, Vec<&'static str>)>> {
        Some(vec![
            ("resampled", vec![resampled::KEY, resampled::TIMESTAMP]),
            ("allocation", vec![alloc::KEY, alloc::SIGNAL, alloc::TIMESTAMP]),
        ])
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let session = crate::session(Some(ctx));
        let p = &self.plan;
        let columns = identity::key_columns(p.group.by, &p.group.labels);
        let schema = output_schema(&columns.iter().map(String::as_str).collect::<Vec<_>>(), &p.roles);
        let in_shard = |key: &str| ctx.in_shard(key.as_bytes());
        let scope = Scope { shard: ctx.shard().map(|_| &in_shard as &dyn Fn(&str) -> bool) };
        let cleaned = crate::stream_tables(ctx, &[("resampled", schema)], |sinks| {
            ctx.store().block_on(async move {
                register_input(&session, ctx, "samples").await?;
                register_input(&session, ctx, "series").await?;
                let cancelled = || ctx.check_cancelled().map_err(Into::into);
                clean_into(&session, p, &cancelled, scope, &mut |b| crate::send(&sinks[0], b)).await
            })
        })?;
        for w in &cleaned.warnings {
            tracing::warn!("{w}");
        }
        ctx.write_table("allocation", crate::allocation::schema(), &cleaned.allocation)?;
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
}

/// The cleaned table and its story.
#[derive(Debug)]
pub struct Cleaned {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The `allocation` table's rows.
    pub allocation: Vec<RecordBatch>,
    pub counts: Counts,
    pub warnings: Vec<String>,
}

/// Which series a run cleans: all, or those of one shard (by key).
#[derive(Clone, Copy, Default)]
pub struct Scope<'a> {
    pub shard: Option<&'a dyn Fn(&str) -> bool>,
}

/// Cleans the tables registered as `samples` and `series` (ingest's outputs) in `session`,
/// the output rows collected in `batches`.
pub async fn clean(
    session: &SessionContext,
    plan: &Plan,
    check_cancelled: &dyn Fn() -> Result<(), BoxError>,
) -> Result<Cleaned, BoxError> {
    let mut batches = Vec::new();
    let mut cleaned = clean_into(session, plan, check_cancelled, Scope::default(), &mut |b| {
        batches.push(b);
        Ok(())
    })
    .await?;
    cleaned.batches = batches;
    Ok(cleaned)
}

/// Cleans the series of `scope`, handing the output rows to `sink` in series and time order.
///
/// The heavy steps run on integers: each group of series gets a number `k` and each role a
/// number `r` from the small `series` table, and labels are joined back at the end. Groups
/// are cleaned a range of `k` at a time, each range at most `max_points` input points, so
/// memory holds one range whatever the input's size.
pub async fn clean_into(
    session: &SessionContext,
    plan: &Plan,
    check_cancelled: &dyn Fn() -> Result<(), BoxError>,
    scope: Scope<'_>,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), BoxError>,
) -> Result<Cleaned, BoxError> {
    let role_list = plan.roles.iter().map(|r| literal(r.name())).collect::<Vec<_>>().join(", ");
    let mut c = Cleaning { session, plan, role_list, counts: Counts::default(), warnings: Vec::new() };
    let started = std::time::Instant::now();
    // Between steps: stop if the run is cancelled; `-vv` shows where the time goes.
    let checkpoint = |step: &str| {
        tracing::debug!(step, elapsed_ms = started.elapsed().as_millis() as u64, "clean.resample");
        check_cancelled()
    };
    let (key_columns, spacing, shared, identities) = c.groups(scope).await?;
    let allocation = crate::allocation::allocation(session, plan, &identities, scope, &mut c.counts).await?;
    checkpoint("allocation")?;
    let schema = output_schema(&key_columns.iter().map(String::as_str).collect::<Vec<_>>(), &plan.roles);
    if scope.shard.is_some() && c.counts.grouped_series == 0 {
        c.warnings.push("this shard holds no series (more shards than series): its tables are empty".into());
        return Ok(Cleaned { schema, batches: Vec::new(), allocation, counts: c.counts, warnings: c.warnings });
    }
    c.inputs(spacing).await?;
    c.without_roles().await?;
    checkpoint("input")?;
    for (first, last) in c.ranges().await? {
        c.grid(shared, first, last).await?;
        c.fill().await?;
        c.segment().await?;
        let (kept, long_enough) = c.trim().await?;
        let keep = c.filter(&kept, &long_enough).await?;
        for b in c.output(&key_columns, &kept, &keep).await? {
            sink(crate::conform(&b, &schema)?)?;
        }
        checkpoint(&format!("groups {first}–{last}"))?;
    }
    c.check_left(scope)?;
    Ok(Cleaned { schema, batches: Vec::new(), allocation, counts: c.counts, warnings: c.warnings })
}

/// A cleaning in progress: one method per step, each a query over the tables the previous
/// ones registered in the session, counting what it does.
struct Cleaning<'a> {
    session: &'a SessionContext,
    plan: &'a Plan,
    /// The roles kept, as an SQL list: `'cpu', 'memory'`.
    role_list: String,
    counts: Counts,
    warnings: Vec<String>,
}

/// Values that are neither NaN nor infinite.
pub(crate) const FINITE: &str = "NOT isnan(value) AND abs(value) < CAST('inf' AS DOUBLE)";

impl Cleaning<'_> {
    /// The series to clean, their group number k and role number r (the table `groups`);
    /// returns the key columns, the median spacing of samples, how many series share a group
    /// and every series' identity.
    async fn groups(&mut self, scope: Scope<'_>) -> Result<(Vec<String>, u64, u64, Vec<Identity>), BoxError> {
        let Cleaning { session, plan, role_list, counts, warnings, .. } = self;
        let role_number = plan
            .roles
            .iter()
            .enumerate()
            .map(|(i, r)| format!("WHEN {} THEN {i}", literal(r.name())))
            .collect::<Vec<_>>()
            .join(" ");
        // The series to clean, their group number k and role number r.
        let (key_columns, identities) = register_identities(session, plan, role_list, scope, warnings).await?;
        let key_names = key_columns.iter().map(|name| ident(name)).collect::<Vec<_>>();
        let groups = session
            .sql(&format!(
                "SELECT series_id, r, key, {names}, CAST(dense_rank() OVER (ORDER BY key) AS BIGINT) AS k, spacing FROM ( \
                   SELECT s.series_id, CASE CAST(s.role AS VARCHAR) {role_number} END AS r, i.key, {identity_names}, \
                          CASE WHEN points > 1 THEN (CAST(last_timestamp AS BIGINT) - CAST(first_timestamp AS BIGINT)) \
                               / (CAST(points AS BIGINT) - 1) END AS spacing \
                   FROM series s JOIN identity i ON s.series_id = i.series_id WHERE s.role IN ({role_list}))",
                names = key_names.join(", "),
                identity_names = key_names.iter().map(|n| format!("i.{n}")).collect::<Vec<_>>().join(", "),
            ))
            .await?;
        let schema = Arc::new(groups.schema().as_arrow().clone());
        register_batches(session, "groups", collect(groups).await?, schema, &[])?;
        let row = single_row(
            session,
            "SELECT count(*), max(k), CAST(median(spacing) AS BIGINT), \
                    count(*) - count(DISTINCT k * 16 + r) FROM groups",
        )
        .await?;
        [counts.input_series, counts.grouped_series] = [row[0], row[1]];
        Ok((key_columns, row[2], row[3], identities))
    }

    /// 1. What the input holds, and what is unusable.
    async fn inputs(&mut self, spacing: u64) -> Result<(), BoxError> {
        let Cleaning { session, plan, role_list, counts, warnings, .. } = self;
        let step = plan.step_ms;
        let role_names = || plan.roles.iter().map(|r| r.name()).collect::<Vec<_>>().join("/");
        let row = single_row(
            session,
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE NOT ({FINITE})), count(*) FILTER (WHERE {FINITE} AND value < 0) \
             FROM samples WHERE role IN ({role_list}) AND series_id IN (SELECT series_id FROM groups)"
            ),
        )
        .await?;
        [counts.input_points, counts.non_finite_dropped, counts.negative_dropped] = [row[0], row[1], row[2]];
        if counts.input_points == 0 {
            return Err(PrepareError::NoSamples { roles: role_names() }.into());
        }
        if counts.non_finite_dropped == counts.input_points {
            return Err(PrepareError::AllNonFinite { count: counts.input_points, roles: role_names() }.into());
        }
        // A step finer than the data's own interval makes most grid points gaps.
        let spacing = spacing as i64;
        if spacing > 0 && step < spacing * 9 / 10 {
            warnings.push(format!(
                "the step ({} s) is finer than the data's resolution (about {} s between samples): most grid \
                 points will be gaps; use a step of at least {} s",
                step as f64 / 1000.0,
                spacing as f64 / 1000.0,
                spacing as f64 / 1000.0
            ));
        }
        Ok(())
    }

    /// The ranges of group numbers cleaned at a time: consecutive groups of at most
    /// `max_points` input points together. A group alone above it is an error naming it.
    async fn ranges(&self) -> Result<Vec<(u64, u64)>, BoxError> {
        let sizes = collect(
            self.session
                .sql(
                    "SELECT g.k, min(g.key), CAST(sum(s.points) AS BIGINT) FROM groups g \
                     JOIN series s ON g.series_id = s.series_id GROUP BY g.k ORDER BY g.k",
                )
                .await?,
        )
        .await?;
        let mut ranges: Vec<(u64, u64, u64)> = Vec::new();
        for b in &sizes {
            let (k, key, points) = (cast(b.column(0), &DataType::Int64)?, b.column(1).as_string::<i32>(), b.column(2));
            let (k, points) = (
                k.as_primitive::<datafusion::arrow::datatypes::Int64Type>(),
                points.as_primitive::<datafusion::arrow::datatypes::Int64Type>(),
            );
            for i in 0..b.num_rows() {
                let (k, n) = (k.value(i) as u64, points.value(i) as u64);
                if n > self.plan.max_points {
                    let key = key.value(i).to_string();
                    return Err(PrepareError::GroupTooLarge { key, points: n, max: self.plan.max_points }.into());
                }
                match ranges.last_mut() {
                    Some(r) if r.2 + n <= self.plan.max_points => (r.1, r.2) = (k, r.2 + n),
                    _ => ranges.push((k, k, n)),
                }
            }
        }
        Ok(ranges.into_iter().map(|(first, last, _)| (first, last)).collect())
    }

    /// 2-3. The table `grid`: the series of groups `first` to `last` binned on the step
    /// grid, a group's series combined.
    async fn grid(&mut self, shared: u64, first: u64, last: u64) -> Result<(), BoxError> {
        let Cleaning { session, plan, role_list, counts, .. } = self;
        let step = plan.step_ms;
        // 2-3. Bin each series on the grid, then combine the series of one group at each step
        // (a no-op, skipped, when every group has one series per role). From here on a point is
        // addressed by one integer, `s = (k · roles + r) · 2³² + n` with n the step number
        // (ts / step), so that sorting, windows and grouping work on a single column: the runs
        // of consecutive steps of one series are the runs of consecutive values of `s`.
        let n_roles = plan.roles.len() as i64;
        let binned = format!(
            "SELECT series_id, \
                    CAST(arrow_cast(date_bin(INTERVAL '{step} milliseconds', timestamp, TIMESTAMP '1970-01-01T00:00:00Z'), \
                         'Timestamp(Millisecond, Some(\"UTC\"))') AS BIGINT) / {step} AS n, \
                    {agg} AS value \
             FROM samples WHERE role IN ({role_list}) AND {FINITE} AND value >= 0 \
               AND series_id IN (SELECT series_id FROM groups WHERE k BETWEEN {first} AND {last}) \
             GROUP BY series_id, n",
            agg = plan.aggregate.sql(),
        );
        let grid_sql = if shared == 0 {
            format!(
                "SELECT (g.k * {n_roles} + g.r) * {SHIFT} + b.n AS s, b.value \
                 FROM ({binned}) b JOIN groups g ON b.series_id = g.series_id"
            )
        } else {
            let combine = match plan.group.aggregate {
                Combine::Sum => "sum",
                Combine::Max => "max",
            };
            format!(
                "SELECT (g.k * {n_roles} + g.r) * {SHIFT} + b.n AS s, {combine}(b.value) AS value \
                 FROM ({binned}) b JOIN groups g ON b.series_id = g.series_id GROUP BY s"
            )
        };
        let grid = crate::sql_in_order(session, &grid_sql).await?;
        let schema = Arc::new(grid.schema().as_arrow().clone());
        register_batches(session, "grid", collect(grid).await?, schema, &[])?;
        counts.grid_points += single_row(session, "SELECT count(*) FROM grid").await?[0];
        Ok(())
    }

    /// 4. The table `fills`: the points that fill short gaps.
    async fn fill(&mut self) -> Result<(), BoxError> {
        let Cleaning { session, plan, counts, .. } = self;
        let step = plan.step_ms;
        // 4. Fill gaps of up to max_gap missing time; longer ones stay and split segments below.
        // Runs of consecutive steps ("islands": s - row number is constant along one, and grows
        // from one to the next) come from one window; the gaps lie between the few islands.
        let fill = match plan.fill {
            Fill::Linear => "prev_value + (value - prev_value) * CAST(t - prev AS DOUBLE) / CAST(s - prev AS DOUBLE)",
            Fill::Ffill => "prev_value",
            Fill::Zero => "CAST(0 AS DOUBLE)",
        };
        let max_steps = plan.max_gap_ms / step;
        let fills = session
            .sql(&format!(
                "WITH islands AS ( \
                   SELECT min(s) AS first, max(s) AS last, \
                          first_value(value ORDER BY s) AS first_value, last_value(value ORDER BY s) AS last_value \
                   FROM (SELECT s, value, s - CAST(row_number() OVER (ORDER BY s) AS BIGINT) AS island FROM grid) \
                   GROUP BY island), \
                 gaps AS ( \
                   SELECT first AS s, first_value AS value, \
                          lag(last) OVER (ORDER BY first) AS prev, lag(last_value) OVER (ORDER BY first) AS prev_value \
                   FROM islands) \
                 SELECT t AS s, {fill} AS value FROM ( \
                   SELECT *, unnest(range(prev + 1, s)) AS t FROM gaps \
                   WHERE s / {SHIFT} = prev / {SHIFT} AND s - prev - 1 <= {max_steps})"
            ))
            .await?;
        let schema = Arc::new(fills.schema().as_arrow().clone());
        let fills = collect(fills).await?;
        counts.filled_points += fills.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        register_batches(session, "fills", fills, schema, &[])?;
        Ok(())
    }

    /// Groups missing one of the roles entirely.
    async fn without_roles(&mut self) -> Result<(), BoxError> {
        let n_roles = self.plan.roles.len();
        self.counts.series_without_all_roles = single_row(self.session, &format!(
            "SELECT count(*) FROM (SELECT k FROM (SELECT DISTINCT k, r FROM groups) GROUP BY k HAVING count(*) < {n_roles})"
        ))
        .await?[0];
        Ok(())
    }

    /// 5-6. The table `segmented`: one row per group and step with every role, numbered by segment.
    async fn segment(&mut self) -> Result<(), BoxError> {
        let Cleaning { session, plan, .. } = self;
        let n_roles = plan.roles.len() as i64;
        // 5. One row per group and step with every role (a group has one row per role and
        // step, so counting rows counts roles), addressed by `w = k · 2³² + n`; 6. segments:
        // runs of consecutive w, numbered like the islands above.
        let role_columns = plan
            .roles
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let name = r.name();
                format!(
                    "max(value) FILTER (WHERE r = {i}) AS {name}, bool_or(filled) FILTER (WHERE r = {i}) AS {name}_filled"
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let all = format!(
            "SELECT (s / {SHIFT} / {n_roles}) * {SHIFT} + s % {SHIFT} AS w, (s / {SHIFT}) % {n_roles} AS r, value, filled \
             FROM (SELECT s, value, false AS filled FROM grid UNION ALL SELECT s, value, true AS filled FROM fills)"
        );
        let wide = if n_roles == 1 {
            let name = plan.roles[0].name();
            format!("SELECT w, value AS {name}, filled AS {name}_filled FROM ({all})")
        } else {
            format!("SELECT w, {role_columns} FROM ({all}) GROUP BY w HAVING count(*) = {n_roles}")
        };
        let segmented = session
            .sql(&format!(
                "SELECT *, w - CAST(row_number() OVER (ORDER BY w) AS BIGINT) AS seg FROM ({wide}) ORDER BY w"
            ))
            .await?;
        let schema = Arc::new(segmented.schema().as_arrow().clone());
        register_batches(session, "segmented", collect(segmented).await?, schema, &["w"])?;
        Ok(())
    }

    /// 6. The table `segments` and the query of the points kept after trimming; returns that
    /// query and the condition a segment long enough meets.
    async fn trim(&mut self) -> Result<(String, String), BoxError> {
        let Cleaning { session, plan, counts, .. } = self;
        // Segment extents (few rows): a point is kept when it is not among the `trim` first or
        // last of its segment, and the segment keeps at least min_points.
        let trim = plan.trim as i64;
        let segments = session
            .sql(&format!(
                "SELECT seg, min(w) / {SHIFT} AS k, min(w) + {trim} AS first, max(w) - {trim} AS last, count(*) AS n \
                 FROM segmented GROUP BY seg"
            ))
            .await?;
        let schema = Arc::new(segments.schema().as_arrow().clone());
        register_batches(session, "segments", collect(segments).await?, schema, &[])?;
        let long_enough = format!("n - {} >= {}", 2 * trim, plan.min_points);
        let row = single_row(
            session,
            &format!(
                "SELECT count(*), sum(least(n, {})), count(*) FILTER (WHERE NOT ({long_enough})) FROM segments",
                2 * trim
            ),
        )
        .await?;
        counts.segments += row[0];
        counts.trimmed_points += row[1];
        counts.short_segments_dropped += row[2];
        let kept = format!(
            "SELECT s.*, g.k, g.number FROM segmented s JOIN ( \
               SELECT seg, k, first, last, row_number() OVER (PARTITION BY k ORDER BY seg) - 1 AS number \
               FROM segments WHERE {long_enough}) g \
             ON s.seg = g.seg WHERE s.w >= g.first AND s.w <= g.last"
        );
        Ok((kept, long_enough))
    }

    /// 7. The table `stats`: groups in which a role is zero throughout, or constant; returns
    /// the conditions a kept group meets.
    async fn filter(&mut self, kept: &str, long_enough: &str) -> Result<Vec<String>, BoxError> {
        let Cleaning { session, plan, counts, .. } = self;
        // 7. Groups in which a role is zero throughout, or constant.
        let mut zero_any = Vec::new();
        let mut constant_any = Vec::new();
        for role in &plan.roles {
            let r = role.name();
            zero_any.push(format!("(min({r}) = 0 AND max({r}) = 0)"));
            constant_any.push(format!("min({r}) = max({r})"));
        }
        let stats = session
            .sql(&format!(
                "SELECT k, {} AS zero, {} AS constant FROM ({kept}) GROUP BY k",
                zero_any.join(" OR "),
                constant_any.join(" OR ")
            ))
            .await?;
        let schema = Arc::new(stats.schema().as_arrow().clone());
        register_batches(session, "stats", collect(stats).await?, schema, &[])?;
        let row = single_row(
            session,
            "SELECT count(*) FILTER (WHERE zero), count(*) FILTER (WHERE constant AND NOT zero) FROM stats",
        )
        .await?;
        let mut keep = vec!["true".to_string()];
        if plan.drop_zero {
            keep.push("NOT zero".into());
            counts.zero_series_dropped += row[0];
        }
        if plan.drop_constant {
            keep.push("(zero OR NOT constant)".into());
            counts.constant_series_dropped += row[1];
        }
        let row = single_row(
            session,
            &format!(
                "SELECT count(*), count(DISTINCT k), sum(n - {}) FROM segments \
             WHERE {long_enough} AND k IN (SELECT k FROM stats WHERE {keep})",
                2 * plan.trim as i64,
                keep = keep.join(" AND ")
            ),
        )
        .await?;
        counts.output_segments += row[0];
        counts.series += row[1];
        counts.points += row[2];
        Ok(keep)
    }

    /// Nothing left after cleaning is an error with the counts of why (a shard: a warning,
    /// the other shards may hold the series).
    fn check_left(&mut self, scope: Scope<'_>) -> Result<(), BoxError> {
        let (c, plan) = (&self.counts, self.plan);
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
            Some(_) => self.warnings.push(format!("this shard: {error}")),
            None => return Err(error.into()),
        }
        Ok(())
    }

    /// The clean rows with their labels, in series and time order.
    async fn output(&self, key_columns: &[String], kept: &str, keep: &[String]) -> Result<Vec<RecordBatch>, BoxError> {
        let Cleaning { session, plan, .. } = self;
        let step = plan.step_ms;
        let key_names = key_columns.iter().map(|name| ident(name)).collect::<Vec<_>>();
        let values = plan.roles.iter().map(|r| format!("{0}, {0}_filled", r.name())).collect::<Vec<_>>().join(", ");
        let out = session
            .sql(&format!(
                "WITH labels AS (SELECT DISTINCT k, key, {names} FROM groups) \
                 SELECT labels.key, {labels}, number AS segment, (w % {SHIFT}) * {step} AS timestamp, {values} \
                 FROM ({kept}) kept JOIN labels ON kept.k = labels.k \
                 WHERE kept.k IN (SELECT k FROM stats WHERE {keep}) \
                 ORDER BY w",
                names = key_names.join(", "),
                labels = key_names.iter().map(|n| format!("labels.{n}")).collect::<Vec<_>>().join(", "),
                keep = keep.join(" AND "),
            ))
            .await?;
        collect(out).await
    }
}

/// The `resampled` table's schema.
pub fn output_schema(labels: &[&str], roles: &[Role]) -> SchemaRef {
    let mut fields = vec![Field::new(resampled::KEY, DataType::Utf8, false)];
    fields.extend(labels.iter().map(|l| Field::new(*l, DataType::Utf8, true)));
    fields.push(Field::new(resampled::SEGMENT, DataType::UInt32, false));
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    fields.push(Field::new(resampled::TIMESTAMP, timestamp, false));
    for r in roles {
        fields.push(Field::new(r.name(), DataType::Float64, false));
        fields.push(Field::new(format!("{}_filled", r.name()), DataType::Boolean, false));
    }
    Arc::new(Schema::new(fields))
}

/// The first row of a query whose columns are all counts.
async fn single_row(session: &SessionContext, sql: &str) -> Result<Vec<u64>, BoxError> {
    let batches = collect(session.sql(sql).await?).await?;
    let Some(batch) = batches.first() else { return Ok(Vec::new()) };
    batch
        .columns()
        .iter()
        .map(|c| {
            let c = cast(c, &DataType::Int64)?;
            let c = c.as_any().downcast_ref::<Int64Array>().expect("cast to Int64");
            Ok(if c.is_null(0) { 0 } else { c.value(0).max(0) as u64 })
        })
        .collect()
}

/// Reads every series' labels (the small `series` table), works out which series are one
/// (see [`identity`](crate::identity)) and registers the result as the table `identity`:
/// `series_id`, `key` and the key columns, whose names it returns.
async fn register_identities(
    session: &SessionContext,
    plan: &Plan,
    role_list: &str,
    scope: Scope<'_>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<String>, Vec<Identity>), BoxError> {
    let series = read_series(session, role_list).await?;
    let columns = identity::key_columns(plan.group.by, &plan.group.labels);
    if plan.group.by == GroupBy::Labels {
        for label in &plan.group.labels {
            let without = series.iter().filter(|s| !s.labels.contains_key(label)).count();
            if without == series.len() && without > 0 {
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
    let all = identity::identify(&series, plan.group.by, &plan.group.labels);
    // A shard cleans its own keys; every identity still tells the allocation where it belongs.
    let identities: Vec<&Identity> = all.iter().filter(|i| scope.shard.is_none_or(|keep| keep(&i.key))).collect();
    let mut fields = vec![Field::new("series_id", DataType::UInt64, false), Field::new("key", DataType::Utf8, false)];
    fields.extend(columns.iter().map(|c| Field::new(c, DataType::Utf8, true)));
    let schema = Arc::new(Schema::new(fields));
    let mut arrays: Vec<datafusion::arrow::array::ArrayRef> = vec![
        Arc::new(datafusion::arrow::array::UInt64Array::from_iter_values(identities.iter().map(|i| i.series_id))),
        Arc::new(StringArray::from_iter_values(identities.iter().map(|i| i.key.as_str()))),
    ];
    for c in 0..columns.len() {
        arrays.push(Arc::new(identities.iter().map(|i| i.columns[c].as_deref()).collect::<StringArray>()));
    }
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    register_batches(session, "identity", vec![batch], schema, &[])?;
    Ok((columns, all))
}

/// The labels of every series of the roles in `role_list` (an SQL list), by series id.
pub(crate) async fn read_series(session: &SessionContext, role_list: &str) -> Result<Vec<SeriesLabels>, BoxError> {
    let rows = collect(
        session
            .sql(&format!(
                "SELECT series_id, CAST(role AS VARCHAR), CAST(metric AS VARCHAR), CAST(labels AS VARCHAR) \
                 FROM series WHERE role IN ({role_list}) ORDER BY series_id"
            ))
            .await?,
    )
    .await?;
    let mut series = Vec::new();
    for b in &rows {
        let ids = cast(b.column(0), &DataType::UInt64)?;
        let ids = ids.as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
        let (roles, metrics, labels) =
            (b.column(1).as_string::<i32>(), b.column(2).as_string::<i32>(), b.column(3).as_string::<i32>());
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
        }
    }
    Ok(series)
}

/// Kubernetes names generated suffixes from this alphabet (no vowels, no 0, 1, 3).
fn is_generated(s: &str) -> bool {
    s.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
}

/// Strips the suffixes Kubernetes controllers add to pod names: Deployment pods
/// (`name-<template hash>-<5>`), StatefulSet pods (`name-<ordinal>`), DaemonSet and Job pods
/// (`name-<5>`). Other names are kept whole.
pub fn workload_of(pod: &str) -> &str {
    let mut parts = pod.rsplitn(3, '-');
    let (last, middle, rest) = (parts.next(), parts.next(), parts.next());
    if let (Some(last), Some(middle), Some(rest)) = (last, middle, rest)
        && last.len() == 5
        && is_generated(last)
        && (6..=10).contains(&middle.len())
        && is_generated(middle)
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
