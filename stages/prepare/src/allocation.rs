//! The `allocation` table of clean.resample: what each series had allocated (requests and
//! limits) and what hurt it (OOM kills, restarts, CPU throttling), on the usage's grid and
//! keys, so that plans can be set beside what runs today.
//!
//! Each allocation series is aligned to the usage series it describes ([`identity::align`]);
//! one with no usage, or matching several keys, is counted and left out, never merged. Per
//! pod a step holds the last sample in it (the mean for the throttled share); duplicate
//! series of one pod (two kube-state-metrics replicas) count once; the pods of a workload
//! combine as the usage does (requests and limits `sum` or `max`, the busiest replica's
//! throttling, restarts and kills added up). A restart is an increase of the restart counter
//! (a lower value is a reset: all of it counts); it is an OOM kill when the last terminated
//! reason is `OOMKilled` at that step or the next.

use std::sync::Arc;

use applearner_contracts::tables::allocation as table;
use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{RecordBatch, StringArray, UInt64Array};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;

use crate::identity::{self, Aligned, Identity, SeriesLabels};
use crate::resample::{Combine, Counts, FINITE, Plan, read_series};
use crate::{collect, literal, register_batches};

/// The roles ingest gives allocation and pain series.
pub const ROLES: [&str; 7] =
    ["cpu_request", "cpu_limit", "memory_request", "memory_limit", "restarts", "oom_killed", "cpu_throttled"];

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

/// The allocation rows (sorted by key, signal, time) of the usage series `identities`.
pub async fn allocation(
    session: &SessionContext,
    plan: &Plan,
    identities: &[Identity],
    counts: &mut Counts,
) -> Result<Vec<RecordBatch>, BoxError> {
    let role_list = ROLES.map(literal).join(", ");
    let series = read_series(session, &role_list).await?;
    let aligned = identity::align(identities, &series, plan.group.by, &plan.group.labels);
    counts.allocation_series = series.len() as u64;
    counts.allocation_series_without_usage = aligned.iter().filter(|a| **a == Aligned::NoUsage).count() as u64;
    counts.allocation_series_ambiguous = aligned.iter().filter(|a| **a == Aligned::Ambiguous).count() as u64;
    let kept: Vec<(&SeriesLabels, String)> = series
        .iter()
        .zip(aligned)
        .filter_map(|(s, a)| match a {
            Aligned::Key(key) => Some((s, key)),
            _ => None,
        })
        .collect();
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    register_aligned(session, &kept)?;
    let batches = collect(crate::sql_in_order(session, &signals_sql(plan)).await?).await?;
    counts.allocation_points = batches.iter().map(|b| b.num_rows() as u64).sum();
    let schema = schema();
    batches.iter().map(|b| crate::conform(b, &schema)).collect()
}

/// The table `aligned`: series id, role, the key it belongs to and its pod (`member`).
fn register_aligned(session: &SessionContext, kept: &[(&SeriesLabels, String)]) -> Result<(), BoxError> {
    let text = |f: &dyn Fn(&(&SeriesLabels, String)) -> String| {
        Arc::new(StringArray::from_iter_values(kept.iter().map(f))) as _
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("member", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from_iter_values(kept.iter().map(|(s, _)| s.series_id))),
            text(&|(s, _)| s.role.clone()),
            text(&|(_, k)| k.clone()),
            text(&|(s, _)| s.labels.get("pod").cloned().unwrap_or_default()),
        ],
    )?;
    register_batches(session, "aligned", vec![batch], schema, &[])
}

/// The query of the allocation rows (see the module's documentation).
fn signals_sql(plan: &Plan) -> String {
    let step = plan.step_ms;
    let combine = match plan.group.aggregate {
        Combine::Sum => "sum",
        Combine::Max => "max",
    };
    let lines = ROLES[..4].iter().map(|r| literal(r)).collect::<Vec<_>>().join(", ");
    format!(
        "WITH binned AS ( \
           SELECT a.key, a.member, a.role, \
                  CAST(arrow_cast(date_bin(INTERVAL '{step} milliseconds', s.timestamp, TIMESTAMP '1970-01-01T00:00:00Z'), \
                       'Timestamp(Millisecond, Some(\"UTC\"))') AS BIGINT) / {step} AS n, \
                  last_value(s.value ORDER BY s.timestamp) AS last, avg(s.value) AS mean \
           FROM samples s JOIN aligned a ON s.series_id = a.series_id \
           WHERE {FINITE} AND s.value >= 0 GROUP BY a.key, a.member, a.role, n), \
         member AS ( \
           SELECT key, member, role, n, max(CASE WHEN role = 'cpu_throttled' THEN mean ELSE last END) AS value \
           FROM binned GROUP BY key, member, role, n), \
         restarts AS ( \
           SELECT key, member, n, CASE WHEN prev IS NULL THEN 0 WHEN value >= prev THEN value - prev ELSE value END AS value \
           FROM (SELECT key, member, n, value, lag(value) OVER (PARTITION BY key, member ORDER BY n) AS prev \
                 FROM member WHERE role = 'restarts')), \
         kills AS ( \
           SELECT r.key, r.member, r.n, max(r.value) AS value FROM restarts r JOIN member o \
             ON o.key = r.key AND o.member = r.member AND o.role = 'oom_killed' AND o.value >= 1 \
                AND (o.n = r.n OR o.n = r.n + 1) \
           WHERE r.value > 0 GROUP BY r.key, r.member, r.n), \
         signals AS ( \
           SELECT key, role AS signal, n, {combine}(value) AS value FROM member WHERE role IN ({lines}) GROUP BY key, role, n \
           UNION ALL SELECT key, '{throttled}' AS signal, n, max(value) AS value FROM member WHERE role = 'cpu_throttled' GROUP BY key, n \
           UNION ALL SELECT key, '{restarts}' AS signal, n, sum(value) AS value FROM restarts WHERE value > 0 GROUP BY key, n \
           UNION ALL SELECT key, '{oom}' AS signal, n, sum(value) AS value FROM kills GROUP BY key, n) \
         SELECT key, signal, n * {step} AS timestamp, value FROM signals ORDER BY key, signal, timestamp",
        throttled = table::CPU_THROTTLED,
        restarts = table::RESTARTS,
        oom = table::OOM_KILLS,
    )
}
