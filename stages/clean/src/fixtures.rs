//! Small tables for tests, here and in the features stage's: samples as ingest writes them,
//! cleaned as the stage cleans them.

use std::sync::Arc;

use applearner_contracts::summaries::CleanSummary;
use applearner_pipeline::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt64Array,
};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit};
use datafusion::datasource::MemTable;

use crate::identity::SeriesLabels;
use crate::resample::{self, Cleaned, ResampleParams};

pub const MIN: i64 = 60_000;

/// A sample: (role, pod, minute offset in ms, value). Container `app`, namespace `ns`.
pub type Row = (&'static str, &'static str, i64, f64);

/// A sample with any labels: (role, labels, ms, value).
pub type LabelledRow = (&'static str, Vec<(&'static str, &'static str)>, i64, f64);

pub fn pod_labels(pod: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![("namespace", "ns"), ("pod", pod), ("container", "app")]
}

/// The `samples` and `series` tables as ingest writes them (label columns, the `labels`
/// JSON of all labels, one `series` row per series with its span and count).
pub fn labelled_samples(rows: &[LabelledRow]) -> (RecordBatch, RecordBatch) {
    let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let names = ["namespace", "pod", "container", "instance"];
    let label_fields = names.map(|n| Field::new(n, DataType::Utf8, true));
    let label = |r: &LabelledRow, name: &str| r.1.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let json = |r: &LabelledRow| {
        serde_json::to_string(&r.1.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()).unwrap()
    };
    let id = |r: &LabelledRow| blake3::hash(format!("{}{}", r.0, json(r)).as_bytes()).as_bytes()[0] as u64;
    let mut fields = vec![Field::new("role", DataType::Utf8, false), Field::new("series_id", DataType::UInt64, false)];
    fields.extend(label_fields.clone());
    fields.extend([Field::new("timestamp", ts(), false), Field::new("value", DataType::Float64, false)]);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(id))),
    ];
    columns.extend(names.map(|n| Arc::new(rows.iter().map(|r| label(r, n)).collect::<StringArray>()) as ArrayRef));
    columns.extend([
        Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.2)).with_timezone("UTC"))
            as ArrayRef,
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
    ]);
    let samples = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let mut series: std::collections::BTreeMap<u64, (&LabelledRow, i64, i64, u64)> = Default::default();
    for r in rows {
        let e = series.entry(id(r)).or_insert((r, i64::MAX, i64::MIN, 0));
        (e.1, e.2, e.3) = (e.1.min(r.2), e.2.max(r.2), e.3 + 1);
    }
    let series: Vec<_> = series.into_values().collect();
    let mut fields = vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
    ];
    fields.extend(label_fields);
    fields.extend([
        Field::new("labels", DataType::Utf8, false),
        Field::new("first_timestamp", ts(), false),
        Field::new("last_timestamp", ts(), false),
        Field::new("points", DataType::UInt64, false),
    ]);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(series.iter().map(|s| id(s.0)))),
        Arc::new(StringArray::from_iter_values(series.iter().map(|s| format!("{}_metric", s.0.0)))),
        Arc::new(StringArray::from_iter_values(series.iter().map(|s| s.0.0))),
    ];
    columns.extend(names.map(|n| Arc::new(series.iter().map(|s| label(s.0, n)).collect::<StringArray>()) as ArrayRef));
    columns.extend([
        Arc::new(StringArray::from_iter_values(series.iter().map(|s| json(s.0)))) as ArrayRef,
        Arc::new(TimestampMillisecondArray::from_iter_values(series.iter().map(|s| s.1)).with_timezone("UTC")),
        Arc::new(TimestampMillisecondArray::from_iter_values(series.iter().map(|s| s.2)).with_timezone("UTC")),
        Arc::new(UInt64Array::from_iter_values(series.iter().map(|s| s.3))),
    ]);
    let table = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    (samples, table)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

pub fn params(yaml: &str) -> ResampleParams {
    serde_saphyr::from_str(yaml).unwrap()
}

pub fn clean(rows: &[Row], yaml: &str) -> Result<Cleaned, String> {
    clean_labelled(&rows.iter().map(|r| (r.0, pod_labels(r.1), r.2, r.3)).collect::<Vec<_>>(), yaml)
}

pub fn clean_labelled(rows: &[LabelledRow], yaml: &str) -> Result<Cleaned, String> {
    clean_scoped(rows, yaml, resample::Scope::default())
}

/// Cleans `rows` as one run of `scope` would (all series, or one shard's), the output rows
/// collected.
pub fn clean_scoped(rows: &[LabelledRow], yaml: &str, scope: resample::Scope) -> Result<Cleaned, String> {
    let plan = params(yaml).plan().map_err(|p| format!("{:?}", p.iter().map(|p| &p.message).collect::<Vec<_>>()))?;
    let (samples, series) = labelled_samples(rows);
    // The allocation rows come from a query over the samples, as in the stage.
    let mut allocate = |kept: &[(&SeriesLabels, String)], counts: &mut CleanSummary| {
        runtime().block_on(async {
            let session = crate::session(None);
            let table = MemTable::try_new(samples.schema(), vec![vec![samples.clone()]]).unwrap();
            session.register_table("samples", Arc::new(table)).unwrap();
            crate::allocation::rows(&session, &plan, kept, counts).await
        })
    };
    let mut batches = Vec::new();
    let mut input = std::iter::once(Ok(samples.clone()));
    let input = resample::Input { series: &[series], samples: &mut input };
    let mut cleaned = resample::clean_into(input, &plan, &|| Ok(()), scope, &mut allocate, &mut |b| {
        batches.push(b);
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    cleaned.batches = batches;
    Ok(cleaned)
}

/// (key, segment, minute, value of the first role, filled) of every output row.
pub fn rows_of(c: &Cleaned, role: &str) -> Vec<(String, u32, i64, f64, bool)> {
    let mut out = Vec::new();
    for b in &c.batches {
        let key = b.column_by_name("key").unwrap().as_string::<i32>();
        let seg =
            b.column_by_name("segment").unwrap().as_primitive::<applearner_pipeline::arrow::datatypes::UInt32Type>();
        let ts = b.column_by_name("timestamp").unwrap().as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        let v = b.column_by_name(role).unwrap().as_primitive::<Float64Type>();
        let f = b.column_by_name(&format!("{role}_filled")).unwrap().as_any().downcast_ref::<BooleanArray>().unwrap();
        for i in 0..b.num_rows() {
            out.push((key.value(i).to_string(), seg.value(i), ts.value(i) / MIN, v.value(i), f.value(i)));
        }
    }
    out
}

/// `n` minutes of a cpu series with values `f(minute)`, one sample at the start of each minute.
pub fn series(
    role: &'static str,
    pod: &'static str,
    minutes: impl IntoIterator<Item = i64>,
    f: impl Fn(i64) -> f64,
) -> Vec<Row> {
    minutes.into_iter().map(|m| (role, pod, m * MIN, f(m))).collect()
}

pub const CPU_ONLY: &str = "step: 1m\nroles: [cpu]\nmin_points: 1\ndrop_constant: false\ndrop_zero: false\n";
