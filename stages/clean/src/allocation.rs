//! The `allocation` table of clean.resample: what each series had allocated (requests and
//! limits) and what hurt it (OOM kills, restarts, CPU throttling), on the usage's grid and
//! keys, so that plans can be set beside what runs today.
//!
//! Each allocation series is aligned to the usage series it describes ([`identity::align`]);
//! one with no usage, or matching several keys, is counted and left out, never merged. Per
//! pod a step holds the largest sample in it (a request changed within the step counts at
//! its higher value; a counter at its latest; the mean for the throttled share); duplicate
//! series of one pod (two kube-state-metrics replicas) count once; the pods of a workload
//! combine as the usage does (requests and limits `sum` or `max`, the busiest replica's
//! throttling, restarts and kills added up). A restart is an increase of the restart counter
//! (a lower value is a reset: all of it counts); it is an OOM kill when the last terminated
//! reason is `OOMKilled` at that step or the next.
//!
//! Requests and limits are written where they change (and where they resume after a gap):
//! a row is the value in force from its step on. Pain signals have a row per step they occur.

use std::sync::Arc;

use applearner_contracts::tables::allocation as table;
use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{Int64Array, RecordBatch, StringArray, UInt64Array};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;

use crate::identity::{self, Identity, SeriesLabels};
use crate::resample::{Plan, Scope};
use crate::{collect, literal, register_batches};
use applearner_contracts::summaries::CleanSummary;

/// The roles ingest gives allocation and pain series.
pub const ROLES: [&str; 7] =
    [table::LINES[0], table::LINES[1], table::LINES[2], table::LINES[3], "restarts", "oom_killed", "cpu_throttled"];

/// Values that are neither NaN nor infinite.
const FINITE: &str = "NOT isnan(value) AND abs(value) < CAST('inf' AS DOUBLE)";

/// The `allocation` table's schema.
pub fn schema() -> SchemaRef {
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new(table::KEY, DataType::Utf8, false),
        Field::new(table::SIGNAL, DataType::Utf8, false),
        Field::new(table::TIMESTAMP, timestamp, false),
        Field::new(table::VALUE, DataType::Float64, false),
    ]))
}

/// The allocation series of `series` placed on the keys of the usage series `identities`,
/// those of the keys in `scope` ([`identity::place`]).
pub fn place<'s>(
    plan: &Plan,
    identities: &[Identity],
    series: &'s [SeriesLabels],
    scope: Scope<'_>,
    counts: &mut CleanSummary,
) -> Vec<(&'s SeriesLabels, String)> {
    let series: Vec<&SeriesLabels> = series.iter().filter(|s| ROLES.contains(&s.role.as_str())).collect();
    let placed = identity::place(identities, series, plan, scope);
    counts.allocation_series += placed.series;
    counts.allocation_series_without_usage += placed.without_usage;
    counts.allocation_series_ambiguous += placed.ambiguous;
    placed.kept
}

/// The allocation rows (sorted by key, signal, time) of the `kept` series placed by
/// [`place`], from the table `samples` of `session`.
pub async fn rows(
    session: &SessionContext,
    plan: &Plan,
    kept: &[(&SeriesLabels, String)],
    counts: &mut CleanSummary,
) -> Result<Vec<RecordBatch>, BoxError> {
    register_aligned(session, kept)?;
    // Per pod and step first (integers only), held once: the queries below read it four times.
    let member = collect(crate::sql_in_order(session, &member_sql(plan)).await?).await?;
    if member.is_empty() {
        return Ok(Vec::new());
    }
    tracing::debug!(rows = member.iter().map(|b| b.num_rows()).sum::<usize>(), "allocation per pod and step");
    let member_schema = member.first().map(|b| b.schema()).unwrap_or_else(|| Arc::new(Schema::empty()));
    register_batches(session, "member", member, member_schema, &[])?;
    let batches = collect(crate::sql_in_order(session, &signals_sql(plan)).await?).await?;
    counts.allocation_points = batches.iter().map(|b| b.num_rows() as u64).sum();
    let schema = schema();
    batches.iter().map(|b| applearner_pipeline::columns::conform(b, &schema)).collect()
}

