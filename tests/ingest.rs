//! `ingest.prometheus` on the real data in `data/`, in every format, and on bad input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use applearner_pipeline::arrow::array::{Array, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::DataType;
use applearner_pipeline::context::read_parquet;
use applearner_pipeline::{PipelineError, RunOptions, RunReport, Store};

use crate::support::{pipeline, run_with};

pub fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nezha-k8s").join(path)
}

/// Runs a one-stage ingest pipeline with `with` as its parameters (YAML flow mapping).
pub fn ingest(store: &Store, with: &str) -> Result<RunReport, PipelineError> {
    let yaml = format!("name: ingest\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with: {with}\n");
    run_with(&pipeline(&yaml, &[]), store, RunOptions::default())
}

pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    (dir, store)
}

/// One sample of the samples table.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: String,
    pub role: String,
    pub pod: String,
    pub labels: String,
    pub timestamp: i64,
    pub value: f64,
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = cast(batch.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
    let column = column.as_any().downcast_ref::<StringArray>().unwrap();
    (0..column.len()).map(|i| if column.is_null(i) { String::new() } else { column.value(i).to_string() }).collect()
}

pub fn samples(store: &Store, report: &RunReport) -> Vec<Sample> {
    let path = &report.record("ingest").unwrap().outputs["samples"].path;
    let mut out = Vec::new();
    for b in read_parquet(path, store.get(path).unwrap()).unwrap() {
        let (metric, role, pod, labels) =
            (strings(&b, "metric"), strings(&b, "role"), strings(&b, "pod"), strings(&b, "labels"));
        let ts = b.column_by_name("timestamp").unwrap().as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        let values = b.column_by_name("value").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push(Sample {
                metric: metric[i].clone(),
                role: role[i].clone(),
                pod: pod[i].clone(),
                labels: labels[i].clone(),
                timestamp: ts.value(i),
                value: values.value(i),
            });
        }
    }
    out
}

/// Ingests the saved query_range answers: (role, pod, timestamp) → value.
fn answer_values(store: &Store) -> HashMap<(String, String, i64), f64> {
    let answers = ingest(store, &format!("{{paths: ['{}']}}", data("query_range").display())).unwrap();
    samples(store, &answers).into_iter().map(|r| ((r.role, r.pod, r.timestamp), r.value)).collect()
}

fn summary(report: &RunReport) -> &serde_json::Map<String, serde_json::Value> {
    &report.record("ingest").unwrap().summary
}

#[test]
fn query_range_answers_golden_counts_and_values() {
    let (_dir, store) = temp_store();
    let report = ingest(&store, &format!("{{paths: ['{}']}}", data("query_range").display())).unwrap();
    let s = summary(&report);
    // data/README.md: 103 series and 94,451 points per metric, in 8 answer files.
    assert_eq!(s["files"], 8);
    assert_eq!(s["series"], 206);
    assert_eq!(s["points"], 188_902);
    assert_eq!(s["duplicate_timestamps_dropped"], 0);
    let rows = samples(&store, &report);
    // Sorted by (metric, series id, timestamp).
    assert!(rows.windows(2).all(|w| w[0].metric <= w[1].metric));
    let same_series = |w: &&[Sample]| w[0].metric == w[1].metric && w[0].pod == w[1].pod;
    assert!(rows.windows(2).filter(same_series).all(|w| w[0].timestamp < w[1].timestamp));
    // Exact values from the saved answers.
    let find = |pod: &str, role: &str, t: i64| {
        rows.iter().find(|r| r.pod == pod && r.role == role && r.timestamp == t).map(|r| r.value)
    };
    assert_eq!(find("adservice-5f6585d649-fnmft", "cpu", 1_661_256_000_000), Some(0.00093728634));
    assert_eq!(find("adservice-5f6585d649-fnmft", "cpu", 1_661_256_060_000), Some(0.00112834161));
    assert_eq!(find("cartservice-579f59597d-wc2lz", "memory", 1_661_140_320_000), Some(35_033_088.0));
    let r = rows.iter().find(|r| r.pod == "adservice-5f6585d649-fnmft").unwrap();
    assert_eq!(r.labels, "{}");
    assert_eq!(r.metric, "container_memory_working_set_bytes");
}

