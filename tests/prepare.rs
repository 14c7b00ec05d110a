//! `clean.resample` and `features.build` on the real data in `data/`, checked against an
//! independent computation in DuckDB, and their configuration errors.

use std::process::Command;

use applearner_pipeline::{RunOptions, RunReport, Selection, Store};

use crate::ingest::temp_store;
use crate::support::{pipeline, problems, run_with};

/// The quickstart's config with the data path made absolute.
fn quickstart_yaml() -> String {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/quickstart.yaml")).unwrap();
    yaml.replace("data: data/nezha-k8s", &format!("data: {}/data/nezha-k8s", env!("CARGO_MANIFEST_DIR")))
}

/// The quickstart up to its features (what this file checks).
fn quickstart(store: &Store) -> RunReport {
    let yaml = quickstart_yaml();
    let options = RunOptions { selection: Selection::Until("features".into()), ..Default::default() };
    run_with(&pipeline(&yaml, &[]), store, options).unwrap()
}

fn path(store: &Store, report: &RunReport, stage: &str, output: &str) -> String {
    format!("{}/{}", store.url(), report.record(stage).unwrap().outputs[output].path)
}

#[test]
#[ignore = "full tier: needs pyarrow and DuckDB; .ci/run installs it and runs it"]
fn the_quickstart_cleans_and_builds_features_from_the_real_data() {
    let (_dir, store) = temp_store();
    let report = quickstart(&store);
    let clean = &report.record("clean").unwrap().summary;
    // data/README.md: 103 pods, 94,451 points per metric, 111 runs of consecutive minutes
    // (one per pod and collection session); three TrainTicket services are 0 throughout.
    assert_eq!(clean["input_series"], 206);
    assert_eq!(clean["input_points"], 2 * 94_451);
    assert_eq!(clean["grouped_series"], 56, "103 pods of 56 Deployments");
    assert_eq!(clean["segments"], 111);
    assert_eq!(clean["filled_points"], 0);
    assert_eq!(clean["trimmed_points"], 222, "one point from each end of each segment");
    assert_eq!(clean["zero_series_dropped"], 3);
    assert_eq!(clean["series"], 53);
    assert_eq!(clean["points"], 89_261);
    let features = &report.record("features").unwrap().summary;
    assert_eq!(features["points"], 89_261);
    assert_eq!(
        features["features"],
        serde_json::json!([
            "cpu",
            "memory",
            "hour_sin",
            "hour_cos",
            "weekday_sin",
            "weekday_cos",
            "cpu_mean10",
            "cpu_std10",
            "memory_mean10",
            "memory_std10"
        ])
    );
    for part in ["train", "validation", "test"] {
        assert!(features[&format!("{part}_windows")].as_u64().unwrap() > 5_000, "{part}: {features:?}");
        assert_eq!(features[&format!("series_without_{part}_windows")], 0);
    }

    // The same counts, computed independently by DuckDB from the ingested samples, and the
    // invariants of the written tables checked by DuckDB.
    let script = r#"
import json, sys
import duckdb
import pyarrow.parquet as pq
samples, resampled, features, windows, scalers = sys.argv[1:6]
con = duckdb.connect()
stride = int(pq.read_schema(windows).metadata[b"applearner.stride"])
# Pods lose their ReplicaSet and pod hashes; islands are runs of consecutive minutes.
con.execute(f"""create view grid as
  select namespace, regexp_replace(pod, '-[a-z0-9]{{6,10}}-[a-z0-9]{{5}}$', '') as workload, container,
         epoch_ms(timestamp) // 60000 as minute, role, sum(value) as value
  from read_parquet('{samples}') group by all""")
con.execute("""create view wide as
  select namespace, workload, container, minute,
         max(value) filter (where role = 'cpu') as cpu, max(value) filter (where role = 'memory') as memory
  from grid group by all having count(*) = 2""")
islands, workloads, zero = con.execute("""
  with i as (select *, minute - row_number() over (partition by namespace, workload, container order by minute) as island from wide)
  select (select count(*) from (select distinct namespace, workload, container, island from i)),
         (select count(*) from (select distinct namespace, workload, container from i)),
         (select count(*) from (select namespace, workload, container from wide group by all
                                having max(cpu) = 0 or max(memory) = 0))""").fetchone()
gaps, off_grid, dup = con.execute(f"""
  with r as (select key, segment, epoch_ms(timestamp) as t,
                    epoch_ms(timestamp) - lag(epoch_ms(timestamp)) over (partition by key, segment order by timestamp) as d
             from read_parquet('{resampled}'))
  select count(*) filter (where d <> 60000), count(*) filter (where t % 60000 <> 0),
         count(*) - count(distinct (key, t)) from r""").fetchone()
# Every window's targets lie in its part, and all its rows in its run's series and segment.
crossing, foreign = con.execute(f"""
  with f as (select file_row_number as row, key, segment, split from read_parquet('{features}', file_row_number = true)),
       runs as (select split, key, segment, start, unnest(range(windows::bigint)) as i from read_parquet('{windows}')),
       each as (select split, key, segment, start + i * {stride} as start from runs),
       w as (select split, key, segment, start, unnest(range(start::bigint, start::bigint + 40)) as row from each)
  select count(*) filter (where f.split <> w.split and f.row >= w.start + 30),
         count(*) filter (where f.key <> w.key or f.segment <> w.segment)
  from w join f using (row)""").fetchone()
# One row per run of windows: its origin is its first window's, and its windows sum to the summary's.
origins, total = con.execute(f"""
  with f as (select file_row_number as row, timestamp from read_parquet('{features}', file_row_number = true))
  select count(*) filter (where w.origin <> f.timestamp), sum(windows)
  from read_parquet('{windows}') as w join f on f.row = w.start + 29""").fetchone()
# Scalers are fitted on training points only: z-scores of training points have mean 0 per series.
train_mean = con.execute(f"""
  select max(abs(m)) from (select key, avg(cpu) as m from read_parquet('{features}') where split = 'train' group by key)""").fetchone()[0]
print(json.dumps({"islands": islands, "workloads": workloads, "zero": zero, "gaps": gaps, "off_grid": off_grid,
                  "duplicates": dup, "crossing": crossing, "foreign": foreign, "train_mean": train_mean,
                  "origins": origins, "windows": total}))
"#;
    let args = [
        path(&store, &report, "ingest", "samples"),
        path(&store, &report, "clean", "resampled"),
        path(&store, &report, "features", "features"),
        path(&store, &report, "features", "windows"),
        path(&store, &report, "features", "scalers"),
    ];
    let out = Command::new("python3").arg("-c").arg(script).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "python3 with pyarrow and duckdb is needed (`pip install pyarrow duckdb`, as .ci/run does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["islands"], clean["segments"]);
    assert_eq!(got["workloads"], clean["grouped_series"]);
    assert_eq!(got["zero"], clean["zero_series_dropped"]);
    assert_eq!((&got["gaps"], &got["off_grid"], &got["duplicates"]), (&0.into(), &0.into(), &0.into()));
    assert_eq!((&got["crossing"], &got["foreign"], &got["origins"]), (&0.into(), &0.into(), &0.into()));
    let windows: u64 =
        ["train", "validation", "test"].iter().map(|p| features[&format!("{p}_windows")].as_u64().unwrap()).sum();
    assert_eq!(got["windows"].as_u64(), Some(windows));
    assert!(got["train_mean"].as_f64().unwrap() < 1e-4, "{got}");
}