/// The tables `aligned` (series id, role number `r` in [`ROLES`], key number `k` in key
/// order, pod number `m`) and `keys` (`k`, `key`).
fn register_aligned(session: &SessionContext, kept: &[(&SeriesLabels, String)]) -> Result<(), BoxError> {
    let keys: std::collections::BTreeSet<&str> = kept.iter().map(|(_, k)| k.as_str()).collect();
    let keys: Vec<&str> = keys.into_iter().collect();
    let pods: std::collections::BTreeSet<(&str, &str)> =
        kept.iter().map(|(s, k)| (k.as_str(), s.labels.get("pod").map_or("", String::as_str))).collect();
    let pods: Vec<(&str, &str)> = pods.into_iter().collect();
    let number = |k: &str| keys.binary_search(&k).expect("listed") as i64;
    let pod = |s: &SeriesLabels, k: &str| {
        pods.binary_search(&(k, s.labels.get("pod").map_or("", String::as_str))).expect("listed") as i64
    };
    let int = |name: &str| Field::new(name, DataType::Int64, false);
    let schema =
        Arc::new(Schema::new(vec![Field::new("series_id", DataType::UInt64, false), int("r"), int("k"), int("m")]));
    let role = |s: &SeriesLabels| ROLES.iter().position(|r| *r == s.role).expect("read by role") as i64;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from_iter_values(kept.iter().map(|(s, _)| s.series_id))),
            Arc::new(Int64Array::from_iter_values(kept.iter().map(|(s, _)| role(s)))),
            Arc::new(Int64Array::from_iter_values(kept.iter().map(|(_, k)| number(k)))),
            Arc::new(Int64Array::from_iter_values(kept.iter().map(|(s, k)| pod(s, k)))),
        ],
    )?;
    register_batches(session, "aligned", vec![batch], schema, &[])?;
    let schema = Arc::new(Schema::new(vec![int("k"), Field::new("key", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..keys.len() as i64)),
            Arc::new(StringArray::from_iter_values(keys.iter().copied())),
        ],
    )?;
    register_batches(session, "keys", vec![batch], schema, &[])
}

/// Each pod's value per signal and step (`k`, `m`, `r`, `n`, `value`): the largest sample in
/// the step (the mean for the throttled share), duplicate series of the pod counted once.
fn member_sql(plan: &Plan) -> String {
    let step = plan.step_ms;
    let roles = ROLES.map(literal).join(", ");
    let throttled = ROLES.iter().position(|r| *r == "cpu_throttled").expect("a role");
    format!(
        "SELECT a.k, a.m, a.r, b.n, max(CASE WHEN a.r = {throttled} THEN b.mean ELSE b.largest END) AS value \
         FROM (SELECT series_id, \
                      CAST(arrow_cast(date_bin(INTERVAL '{step} milliseconds', timestamp, TIMESTAMP '1970-01-01T00:00:00Z'), \
                           'Timestamp(Millisecond, Some(\"UTC\"))') AS BIGINT) / {step} AS n, \
                      max(value) AS largest, avg(value) AS mean \
               FROM samples WHERE role IN ({roles}) AND {FINITE} AND value >= 0 GROUP BY series_id, n) b \
         JOIN aligned a ON b.series_id = a.series_id GROUP BY a.k, a.m, a.r, b.n"
    )
}

/// The allocation rows from `member` (see the module's documentation).
fn signals_sql(plan: &Plan) -> String {
    let step = plan.step_ms;
    let combine = plan.group.aggregate.name();
    let r = |name: &str| ROLES.iter().position(|r| *r == name).expect("a role");
    let names = ROLES.iter().enumerate().map(|(i, n)| format!("WHEN {i} THEN {}", literal(n))).collect::<Vec<_>>();
    let (restarts, oom, throttled) = (r("restarts"), r("oom_killed"), r("cpu_throttled"));
    format!(
        "WITH restarts AS ( \
           SELECT k, m, n, CASE WHEN prev IS NULL THEN 0 WHEN value >= prev THEN value - prev ELSE value END AS value \
           FROM (SELECT k, m, n, value, lag(value) OVER (PARTITION BY k, m ORDER BY n) AS prev \
                 FROM member WHERE r = {restarts})), \
         kills AS ( \
           SELECT x.k, x.m, x.n, max(x.value) AS value FROM restarts x JOIN member o \
             ON o.k = x.k AND o.m = x.m AND o.r = {oom} AND o.value >= 1 AND (o.n = x.n OR o.n = x.n + 1) \
           WHERE x.value > 0 GROUP BY x.k, x.m, x.n), \
         lines AS (SELECT k, r, n, {combine}(value) AS value FROM member WHERE r < 4 GROUP BY k, r, n), \
         changed AS ( \
           SELECT k, r, n, value FROM ( \
             SELECT *, lag(value) OVER (PARTITION BY k, r ORDER BY n) AS was, lag(n) OVER (PARTITION BY k, r ORDER BY n) AS before \
             FROM lines) \
           WHERE was IS NULL OR value <> was OR n - before > 1), \
         signals AS ( \
           SELECT k, CASE r {names} END AS signal, n, value FROM changed \
           UNION ALL SELECT k, '{cpu_throttled}' AS signal, n, max(value) AS value FROM member WHERE r = {throttled} GROUP BY k, n \
           UNION ALL SELECT k, '{restarts_name}' AS signal, n, sum(value) AS value FROM restarts WHERE value > 0 GROUP BY k, n \
           UNION ALL SELECT k, '{oom_kills}' AS signal, n, sum(value) AS value FROM kills GROUP BY k, n) \
         SELECT keys.key, signal, n * {step} AS timestamp, value FROM signals JOIN keys ON signals.k = keys.k \
         ORDER BY signals.k, signal, n",
        names = names.join(" "),
        cpu_throttled = table::CPU_THROTTLED,
        restarts_name = table::RESTARTS,
        oom_kills = table::OOM_KILLS,
    )
}
