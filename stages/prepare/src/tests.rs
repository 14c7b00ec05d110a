//! Golden tests: small tables through each operation, values worked out by hand.

use std::sync::Arc;

use applearner_pipeline::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt64Array,
};
use applearner_pipeline::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Schema, TimeUnit, TimestampMillisecondType,
};
use datafusion::datasource::MemTable;

use crate::features::{self, FeaturesParams};
use crate::identity::SeriesLabels;
use crate::resample::{self, Cleaned, ResampleParams};
use applearner_contracts::summaries::CleanSummary;
use applearner_contracts::{Part, WindowSet};

const MIN: i64 = 60_000;

/// A sample: (role, pod, minute offset in ms, value). Container `app`, namespace `ns`.
type Row = (&'static str, &'static str, i64, f64);

/// A sample with any labels: (role, labels, ms, value).
type LabelledRow = (&'static str, Vec<(&'static str, &'static str)>, i64, f64);

fn pod_labels(pod: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![("namespace", "ns"), ("pod", pod), ("container", "app")]
}

/// The `samples` and `series` tables as ingest writes them (label columns, the `labels`
/// JSON of all labels, one `series` row per series with its span and count).
fn labelled_samples(rows: &[LabelledRow]) -> (RecordBatch, RecordBatch) {
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn params(yaml: &str) -> ResampleParams {
    serde_saphyr::from_str(yaml).unwrap()
}

fn clean(rows: &[Row], yaml: &str) -> Result<Cleaned, String> {
    clean_labelled(&rows.iter().map(|r| (r.0, pod_labels(r.1), r.2, r.3)).collect::<Vec<_>>(), yaml)
}

fn clean_labelled(rows: &[LabelledRow], yaml: &str) -> Result<Cleaned, String> {
    clean_scoped(rows, yaml, resample::Scope::default())
}

/// Cleans `rows` as one run of `scope` would (all series, or one shard's), the output rows
/// collected.
fn clean_scoped(rows: &[LabelledRow], yaml: &str, scope: resample::Scope) -> Result<Cleaned, String> {
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
fn rows_of(c: &Cleaned, role: &str) -> Vec<(String, u32, i64, f64, bool)> {
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
fn series(
    role: &'static str,
    pod: &'static str,
    minutes: impl IntoIterator<Item = i64>,
    f: impl Fn(i64) -> f64,
) -> Vec<Row> {
    minutes.into_iter().map(|m| (role, pod, m * MIN, f(m))).collect()
}

const CPU_ONLY: &str = "step: 1m\nroles: [cpu]\nmin_points: 1\ndrop_constant: false\ndrop_zero: false\n";

#[test]
fn resampling_aggregates_each_step() {
    // Two samples per minute: at :00 and :30, values m and m + 10.
    let mut rows = Vec::new();
    for m in 0..4 {
        rows.push(("cpu", "p", m * MIN + 30_000, m as f64 + 10.0));
        rows.push(("cpu", "p", m * MIN, m as f64));
    }
    let cases = [
        ("mean", [5.0, 6.0, 7.0, 8.0]),
        ("max", [10.0, 11.0, 12.0, 13.0]),
        ("min", [0.0, 1.0, 2.0, 3.0]),
        ("last", [10.0, 11.0, 12.0, 13.0]),
        ("sum", [10.0, 12.0, 14.0, 16.0]),
        ("p90", [9.0, 10.0, 11.0, 12.0]),
    ];
    for (agg, expected) in cases {
        let c = clean(&rows, &format!("{CPU_ONLY}aggregate: {agg}\n")).unwrap();
        let got: Vec<f64> = rows_of(&c, "cpu").iter().map(|r| r.3).collect();
        assert_eq!(got, expected, "{agg}");
        assert_eq!(rows_of(&c, "cpu").iter().map(|r| r.2).collect::<Vec<_>>(), [0, 1, 2, 3], "aligned to the grid");
    }
    // A 5-minute grid puts minutes 0-4 in one bin.
    let c = clean(&series("cpu", "p", 0..10, |m| m as f64), "step: 5m\nroles: [cpu]\nmin_points: 1\n").unwrap();
    assert_eq!(rows_of(&c, "cpu").iter().map(|r| (r.2, r.3)).collect::<Vec<_>>(), [(0, 2.0), (5, 7.0)]);
}

#[test]
fn short_gaps_are_filled_and_long_ones_split() {
    // Minutes 0-4, then 7-9 (2 missing: filled), then 20-22 (10 missing: split).
    let minutes: Vec<i64> = (0..5).chain(7..10).chain(20..23).collect();
    let rows = series("cpu", "p", minutes, |m| m as f64 * 2.0);
    let c = clean(&rows, &format!("{CPU_ONLY}max_gap: 3m\n")).unwrap();
    let got = rows_of(&c, "cpu");
    let filled: Vec<_> = got.iter().filter(|r| r.4).map(|r| (r.2, r.3)).collect();
    assert_eq!(filled, [(5, 10.0), (6, 12.0)], "linear between 8 and 14");
    assert_eq!(got.iter().filter(|r| r.1 == 0).count(), 10);
    assert_eq!(got.iter().filter(|r| r.1 == 1).map(|r| r.2).collect::<Vec<_>>(), [20, 21, 22]);
    assert_eq!(c.counts.filled_points, 2);
    assert_eq!(c.counts.segments, 2);

    let ffill = clean(&rows, &format!("{CPU_ONLY}max_gap: 3m\nfill: ffill\n")).unwrap();
    assert_eq!(rows_of(&ffill, "cpu").iter().filter(|r| r.4).map(|r| r.3).collect::<Vec<_>>(), [8.0, 8.0]);
    let zero = clean(&rows, &format!("{CPU_ONLY}max_gap: 3m\nfill: zero\n")).unwrap();
    assert_eq!(rows_of(&zero, "cpu").iter().filter(|r| r.4).map(|r| r.3).collect::<Vec<_>>(), [0.0, 0.0]);
    // A gap one step longer than max_gap is not filled.
    let tight = clean(&rows, &format!("{CPU_ONLY}max_gap: 1m\n")).unwrap();
    assert_eq!(tight.counts.filled_points, 0);
    assert_eq!(tight.counts.segments, 3);
}

#[test]
fn filters_trim_and_drop_what_cannot_be_learned() {
    let mut rows = series("cpu", "long", 0..20, |m| (m % 3) as f64);
    rows.extend(series("cpu", "long", 40..45, |m| m as f64)); // a 5-point segment
    rows.extend(series("cpu", "flat", 0..20, |_| 0.25));
    rows.extend(series("cpu", "idle", 0..20, |_| 0.0));
    let c = clean(&rows, "step: 1m\nroles: [cpu]\nmin_points: 10\ntrim: 2\n").unwrap();
    let got = rows_of(&c, "cpu");
    assert!(got.iter().all(|r| r.0 == "ns/long/app"), "only the varying series is left");
    assert_eq!(got.first().unwrap().2, 2, "two points trimmed from the start");
    assert_eq!(got.last().unwrap().2, 17, "and from the end");
    assert_eq!(got.len(), 16);
    let k = &c.counts;
    assert_eq!((k.segments, k.short_segments_dropped, k.zero_series_dropped, k.constant_series_dropped), (4, 1, 1, 1));
    assert_eq!(k.trimmed_points, 4 * 4);
    assert_eq!((k.series, k.output_segments, k.points), (1, 1, 16));

    let kept =
        clean(&rows, "step: 1m\nroles: [cpu]\nmin_points: 10\ndrop_constant: false\ndrop_zero: false\n").unwrap();
    assert_eq!(kept.counts.series, 3);
}

#[test]
fn pods_group_into_workloads() {
    // Two replicas of one Deployment, then a new ReplicaSet's pod after a rollout.
    let mut rows = series("cpu", "web-5f55b6cf68-77cfw", 0..5, |_| 1.0);
    rows.extend(series("cpu", "web-5f55b6cf68-jpzbd", 2..5, |m| m as f64));
    rows.extend(series("cpu", "web-84cbf6c798-qmx8k", 5..8, |_| 3.0));
    rows.extend(series("cpu", "db-0", 0..8, |m| m as f64));
    let sum = clean(&rows, &format!("{CPU_ONLY}group: {{by: workload, aggregate: sum}}\n")).unwrap();
    let web: Vec<_> = rows_of(&sum, "cpu").into_iter().filter(|r| r.0 == "ns/web/app").map(|r| r.3).collect();
    assert_eq!(web, [1.0, 1.0, 3.0, 4.0, 5.0, 3.0, 3.0, 3.0]);
    assert_eq!(sum.counts.series, 2);
    assert_eq!(sum.counts.input_series, 4);
    assert!(rows_of(&sum, "cpu").iter().any(|r| r.0 == "ns/db/app"));
    assert_eq!(sum.schema.metadata()["applearner.replicas"], "sum");
    let max = clean(&rows, &format!("{CPU_ONLY}group: {{by: workload, aggregate: max}}\n")).unwrap();
    let web: Vec<_> = rows_of(&max, "cpu").into_iter().filter(|r| r.0 == "ns/web/app").map(|r| r.3).collect();
    assert_eq!(web, [1.0, 1.0, 2.0, 3.0, 4.0, 3.0, 3.0, 3.0]);
    let per_pod = clean(&rows, CPU_ONLY).unwrap();
    assert_eq!(per_pod.counts.series, 4);
    let by_labels = clean(&rows, &format!("{CPU_ONLY}group: {{by: labels, labels: [namespace]}}\n")).unwrap();
    assert_eq!(by_labels.counts.series, 1);
}

/// Each row's `replicas`: per key, the pods present at each step.
fn replicas_of(c: &Cleaned, key: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for b in &c.batches {
        let keys = b.column_by_name("key").unwrap().as_string::<i32>();
        let n =
            b.column_by_name("replicas").unwrap().as_primitive::<applearner_pipeline::arrow::datatypes::UInt32Type>();
        out.extend((0..b.num_rows()).filter(|&i| keys.value(i) == key).map(|i| n.value(i)));
    }
    out
}

/// Regression: the quickstart grouped pods with `aggregate: sum`, the default, so a
/// Deployment with 3 overlapping replicas got the whole workload's usage as each pod's
/// request. By default a step now holds one pod's size (the busiest replica), and the
/// replicas present are counted beside it.
#[test]
fn replicas_are_not_summed_into_one_pods_request() {
    let mut rows = Vec::new();
    for (pod, level) in [("api-7d9f8c6b5d-x7k2p", 1.0), ("api-7d9f8c6b5d-b9f4z", 2.0), ("api-7d9f8c6b5d-q2w8n", 3.0)] {
        rows.extend(series("cpu", pod, (0..6).filter(|&m| m != 3 || level == 1.0), move |m| level + 0.1 * m as f64));
    }
    // The third replica scaled away after minute 4; minute 3 of two replicas is missing.
    rows.retain(|r| !(r.1 == "api-7d9f8c6b5d-q2w8n" && r.2 > 4 * MIN));
    let c = clean(&rows, &format!("{CPU_ONLY}group: {{by: workload}}\n")).unwrap();
    let api: Vec<f64> = rows_of(&c, "cpu").into_iter().filter(|r| r.0 == "ns/api/app").map(|r| r.3).collect();
    // Never the sum (6.0 at minute 0): the busiest pod's usage.
    assert_eq!(api, [3.0, 3.1, 3.2, 1.3, 3.4, 2.5]);
    assert_eq!(replicas_of(&c, "ns/api/app"), [3, 3, 3, 1, 3, 2]);
    assert_eq!(c.schema.metadata()["applearner.replicas"], "max");
}

/// Regression: `clean.resample` keyed series by namespace/pod/container only, so node
/// series told apart by `instance` (or VMs by `machine_id`) were summed into one series
/// keyed `""` without a word.
#[test]
fn distinct_series_are_never_silently_merged() {
    let node = |instance: &'static str| vec![("instance", instance), ("job", "node")];
    let mut rows: Vec<LabelledRow> = Vec::new();
    for m in 0..5 {
        rows.push(("cpu", node("node-a:9100"), m * MIN, 1.0 + m as f64));
        rows.push(("cpu", node("node-b:9100"), m * MIN, 10.0 + m as f64));
        rows.push(("cpu", vec![("machine_id", "m1")], m * MIN, 100.0 + m as f64));
        rows.push(("cpu", pod_labels("web-5f55b6cf68-77cfw"), m * MIN, 2.0 + m as f64));
        rows.push(("cpu", pod_labels("web-5f55b6cf68-jpzbd"), m * MIN, 3.0 + m as f64));
    }
    let rows_by_key = |c: &Cleaned| {
        let mut keys: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for r in rows_of(c, "cpu") {
            keys.entry(r.0).or_default().push(r.3);
        }
        keys
    };
    let series = clean_labelled(&rows, CPU_ONLY).unwrap();
    let keys = rows_by_key(&series);
    // The nodes and the machine share no namespace/pod/container: every label that differs
    // among them (instance, job, machine_id) names them, each with the labels it has.
    assert_eq!(keys["instance=node-a:9100/job=node"], [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(keys["instance=node-b:9100/job=node"], [10.0, 11.0, 12.0, 13.0, 14.0]);
    assert_eq!(keys["machine_id=m1"], [100.0, 101.0, 102.0, 103.0, 104.0]);
    assert_eq!(keys.len(), 5, "{:?}", keys.keys());
    assert_eq!(series.counts.series, 5);
    // Grouping into workloads joins the two web pods (one pod's size: the busiest), and only them.
    let workloads = rows_by_key(&clean_labelled(&rows, &format!("{CPU_ONLY}group: {{by: workload}}\n")).unwrap());
    assert_eq!(workloads["ns/web/app"], [3.0, 4.0, 5.0, 6.0, 7.0]);
    assert_eq!(workloads["instance=node-a:9100/job=node"], [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(workloads.len(), 4, "{:?}", workloads.keys());
    // Any label can group, including those kept only in the `labels` JSON column.
    let by_job = clean_labelled(&rows, &format!("{CPU_ONLY}group: {{by: labels, labels: [job]}}\n")).unwrap();
    // (the two nodes of job `node` together: the busier at each step).
    assert_eq!(rows_by_key(&by_job)["node"], [10.0, 11.0, 12.0, 13.0, 14.0]);
    assert!(by_job.warnings.iter().any(|w| w.contains("3 series have no `job` label")), "{:?}", by_job.warnings);
    let err = clean_labelled(&rows, &format!("{CPU_ONLY}group: {{by: labels, labels: [rack]}}\n")).unwrap_err();
    assert!(err.contains("no input series has the label `rack`"), "{err}");
}

#[test]
fn roles_align_on_the_grid() {
    let mut rows = series("cpu", "a", 0..10, |m| m as f64);
    rows.extend(series("memory", "a", 3..12, |m| 100.0 * m as f64));
    rows.extend(series("cpu", "lonely", 0..10, |m| m as f64));
    let c = clean(&rows, "step: 1m\nmin_points: 1\n").unwrap();
    let cpu = rows_of(&c, "cpu");
    let memory = rows_of(&c, "memory");
    assert_eq!(cpu.iter().map(|r| r.2).collect::<Vec<_>>(), (3..10).collect::<Vec<_>>(), "rows with both roles");
    assert_eq!(memory.iter().map(|r| r.3).collect::<Vec<_>>(), (3..10).map(|m| 100.0 * m as f64).collect::<Vec<_>>());
    assert_eq!(c.counts.series_without_all_roles, 1);
    assert_eq!(c.counts.series, 1);
}

#[test]
fn bad_values_are_dropped_and_counted() {
    let mut rows = series("cpu", "p", 0..10, |m| m as f64);
    rows[2].3 = f64::NAN;
    rows[3].3 = f64::INFINITY;
    rows[4].3 = -1.0;
    let c = clean(&rows, &format!("{CPU_ONLY}fill: zero\n")).unwrap();
    assert_eq!((c.counts.non_finite_dropped, c.counts.negative_dropped), (2, 1));
    assert_eq!(rows_of(&c, "cpu").iter().filter(|r| r.4).map(|r| r.2).collect::<Vec<_>>(), [2, 3, 4]);
}

#[test]
fn bad_input_is_refused_clearly() {
    let err = clean(&[], CPU_ONLY).unwrap_err();
    assert!(err.contains("no samples of role cpu"), "{err}");
    let nan = series("cpu", "p", 0..5, |_| f64::NAN);
    let err = clean(&nan, CPU_ONLY).unwrap_err();
    assert!(err.contains("all 5 samples of role cpu are NaN or infinite"), "{err}");
    // One point is a segment too short to keep.
    let err = clean(&series("cpu", "p", 0..1, |_| 1.0), "step: 1m\nroles: [cpu]\nmin_points: 2\n").unwrap_err();
    assert!(
        err.contains("nothing is left after cleaning") && err.contains("1 segments were shorter than min_points = 2"),
        "{err}"
    );
    let err = clean(&series("cpu", "p", 0..5, |m| m as f64), "step: 1m\naggregate: median\n").unwrap_err();
    assert!(err.contains("unknown aggregation `median`"), "{err}");
    // A step finer than the data warns (and still works).
    let coarse = series("cpu", "p", (0..10).map(|m| m * 5), |m| m as f64);
    let c = clean(&coarse, "step: 1m\nroles: [cpu]\nmin_points: 1\nmax_gap: 10m\n").unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("finer than the data's resolution (about 300 s")), "{:?}", c.warnings);
}

fn build_features(cleaned: &Cleaned, yaml: &str) -> Result<features::Built, String> {
    let p: FeaturesParams = serde_saphyr::from_str(yaml).unwrap();
    let cut = p.cut().map_err(|p| format!("{:?}", p.iter().map(|p| &p.message).collect::<Vec<_>>()))?;
    features::build(&cleaned.batches, &p, cut).map_err(|e| e.to_string())
}

fn two_series() -> Cleaned {
    let mut rows = series("cpu", "a", 0..100, |m| (m as f64 * 0.3).sin() + 2.0 + m as f64 / 50.0);
    rows.extend(series("cpu", "b", 0..60, |m| ((m * 7) % 11) as f64));
    clean(&rows, CPU_ONLY).unwrap()
}

fn column_f32(batches: &[RecordBatch], name: &str) -> Vec<f32> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.unwrap_or(f32::NAN))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn column_str(batches: &[RecordBatch], name: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn scaling_is_fitted_on_training_points_and_inverts() {
    let cleaned = two_series();
    for (scale, transform) in [("zscore", "none"), ("minmax", "log1p"), ("robust", "none")] {
        let f = build_features(
            &cleaned,
            &format!("scale: {scale}\ntransform: {transform}\ncalendar: []\nwindows: {{lookback: 5, horizon: 2}}\n"),
        )
        .unwrap();
        let raw = rows_of(&cleaned, "cpu");
        let scaled = column_f32(&f.features, "cpu");
        let splits = column_str(&f.features, "split");
        let keys = column_str(&f.features, "key");
        let scalers = &f.scalers;
        let center = scalers.column_by_name("center").unwrap().as_primitive::<Float64Type>();
        let spread = scalers.column_by_name("scale").unwrap().as_primitive::<Float64Type>();
        for (i, r) in raw.iter().enumerate() {
            let s = if keys[i] == "ns/a/app" { 0 } else { 1 };
            let mut back = scaled[i] as f64 * spread.value(s) + center.value(s);
            if transform == "log1p" {
                back = back.exp_m1();
            }
            assert!((back - r.3).abs() < 1e-4 * r.3.abs().max(1.0), "{scale}: {back} vs {}", r.3);
        }
        // The statistics are the training part's: z-scores of train points have mean 0.
        if scale == "zscore" {
            let train: Vec<f64> = scaled
                .iter()
                .zip(&splits)
                .zip(&keys)
                .filter(|((_, s), k)| *s == "train" && *k == "ns/a/app")
                .map(|((v, _), _)| *v as f64)
                .collect();
            let mean = train.iter().sum::<f64>() / train.len() as f64;
            assert!(mean.abs() < 1e-5, "{mean}");
            let all =
                scaled.iter().zip(&keys).filter(|(_, k)| *k == "ns/a/app").map(|(v, _)| *v as f64).sum::<f64>() / 100.0;
            assert!(all.abs() > 0.1, "the trend makes later points larger: fitted on all points would give 0");
        }
    }
}

#[test]
fn split_and_windows_never_look_ahead() {
    let cleaned = two_series();
    let f = build_features(&cleaned, "calendar: [hour]\nlags: [2]\nrolling: [3]\nsplit: {validation: 0.2, test: 0.2}\nwindows: {lookback: 6, horizon: 3, stride: 2}\n").unwrap();
    let splits = column_str(&f.features, "split");
    // Series a: 100 points → 60 train, 20 validation, 20 test; b: 60 → 36/12/12.
    let count = |key: &str, part: &str| {
        column_str(&f.features, "key").iter().zip(&splits).filter(|(k, s)| *k == key && *s == part).count()
    };
    assert_eq!((count("ns/a/app", "train"), count("ns/a/app", "validation"), count("ns/a/app", "test")), (60, 20, 20));
    assert_eq!((count("ns/b/app", "train"), count("ns/b/app", "validation"), count("ns/b/app", "test")), (36, 12, 12));
    // Lag 2 and a 3-step rolling mean are trailing.
    let cpu = column_f32(&f.features, "cpu");
    let lag = column_f32(&f.features, "cpu_lag2");
    let mean = column_f32(&f.features, "cpu_mean3");
    assert!(lag[0].is_nan() && lag[1].is_nan() && mean[1].is_nan());
    assert_eq!(lag[10], cpu[8]);
    assert!((mean[10] - (cpu[8] + cpu[9] + cpu[10]) / 3.0).abs() < 1e-5);

    let set =
        WindowSet::from_batches(&f.features, std::slice::from_ref(&f.windows), &[], &["cpu".to_string()]).unwrap();
    assert_eq!((set.lookback, set.horizon), (6, 3));
    assert_eq!(set.input_names(), ["cpu", "hour_sin", "hour_cos", "cpu_lag2", "cpu_mean3", "cpu_std3"]);
    for part in Part::ALL {
        let windows = set.part(part);
        assert!(!windows.is_empty(), "{part:?}");
        for w in windows {
            assert!(w.start >= 2 || (w.start >= 62 && w.start < 100) || w.start >= 102, "after the warm-up");
            let targets = &splits[w.start + 6..w.start + 9];
            assert!(targets.iter().all(|s| s == part.name()), "every target of a {part:?} window is in {part:?}");
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        set.batch(part, &[0, windows.len() - 1], &mut x, &mut y);
        assert_eq!((x.len(), y.len()), (2 * 6 * 6, 2 * 3));
        let last = &windows[windows.len() - 1];
        assert_eq!(y[3..], cpu[last.start + 6..last.start + 9]);
        assert_eq!(x[6 * 6..6 * 6 + 1], cpu[last.start..last.start + 1]);
    }
    // Series a's training targets run from row 8 (warm-up 2 + lookback 6) to 59, every 2nd.
    let train_a: Vec<usize> = set.part(Part::Train).iter().filter(|w| &*w.key == "ns/a/app").map(|w| w.start).collect();
    assert_eq!(train_a, (2..=51).step_by(2).collect::<Vec<_>>());
    assert_eq!(f.counts.per_part[0], set.part(Part::Train).len() as u64);
    // The table holds one row per run of windows (series, part); each window's origin is
    // the time of its last input row.
    assert_eq!(f.windows.num_rows(), 6);
    let times: Vec<i64> = f
        .features
        .iter()
        .flat_map(|b| {
            b.column_by_name("timestamp").unwrap().as_primitive::<TimestampMillisecondType>().values().to_vec()
        })
        .collect();
    assert!(set.part(Part::Test).iter().all(|w| w.origin_ms == times[w.start + 5]));
}

#[test]
fn an_empty_part_is_a_clear_error() {
    let cleaned = two_series();
    let err = build_features(&cleaned, "split: {validation: 0.05, test: 0.2}\nwindows: {lookback: 10, horizon: 8}\n")
        .unwrap_err();
    assert!(err.contains("the validation part has no windows: in all 2 series"), "{err}");
    assert!(err.contains("the longest validation part has 5 points"), "{err}");
    let err = build_features(&cleaned, "split: {validation: 0.5, test: 0.6}\n").unwrap_err();
    assert!(err.contains("leaves nothing to train on"), "{err}");
}

#[test]
fn season_features_hold_only_the_past_and_line_up_with_the_forecast_steps() {
    // Season 10, horizon 3: `cpu_season10` is the value 7 steps back, its mean the 3
    // values before that. Every value is a function of earlier rows only: changing a row
    // changes no season feature at or before it.
    let cleaned = two_series();
    let yaml =
        "calendar: []\nseason_lags: [10]\nsplit: {validation: 0.2, test: 0.2}\nwindows: {lookback: 4, horizon: 3}\n";
    let f = build_features(&cleaned, yaml).unwrap();
    let (cpu, season, mean) = (
        column_f32(&f.features, "cpu"),
        column_f32(&f.features, "cpu_season10"),
        column_f32(&f.features, "cpu_season10_mean"),
    );
    for t in 10..100 {
        assert_eq!(season[t], cpu[t - 7], "row {t}");
        assert!((mean[t] - (cpu[t - 9] + cpu[t - 8] + cpu[t - 7]) / 3.0).abs() < 1e-5, "row {t}");
    }
    assert!(mean[..9].iter().all(|v| v.is_nan()), "partial frames at the start are left null");
    // At an origin o, the window's last 3 rows carry the values a season before o+1..o+3.
    let set =
        WindowSet::from_batches(&f.features, std::slice::from_ref(&f.windows), &[], &["cpu".to_string()]).unwrap();
    let w = &set.part(Part::Test)[0];
    let origin = w.start + 3;
    for h in 1..=3 {
        assert_eq!(season[origin - 3 + h], cpu[origin + h - 10]);
    }
    // The warm-up is the season: no window reads a row before 9 of a segment.
    assert!(set.part(Part::Train).iter().all(|w| w.start >= 9 || w.start >= 100));
    // Targets in each series' first 9 + 4 rows have no full history: 13 dropped in each.
    assert_eq!(f.counts.short_history, [26, 0, 0]);

    // A changed future leaves every season feature of the past alone.
    let mut rows = series("cpu", "a", 0..100, |m| (m as f64 * 0.3).sin() + 2.0 + m as f64 / 50.0 + bump(m));
    rows.extend(series("cpu", "b", 0..60, |m| ((m * 7) % 11) as f64));
    let g = build_features(&clean(&rows, CPU_ONLY).unwrap(), yaml).unwrap();
    for name in ["cpu_season10", "cpu_season10_mean"] {
        let (before, after) = (column_f32(&f.features, name), column_f32(&g.features, name));
        let same = |a: &f32, b: &f32| a == b || (a.is_nan() && b.is_nan());
        assert!(before[..67].iter().zip(&after[..67]).all(|(a, b)| same(a, b)), "{name}");
        assert_ne!(before[67], after[67], "{name} reads row 60 seven steps later");
    }
}

/// A jump at minute 60 only.
fn bump(m: i64) -> f64 {
    if m == 60 { 100.0 } else { 0.0 }
}

#[test]
fn windows_longer_than_any_segment_are_refused_and_short_history_is_counted() {
    let cleaned = two_series();
    // Series a has 100 points: a lookback of 90 and a horizon of 20 fit nowhere.
    let err = build_features(&cleaned, "calendar: []\nwindows: {lookback: 90, horizon: 20}\n").unwrap_err();
    assert!(err.contains("the longest segment, of series `ns/a/app`, has 100 points"), "{err}");
    assert!(err.contains("Lower `windows.lookback` (90), `windows.horizon` (20)"), "{err}");
    let err =
        build_features(&cleaned, "calendar: []\nseason_lags: [120]\nwindows: {lookback: 4, horizon: 3}\n").unwrap_err();
    assert!(err.contains("Lower `season_lags/lags/rolling (warm-up)` (119)"), "{err}");
    let err = build_features(&cleaned, "season_lags: [3]\nwindows: {lookback: 4, horizon: 3}\n").unwrap_err();
    assert!(err.contains("not longer than the horizon (3 steps)"), "{err}");
    // A lookback longer than the training part: the validation and test windows whose
    // history would start before the segment are dropped and counted, not padded.
    let f = build_features(
        &cleaned,
        "calendar: []\nsplit: {validation: 0.2, test: 0.2}\nwindows: {lookback: 30, horizon: 3}\n",
    )
    .unwrap();
    // In each series the first 30 training targets have no 30 steps before them: 60 dropped.
    assert_eq!(f.counts.short_history, [60, 0, 0]);
}

/// (key, signal, minute, value) of every `allocation` row.
fn allocation_rows(c: &Cleaned) -> Vec<(String, String, i64, f64)> {
    let mut out = Vec::new();
    for b in &c.allocation {
        let (key, signal) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
        let ts = b.column(2).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        let v = b.column(3).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((key.value(i).to_string(), signal.value(i).to_string(), ts.value(i) / MIN, v.value(i)));
        }
    }
    out
}

/// Requests, limits, restarts, OOM kills and throttling of two pods of one Deployment land
/// on the workload's key, combined as its usage is; a duplicate scrape counts once; series
/// of a workload with no usage, or matching two keys, are counted and left out.
#[test]
fn allocation_aligns_to_the_workloads_and_counts_what_it_cannot_place() {
    let pod = |p: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("namespace", "ns"), ("pod", p), ("container", "app")];
        l.extend_from_slice(extra);
        l
    };
    let (a, b) = ("web-5f55b6cf68-77cfw", "web-5f55b6cf68-jpzbd");
    let mut rows: Vec<LabelledRow> = Vec::new();
    for m in 0..40 {
        let t = m * MIN;
        for p in [a, b] {
            rows.push(("cpu", pod(p, &[]), t, 0.1 + (m % 3) as f64 * 0.01));
            rows.push(("memory", pod(p, &[]), t, 1e8 + (m % 5) as f64));
            // Pod a's request rises from 0.2 to 0.3 at minute 20; b stays at 0.25.
            let request = if p == a && m >= 20 {
                0.3
            } else if p == a {
                0.2
            } else {
                0.25
            };
            rows.push(("cpu_request", pod(p, &[("resource", "cpu")]), t, request));
        }
        // A second kube-state-metrics replica scrapes pod a's request again.
        rows.push((
            "cpu_request",
            pod(a, &[("resource", "cpu"), ("instance", "ksm-2")]),
            t,
            if m >= 20 { 0.3 } else { 0.2 },
        ));
        // Pod b restarts at minutes 10 (OOM) and 30 (another reason); its counter resets at 35.
        let restarts = match m {
            0..10 => 0.0,
            10..30 => 1.0,
            30..35 => 2.0,
            _ => 1.0,
        };
        rows.push(("restarts", pod(b, &[]), t, restarts));
        rows.push(("oom_killed", pod(b, &[]), t, if (10..30).contains(&m) { 1.0 } else { 0.0 }));
        rows.push(("cpu_throttled", pod(a, &[]), t, if m < 20 { 0.5 } else { 0.0 }));
        // A workload without usage.
        rows.push(("memory_limit", pod("gone-0", &[("resource", "memory")]), t, 2e8));
    }
    let c = clean_labelled(&rows, "step: 1m\nmin_points: 1\ngroup: {by: workload}\n").unwrap();
    let all = allocation_rows(&c);
    assert!(all.iter().all(|r| r.0 == "ns/web/app"), "every row on the workload's key");
    let signal = |s: &str| all.iter().filter(|r| r.1 == s).map(|r| (r.2, r.3)).collect::<Vec<_>>();
    // One pod's request (the larger of the two), written where it changes: 0.25 from minute 0,
    // 0.3 from minute 20.
    assert_eq!(signal("cpu_request"), [(0, 0.25), (20, 0.3)]);
    assert_eq!(signal("restarts"), [(10, 1.0), (30, 1.0), (35, 1.0)]);
    assert_eq!(signal("oom_kills"), [(10, 1.0)]);
    let throttled = signal("cpu_throttled");
    assert_eq!((throttled[0], throttled[39]), ((0, 0.5), (39, 0.0)));
    assert_eq!((c.counts.allocation_series, c.counts.allocation_series_without_usage), (7, 1));
    assert_eq!(c.counts.allocation_points, all.len() as u64);

    // Two usage series of one container told apart by `node`: a request without `node`
    // could be either, and is left out.
    let two = [
        ("cpu", pod("p", &[("node", "n1")]), 0, 1.0),
        ("cpu", pod("p", &[("node", "n2")]), 0, 2.0),
        ("cpu_request", pod("p", &[("resource", "cpu")]), 0, 1.0),
        ("cpu_request", pod("p", &[("resource", "cpu"), ("node", "n2")]), 0, 1.0),
    ];
    let c = clean_labelled(&two, CPU_ONLY).unwrap();
    assert_eq!(c.counts.allocation_series_ambiguous, 1);
    assert_eq!(allocation_rows(&c).iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["ns/p/app/node=n2"]);
}

/// Six pods (one with a gap, one constant): cleaned whole, a few series at a time under a
/// small memory bound, and as three shards, the rows and the counts are the same.
#[test]
fn cleaning_in_groups_or_shards_gives_what_cleaning_whole_gives() {
    let pods = ["a", "b", "c", "d", "e", "f"];
    let mut rows: Vec<Row> = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let minutes = (0..60).filter(|m| i != 2 || !(20..30).contains(m));
        rows.extend(series("cpu", pod, minutes, |m| if i == 5 { 1.0 } else { ((m * (i as i64 + 3)) % 7) as f64 }));
    }
    let yaml = "step: 1m\nroles: [cpu]\nmin_points: 5\n";
    let whole = clean(&rows, yaml).unwrap();
    let rows: Vec<LabelledRow> = rows.iter().map(|r| (r.0, pod_labels(r.1), r.2, r.3)).collect();
    // 130 points: at most two 60-point pods at a time.
    let bounded = clean_labelled(&rows, &format!("{yaml}max_points_in_memory: 130\n")).unwrap();
    assert_eq!(rows_of(&bounded, "cpu"), rows_of(&whole, "cpu"));
    assert_eq!(bounded.counts, whole.counts);
    assert_eq!(whole.counts.constant_series_dropped, 1);

    let shard = |i: u64| move |key: &str| blake3::hash(key.as_bytes()).as_bytes()[0] as u64 % 3 == i;
    let (mut merged, mut counts) = (Vec::new(), serde_json::Map::new());
    for i in 0..3 {
        let keep = shard(i);
        let part = clean_scoped(&rows, yaml, resample::Scope { shard: Some(&keep) }).unwrap();
        merged.extend(rows_of(&part, "cpu"));
        for (k, v) in serde_json::to_value(&part.counts).unwrap().as_object().unwrap() {
            let sum = counts.get(k).and_then(|c: &serde_json::Value| c.as_u64()).unwrap_or(0) + v.as_u64().unwrap();
            counts.insert(k.clone(), sum.into());
        }
    }
    merged.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    assert_eq!(merged, rows_of(&whole, "cpu"));
    // Summed as the shard merge sums them; the series grouped count once per shard.
    assert_eq!(serde_json::Value::Object(counts), serde_json::to_value(&whole.counts).unwrap());

    // A shard with no series is empty and says so; a pod above the bound is named.
    let none = |_: &str| false;
    let empty = clean_scoped(&rows, yaml, resample::Scope { shard: Some(&none) }).unwrap();
    assert!(empty.batches.is_empty() && empty.warnings[0].contains("holds no series"), "{:?}", empty.warnings);
    let err = clean_labelled(&rows, &format!("{yaml}max_points_in_memory: 50\n")).unwrap_err();
    assert!(err.contains("series `ns/a/app` has 60 input points") && err.contains("raise it to at least 60"), "{err}");
}

/// Features are built a series at a time: one series above the bound is named with the size
/// it needs, and the bound changes nothing else.
#[test]
fn a_series_above_the_features_bound_is_named() {
    let mut rows: Vec<Row> = Vec::new();
    for (i, pod) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        rows.extend(series("cpu", pod, 0..80, |m| ((m * (i as i64 + 2)) % 9) as f64 + i as f64));
    }
    let cleaned = clean(&rows, CPU_ONLY).unwrap();
    let yaml = "calendar: []\nrolling: [3]\nwindows: {lookback: 6, horizon: 2}\n";
    let whole = build_features(&cleaned, yaml).unwrap();
    let bounded = build_features(&cleaned, &format!("{yaml}max_points_in_memory: 80\n")).unwrap();
    assert_eq!(bounded.features, whole.features);
    assert_eq!(bounded.windows, whole.windows);
    let err = build_features(&cleaned, &format!("{yaml}max_points_in_memory: 50\n")).unwrap_err();
    assert!(err.contains("series `ns/a/app` has 80 points") && err.contains("at least 80"), "{err}");
}

/// Features read `resampled` a series at a time: rows out of key order are refused with the
/// fix, never built into two half series.
#[test]
fn resampled_rows_out_of_order_are_refused() {
    let mut rows: Vec<Row> = series("cpu", "a", 0..80, |m| m as f64);
    rows.extend(series("cpu", "b", 0..80, |m| m as f64));
    let mut cleaned = clean(&rows, CPU_ONLY).unwrap();
    let whole = applearner_pipeline::arrow::compute::concat_batches(&cleaned.schema, &cleaned.batches).unwrap();
    let (a, b) = (whole.slice(0, 80), whole.slice(80, 80));
    cleaned.batches = vec![b.clone(), a, b];
    let err = build_features(&cleaned, "calendar: []\nwindows: {lookback: 6, horizon: 2}\n").unwrap_err();
    assert!(err.contains("not in key and time order at series `ns/a/app`") && err.contains("--force=clean"), "{err}");
}

/// A model input: a pod's network counter becomes bytes per second on its container's rows
/// (a reset counted, the value after it counted whole); a workload without it gets 0,
/// flagged filled and counted; one on a pod of two containers, or on a pod without usage,
/// is left out and counted; it never decides which rows exist.
#[test]
fn inputs_are_rates_on_the_usage_grid_and_what_cannot_be_placed_is_counted() {
    let labels = |pod: &'static str, container: Option<&'static str>| {
        let mut l = vec![("namespace", "ns"), ("pod", pod)];
        l.extend(container.map(|c| ("container", c)));
        l
    };
    let mut rows: Vec<LabelledRow> = Vec::new();
    for m in 0..6 {
        for (pod, container) in [("a", "app"), ("b", "app"), ("c", "app"), ("c", "side")] {
            rows.push(("cpu", labels(pod, Some(container)), m * MIN, 0.1 + 0.01 * (m % 2) as f64));
        }
    }
    // Pod a's counter: +600 bytes a minute, reset at minute 3 (to 100), then +600 again.
    for (m, bytes) in [(0, 0.0), (1, 600.0), (2, 1200.0), (3, 100.0), (4, 700.0)] {
        rows.push(("net", labels("a", None), m * MIN, bytes));
    }
    rows.push(("net", labels("c", None), 0, 5.0));
    rows.push(("net", labels("gone", None), 0, 5.0));
    let yaml = format!("{CPU_ONLY}inputs: {{net_rx: {{metric: net_metric, as: rate, fill: zero, unit: bytes}}}}\n");
    let c = clean_labelled(&rows, &yaml).unwrap();
    assert_eq!(c.schema.field_with_name("net_rx").unwrap().metadata()["unit"], "bytes/s");
    let of = |key: &str| -> Vec<(i64, f64, bool)> {
        rows_of(&c, "net_rx").into_iter().filter(|r| r.0 == key).map(|r| (r.2, r.3, r.4)).collect()
    };
    // Minute 0 has no earlier sample to make a rate from; minute 5 has no sample: 0, filled.
    assert_eq!(
        of("ns/a/app"),
        [
            (0, 0.0, true),
            (1, 10.0, false),
            (2, 10.0, false),
            (3, 100.0 / 60.0, false),
            (4, 10.0, false),
            (5, 0.0, true)
        ]
    );
    assert!(of("ns/b/app").iter().all(|r| r.1 == 0.0 && r.2), "b has no input: 0, flagged");
    // Every usage row is there, with or without the input.
    assert_eq!(rows_of(&c, "cpu").len(), 4 * 6);
    let counts = &c.counts;
    assert_eq!(counts.covariate_series, 3);
    assert_eq!((counts.covariate_series_ambiguous, counts.covariate_series_without_usage), (1, 1));
    assert_eq!(counts.covariate_counter_resets, 1);
    assert_eq!(counts.series_without_an_input, 3, "b and c's two containers");
    assert!(c.warnings.iter().any(|w| w.contains("match several usage series")), "{:?}", c.warnings);
    assert!(c.warnings.iter().any(|w| w.starts_with("3 series have no `net_rx` input")), "{:?}", c.warnings);
    // Shards count their own: the sums are the whole's.
    let mut summed = [0u64; 5];
    for i in 0..3 {
        let keep = move |key: &str| blake3::hash(key.as_bytes()).as_bytes()[0] as u64 % 3 == i;
        let part = clean_scoped(&rows, &yaml, resample::Scope { shard: Some(&keep) }).unwrap().counts;
        let each = [part.covariate_series, part.covariate_series_without_usage, part.covariate_series_ambiguous];
        let each = [each[0], each[1], each[2], part.covariate_counter_resets, part.series_without_an_input];
        summed.iter_mut().zip(each).for_each(|(s, e)| *s += e);
    }
    assert_eq!(summed, [3, 1, 1, 1, 3]);

    // A metric the data lacks: an error naming the input and the metrics it has.
    let yaml = format!("{CPU_ONLY}inputs: {{net_rx: {{metric: container_network_receive_bytes_total, as: rate}}}}\n");
    let error = clean_labelled(&rows, &yaml).unwrap_err();
    assert!(error.contains("`net_rx`") && error.contains("cpu_metric, net_metric"), "{error}");
    // Names that cannot be columns, and a metric feeding two inputs, are refused.
    let bad = format!("{CPU_ONLY}inputs: {{cpu: {{metric: a, as: value}}, x: {{metric: a, as: rate}}}}\n");
    let problems = params(&bad).plan().unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
}

/// The features table names the covariates and exactly the features derived from them, so
/// a model can leave them out: an input called `hour` is not mistaken for the calendar's
/// `hour_sin`, nor the usage's rolling mean for an input's. Without inputs, no metadata.
#[test]
fn the_features_name_the_covariates_and_their_features_exactly() {
    let mut rows = series("cpu", "a", 0..100, |m| (m as f64 * 0.3).sin() + 2.0);
    rows.extend(series("queue", "a", 0..100, |m| (m % 7) as f64));
    let cleaned = clean(&rows, &format!("{CPU_ONLY}inputs: {{hour: {{metric: queue_metric, as: value}}}}\n")).unwrap();
    let yaml =
        "calendar: [hour]\nrolling: [3]\nsplit: {validation: 0.2, test: 0.2}\nwindows: {lookback: 4, horizon: 2}\n";
    let built = build_features(&cleaned, yaml).unwrap();
    let metadata = built.features[0].schema().metadata().clone();
    assert_eq!(metadata["covariates"], "hour");
    assert_eq!(metadata["covariate_features"], "hour,hour_mean3,hour_std3");
    let plain = build_features(&two_series(), yaml).unwrap();
    assert!(plain.features[0].schema().metadata().is_empty());
}