#[test]
fn legacy_dumps_hold_the_same_samples_as_the_answers() {
    let (_dir, store) = temp_store();
    let by_key = answer_values(&store);
    let legacy = ingest(&store, &format!("{{paths: ['{}']}}", data("legacy").display())).unwrap();
    let s = summary(&legacy);
    // data/README.md: 103 keys, 111 segments, 94,451 values per file.
    assert_eq!(s["series"], 206);
    assert_eq!(s["points"], 188_902);
    assert_eq!(s["warnings"], serde_json::json!([]));
    let legacy_rows = samples(&store, &legacy);
    assert_eq!(legacy_rows.len(), 188_902);
    for r in &legacy_rows {
        let expected = by_key[&(r.role.clone(), r.pod.clone(), r.timestamp)];
        assert_eq!(r.value, expected, "{r:?}");
    }
    assert!(legacy_rows.iter().any(|r| r.metric == "container_cpu"));
}

#[test]
fn the_promtool_dump_matches_the_answers_at_each_step() {
    let (_dir, store) = temp_store();
    let by_key = answer_values(&store);
    let dump = ingest(&store, &format!("{{paths: ['{}']}}", data("promtool-dump.txt.gz").display())).unwrap();
    let s = summary(&dump);
    assert_eq!(s["series"], 6);
    assert_eq!(s["points"], 7_180);
    let rows = samples(&store, &dump);
    assert_eq!(rows[0].timestamp % 1000, 0);
    assert!(rows.iter().any(|r| r.timestamp == 1_661_140_279_000 && r.value == 35_033_088.0));
    // Each raw sample is what the query_range answer shows at the next minute (lookback 1m).
    for r in &rows {
        let step = (r.timestamp + 59_999) / 60_000 * 60_000;
        assert_eq!(by_key[&(r.role.clone(), r.pod.clone(), step)], r.value, "{r:?}");
    }
}