#[test]
fn resample_and_features_configs_are_checked_before_running() {
    let yaml = "name: t
stages:
  ingest:
    uses: ingest.prometheus
    with: {paths: [data]}
  clean:
    uses: clean.resample
    with:
      step: 5 parsecs
      aggregate: median
      group: {by: labels}
  features:
    uses: features.build
    with:
      split: {validation: 0.5, test: 0.5}
      windows: {lookback: 0}
";
    let text = problems(yaml, &[]);
    // A value that is not a duration fails the stage's parameters where it stands; the
    // other stages' problems are still all reported.
    assert!(text.contains("test.yaml:9:13") && text.contains("`5 parsecs` is not a duration"), "{text}");
    assert!(text.contains("leaves nothing to train on"), "{text}");
    // With a valid step, every problem of the stage's values is reported together.
    let text = problems(&yaml.replace("step: 5 parsecs", "step: 5m"), &[]);
    assert!(
        text.contains("test.yaml:10:18")
            && text.contains("unknown aggregation `median`")
            && text.contains("mean, max, min, last, sum, or a percentile such as p50, p90, p95, p99"),
        "{text}"
    );
    assert!(text.contains("`by: labels` needs the labels to group by"), "{text}");
    assert!(text.contains("test.yaml:16:27") && text.contains("must be at least 1"), "{text}");
}

/// Only the value columns modelled are read; one the input lacks is named beside every
/// column it has.
#[test]
fn a_value_column_the_input_lacks_is_named_beside_those_it_has() {
    let yaml = quickstart_yaml();
    let options = RunOptions { selection: Selection::Until("features".into()), ..Default::default() };
    let (_dir, store) = temp_store();
    let error = run_with(&pipeline(&yaml, &["features.columns=[gpu]"]), &store, options).unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("no column `gpu`") && text.contains("cpu, cpu_filled, memory, memory_filled"), "{text}");
}

/// `stage` of the quickstart run whole and in 64 shards (more than its 53 workloads): the
/// merged tables equal the whole run's, bit for bit, and at least 11 empty shards say so.
/// Returns both stage summaries.
fn whole_and_in_64_shards(stage: &str, tables: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let yaml = quickstart_yaml();
    let options = || RunOptions { selection: Selection::Until(stage.into()), ..Default::default() };
    let ((_a, whole), (_b, sharded)) = (temp_store(), temp_store());
    let whole = run_with(&pipeline(&yaml, &[]), &whole, options()).unwrap();
    let sharded = run_with(&pipeline(&yaml, &[&format!("{stage}.shards=64")]), &sharded, options()).unwrap();
    let (a, b) = (whole.record(stage).unwrap(), sharded.record(stage).unwrap());
    for table in tables {
        assert_eq!(a.outputs[*table].digest, b.outputs[*table].digest, "{table}");
    }
    let warnings = b.summary["warnings"].as_array().unwrap();
    let empty = warnings.iter().filter(|w| w.as_str().unwrap().contains("holds no series")).count();
    assert!(empty >= 11, "64 shards of 53 workloads: at least 11 empty, said so: {warnings:?}");
    assert_eq!(b.summary["shards"].as_u64(), Some(64));
    (serde_json::to_value(&a.summary).unwrap(), serde_json::to_value(&b.summary).unwrap())
}

#[test]
fn more_clean_shards_than_workloads_merge_to_the_unsharded_tables() {
    let (a, b) = whole_and_in_64_shards("clean", &["resampled", "allocation", "workloads", "quotas"]);
    assert_eq!(a["series"], b["series"]);
}

/// Features shards' windows name rows of their own features tables; merged, they name the
/// merged table's rows, so the windows table too is the unsharded one.
#[test]
fn more_features_shards_than_series_merge_to_the_unsharded_tables() {
    let (a, b) = whole_and_in_64_shards("features", &["features", "windows", "scalers"]);
    for key in ["series", "points", "train_windows", "test_windows", "features"] {
        assert_eq!(a[key], b[key], "{key}");
    }
}