#[test]
#[ignore = "full tier: needs pyarrow and DuckDB; .ci/run installs it and runs it"]
fn pyarrow_and_duckdb_read_the_tables() {
    let (_dir, store) = temp_store();
    let report = ingest(&store, &format!("{{paths: ['{}']}}", data("query_range").display())).unwrap();
    let rows = samples(&store, &report);
    let sum: f64 = rows.iter().map(|r| r.value).sum();
    let root = store.url().to_string();
    let samples_path = format!("{root}/{}", report.record("ingest").unwrap().outputs["samples"].path);
    let series_path = format!("{root}/{}", report.record("ingest").unwrap().outputs["series"].path);
    let script = r#"
import json, sys
import duckdb, pyarrow.parquet as pq
samples, series = sys.argv[1], sys.argv[2]
table = pq.read_table(samples)
meta = pq.ParquetFile(samples).metadata
column = meta.row_group(0).column(table.schema.get_field_index("timestamp"))
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
count, distinct, total, first = con.execute(
    f"select count(*), count(distinct series_id), sum(value), min(timestamp)::varchar from read_parquet('{samples}')").fetchone()
joined = con.execute(
    f"select count(*) from read_parquet('{samples}') s join read_parquet('{series}') r using (series_id)").fetchone()[0]
print(json.dumps({
    "rows": table.num_rows, "timestamp_type": str(table.schema.field("timestamp").type),
    "compression": column.compression, "has_stats": column.statistics.has_min_max,
    "duckdb_rows": count, "distinct": distinct, "sum": total, "first": first, "joined": joined}))
"#;
    let out = Command::new("python3").args(["-c", script, &samples_path, &series_path]).output().unwrap();
    assert!(
        out.status.success(),
        "python3 with pyarrow and duckdb is needed (`pip install pyarrow duckdb`, as .ci/run does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["rows"], 188_902);
    assert_eq!(got["duckdb_rows"], 188_902);
    assert_eq!(got["joined"], 188_902);
    assert_eq!(got["distinct"], 206);
    assert_eq!(got["timestamp_type"], "timestamp[ms, tz=UTC]");
    assert_eq!(got["compression"], "ZSTD");
    assert_eq!(got["has_stats"], true);
    assert!(got["first"].as_str().unwrap().starts_with("2022-08-22 03:52:00"), "{got}");
    let duck_sum = got["sum"].as_f64().unwrap();
    assert!((duck_sum - sum).abs() <= sum.abs() * 1e-12, "{duck_sum} vs {sum}");
}

/// A failed ingest names what is wrong and commits nothing.
fn refused(files: &[(&str, &[u8])], expected: &[&str]) {
    let (dir, store) = temp_store();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    for (name, bytes) in files {
        std::fs::write(input.join(name), bytes).unwrap();
    }
    let err = ingest(&store, &format!("{{paths: ['{}']}}", input.display())).unwrap_err().to_string();
    for e in expected {
        assert!(err.contains(e), "`{e}` not in: {err}");
    }
    let committed: Vec<String> = store.list("").unwrap().into_iter().filter(|p| p.contains("/ingest/")).collect();
    assert!(committed.is_empty(), "a failed ingest committed {committed:?}");
}

#[test]
fn bad_input_is_refused_with_the_file_and_the_reason() {
    let real = std::fs::read(data("query_range/cpu_cores/20220823T120000Z_20220824T000000Z.json.gz")).unwrap();
    refused(&[("cpu.json.gz", &real[..real.len() / 2])], &["cpu.json.gz", "gzip stream is damaged or truncated"]);
    refused(
        &[("page.json", b"<html><body>502 Bad Gateway</body></html>")],
        &["page.json", "not a Prometheus API answer", "502 Bad Gateway"],
    );
    refused(
        &[("a.json", b"{\"status\":\"success\",\n\"data\":{\"resultType\":\"matrix\",\"result\":[{]}}")],
        &["a.json: line 2, column"],
    );
    refused(
        &[("e.json", br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#)],
        &["e.json: Prometheus answered `timeout`: query timed out"],
    );
    refused(
        &[("s.json", br#"{"status":"success","data":{"resultType":"string","result":[]}}"#)],
        &["s.json: unsupported resultType `string`"],
    );
    refused(&[("d.txt", b"m{pod=\"a\"} 1\n")], &["d.txt:1: a sample has no timestamp"]);
    refused(
        &[(
            "container_cpu.json",
            br#"{"web, shop, n1, web-1": [{"start": "2022-13-01 00:00:00", "stop": "x", "data": [1]}]}"#,
        )],
        &["container_cpu.json", "time `2022-13-01 00:00:00`"],
    );
}

#[test]
fn repairs_and_oddities_are_counted_not_hidden() {
    let (dir, store) = temp_store();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    // Out of order, a duplicate timestamp (the first read wins), NaN/Inf, odd label values.
    std::fs::write(
        input.join("a.txt"),
        "m{pod=\"p\",odd=\"a \\\"b\\\", {c}\"} 3 3000\nm{pod=\"p\",odd=\"a \\\"b\\\", {c}\"} 1 1000\nm{pod=\"p\",odd=\"a \\\"b\\\", {c}\"} 9 3000\nm{pod=\"p\",odd=\"a \\\"b\\\", {c}\"} NaN 2000\nm{pod=\"p\",odd=\"a \\\"b\\\", {c}\"} -Inf 4000\n",
    )
    .unwrap();
    std::fs::write(
        input.join("container_mem.json"),
        br#"{"web, shop, n1, web-1": [{"start": "2022-08-23 12:00:00", "stop": "2022-08-23 12:05:00", "data": [1.0, 2.0]}]}"#,
    )
    .unwrap();
    let report = ingest(&store, &format!("{{paths: ['{}']}}", input.display())).unwrap();
    let s = summary(&report);
    assert_eq!(s["duplicate_timestamps_dropped"], 1);
    assert_eq!(s["out_of_order_samples_sorted"], 2);
    let warnings = s["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].as_str().unwrap().contains("should stop 2022-08-23 12:01:00, but says 2022-08-23 12:05:00"));
    let rows: Vec<Sample> = samples(&store, &report).into_iter().filter(|r| r.metric == "m").collect();
    let ts: Vec<i64> = rows.iter().map(|r| r.timestamp).collect();
    assert_eq!(ts, [1000, 2000, 3000, 4000]);
    assert_eq!(rows[2].value, 3.0);
    assert!(rows[1].value.is_nan());
    assert_eq!(rows[3].value, f64::NEG_INFINITY);
    assert_eq!(rows[0].labels, r#"{"odd":"a \"b\", {c}"}"#);
}
