//! Hourly refreshes against a live Prometheus whose data grows (Debian's `prometheus` and
//! `promtool`, installed by `.ci/run`). The first day of the shipped Bitbrains slice is
//! backfilled and a model trained on it; then, hour by hour through the second day, the next
//! hour's samples are added as promtool blocks and the refresh runs through the CLI with the
//! live source's `end` at that hour. No refresh trains, and the plans they leave equal one
//! replay of the same period. One VM sends nothing for an hour: its values hold and the plan
//! names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::prometheus::{
    CPU, MEMORY, SLICE_START, answer_series, backfill, family, free_port, http_body, start, wait_ready,
};
use crate::support::applearner;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// The VM that sends nothing over one hour of the refreshed day, and that hour's end.
const GAP_POD: &str = "vm-0018";
const GAP_KEY: &str = "bitbrains-rnd/vm-0018/vm";
const GAP_END: i64 = SLICE_START + DAY + 10 * HOUR;

/// The slice's usage with timestamps in (from, to] as OpenMetrics, less the gap.
fn usage_between(from: i64, to: i64) -> String {
    let mut out = String::new();
    for (folder, metric) in [("cpu_cores", CPU), ("memory_bytes", MEMORY)] {
        let mut series = answer_series(folder);
        for (labels, points) in &mut series {
            let gap = labels.iter().any(|(k, v)| k == "pod" && v == GAP_POD);
            points.retain(|(t, _)| *t > from && *t <= to && !(gap && *t > GAP_END - HOUR && *t <= GAP_END));
        }
        family(&mut out, metric, &series);
    }
    out.push_str("# EOF\n");
    out
}

/// Waits until the server answers `series` series of each metric at `time`: a restarted
/// Prometheus may answer ready before it serves the blocks just added.
fn wait_served(port: u16, time: i64, series: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for metric in [CPU, MEMORY] {
        let path = format!("/api/v1/query?query=count%28{metric}%29&time={time}");
        let count = || -> Option<usize> {
            let answer: serde_json::Value = serde_json::from_str(&http_body(port, &path)?).ok()?;
            answer["data"]["result"][0]["value"][1].as_str()?.parse().ok()
        };
        while count() != Some(series) {
            assert!(Instant::now() < deadline, "{metric} at {}: not {series} series", rfc3339(time));
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A time of the slice (July 2013, from its first day) in RFC 3339.
fn rfc3339(seconds: i64) -> String {
    let (day, s) = ((seconds - SLICE_START).div_euclid(DAY), (seconds - SLICE_START).rem_euclid(DAY));
    format!("2013-07-{:02}T{:02}:{:02}:{:02}Z", 8 + day, s / HOUR, s % HOUR / 60, s % 60)
}

/// The refresh config: the live source from the slice's start to `${end}`, a small LSTM used
/// as published, and the plan's loop kept in the store.
fn config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("refresh.yaml");
    let yaml = format!(
        "name: live-refresh
seed: 7
variables:
  end: '{end}'
  model: {model}
stages:
  ingest:
    uses: ingest.prometheus
    with:
      prometheus:
        url: http://127.0.0.1:{port}
        queries: {{'{CPU}': '{CPU}', {MEMORY}: {MEMORY}}}
        start: '{start}'
        end: ${{end}}
        step: 5m
  clean:
    uses: clean.resample
    with: {{step: 5m, max_gap: 15m, fill: ffill, min_points: 12}}
  features:
    uses: features.build
    with:
      scale: zscore
      rolling: [12]
      split: {{validation_from: '2013-07-08T14:00:00Z', test_from: '2013-07-08T19:00:00Z'}}
      windows: {{lookback: 12, horizon: 12, stride: 1}}
  train:
    uses: train.fit
    with:
      targets: [cpu, memory]
      model: {{kind: lstm, hidden: 8, layers: 1}}
      loss: {{kind: quantile, quantiles: [0.5, 0.9, 0.99]}}
      train: {{epochs: 2, lr: 0.01, max_train_windows: 2000}}
      device: cpu
      use_model: ${{model}}
  evaluate:
    uses: evaluate.backtest
    with: {{season: 1h, moving_average: 1h}}
  plan:
    uses: plan.resources
    with:
      cpu: {{min: 1m, step: 1m}}
      memory: {{min: 16Mi, step: 1Mi}}
      state: live
",
        end = rfc3339(SLICE_START + DAY),
        model = dir.join("model").display(),
        start = rfc3339(SLICE_START),
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs the config into `store` up to `end` (seconds), with more `--set`s; returns the
/// run's manifest.
fn run(config: &Path, store: &Path, end: i64, sets: &[&str]) -> serde_json::Value {
    let mut args = vec!["-q".to_string(), "run".into(), config.display().to_string()];
    let store_set = format!("store={}", store.display());
    let end_set = format!("variables.end={}", rfc3339(end));
    for s in [store_set.as_str(), end_set.as_str()].into_iter().chain(sets.iter().copied()) {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    let runs = || -> BTreeSet<PathBuf> {
        let Ok(dir) = std::fs::read_dir(store) else { return BTreeSet::new() };
        dir.map(|e| e.unwrap().path()).filter(|p| p.join("manifest.json").exists()).collect()
    };
    let before = runs();
    let out = applearner(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "refresh at {}: {}", rfc3339(end), String::from_utf8_lossy(&out.stderr));
    // The run this made (run ids name the second, so two runs of one second sort either way).
    let made: Vec<PathBuf> = runs().difference(&before).cloned().collect();
    assert_eq!(made.len(), 1, "one new run");
    serde_json::from_slice(&std::fs::read(made[0].join("manifest.json")).unwrap()).unwrap()
}

fn summary<'a>(manifest: &'a serde_json::Value, stage: &str) -> &'a serde_json::Value {
    let stages = manifest["stages"].as_array().unwrap();
    &stages.iter().find(|s| s["stage"] == stage).unwrap()["summary"]
}

/// The rows of a Parquet file in the store, as Arrow batches.
fn table(store: &Path, path: &str) -> Vec<applearner_pipeline::arrow::record_batch::RecordBatch> {
    let bytes = std::fs::read(store.join(path)).unwrap();
    applearner_pipeline::context::read_parquet(path, bytes.into()).unwrap()
}

/// The newest state table of the store.
fn latest_state(store: &Path) -> Vec<applearner_pipeline::arrow::record_batch::RecordBatch> {
    let mut files: Vec<String> = std::fs::read_dir(store.join("state/live"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    table(store, &format!("state/live/{}", files.last().unwrap()))
}

/// Where the plan stage of the run wrote `output`.
fn plan_path(manifest: &serde_json::Value, output: &str) -> String {
    let stages = manifest["stages"].as_array().unwrap();
    let plan = stages.iter().find(|s| s["stage"] == "plan").unwrap();
    plan["outputs"][output]["path"].as_str().unwrap().to_string()
}

/// (line, workload, day) → steps replayed and steps above the line.
type Risk = BTreeMap<(String, String, String), (i64, i64)>;

/// Adds the run's `plan_risk` rows to `risk`.
fn add_risk(risk: &mut Risk, store: &Path, manifest: &serde_json::Value) {
    use applearner_pipeline::arrow::array::AsArray;
    use applearner_pipeline::arrow::compute::cast;
    use applearner_pipeline::arrow::datatypes::{DataType, Int64Type};
    for b in table(store, &plan_path(manifest, "plan_risk")) {
        let text = |c: &str| cast(b.column_by_name(c).unwrap(), &DataType::Utf8).unwrap();
        let count = |c: &str| cast(b.column_by_name(c).unwrap(), &DataType::Int64).unwrap();
        let (line, key, day, steps, above) = (text("line"), text("key"), text("day"), count("steps"), count("above"));
        for i in 0..b.num_rows() {
            let at = |a: &applearner_pipeline::arrow::array::ArrayRef| a.as_string::<i32>().value(i).to_string();
            let n = |a: &applearner_pipeline::arrow::array::ArrayRef| a.as_primitive::<Int64Type>().value(i);
            let e = risk.entry((at(&line), at(&key), at(&day))).or_default();
            *e = (e.0 + n(&steps), e.1 + n(&above));
        }
    }
}

#[test]
#[ignore = "full tier: needs Prometheus and promtool; .ci/run installs them and runs it"]
fn hourly_refreshes_on_growing_live_data_equal_one_replay() {
    let work = tempfile::tempdir().unwrap();
    let (loop_store, replay_store) = (work.path().join("loop"), work.path().join("replay"));
    let port = free_port();
    let config = config(work.path(), port);
    let tsdb = tempfile::tempdir().unwrap();
    backfill(&usage_between(SLICE_START - 1, SLICE_START + DAY), tsdb.path());
    let mut server = start(tsdb, port, None, "1m");
    wait_ready(port);

    // The weekly run: train on the first day, publish the model, start the loop's state.
    let trained = run(&config, &loop_store, SLICE_START + DAY, &["train.use_model=null", "train.publish=${model}"]);
    assert!(summary(&trained, "train")["epochs_run"].as_u64().unwrap() > 0);

    let mut risk = Risk::new();
    add_risk(&mut risk, &loop_store, &trained);
    let mut last = trained;
    for hour in 1..=24 {
        let end = SLICE_START + DAY + hour * HOUR;
        let dir = server.stop();
        backfill(&usage_between(end - HOUR, end), dir.path());
        server = start(dir, port, None, "1m");
        wait_ready(port);
        wait_served(port, end, if end == GAP_END { 3 } else { 4 });
        last = run(&config, &loop_store, end, &[]);
        add_risk(&mut risk, &loop_store, &last);
        assert_eq!(summary(&last, "train")["epochs_run"], 0, "the refresh at {} trained", rfc3339(end));
        // The VM that sent nothing is named from the hour it missed until its series is long
        // enough again for a forecast (a lookback and the rolling mean's warm-up); no other.
        let behind = &summary(&last, "plan")["workloads_without_recent_data"];
        let named: Vec<&str> = behind.as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        let expected: &[&str] = if (GAP_END..GAP_END + 3 * HOUR).contains(&end) { &[GAP_KEY] } else { &[] };
        if end <= GAP_END || end == SLICE_START + 2 * DAY {
            assert_eq!(named, expected, "at {}", rfc3339(end));
        }
        assert!(named.iter().all(|k| *k == GAP_KEY), "at {}: {named:?}", rfc3339(end));
    }

    // One replay of the whole period in a fresh store: the same state and plan.
    // Its risk per workload, line and day is what the training run's loop and the
    // refreshes' ran at, added up.
    let replay = run(&config, &replay_store, SLICE_START + 2 * DAY, &[]);
    let state = latest_state(&loop_store);
    assert_eq!(state.iter().map(|b| b.num_rows()).sum::<usize>(), 4 * 3, "4 VMs × 3 lines");
    assert_eq!(state, latest_state(&replay_store));
    assert_eq!(table(&loop_store, &plan_path(&last, "plan")), table(&replay_store, &plan_path(&replay, "plan")));
    let mut replayed = Risk::new();
    add_risk(&mut replayed, &replay_store, &replay);
    assert_eq!(risk, replayed);
    assert!(risk.values().map(|r| r.0).sum::<i64>() > 3 * 4 * 24 * 12, "a day of 5-minute steps per VM and line");
    let states = std::fs::read_dir(loop_store.join("state/live")).unwrap().count();
    assert_eq!(states, 25, "the training run's state and one a refresh");

    // No new data: nothing changes, and the plan says so.
    let again = run(&config, &loop_store, SLICE_START + 2 * DAY, &[]);
    let said = summary(&again, "plan")["state"].as_str().unwrap().to_string();
    assert!(said.starts_with("unchanged"), "{said}");
    assert_eq!(std::fs::read_dir(loop_store.join("state/live")).unwrap().count(), 25);
    drop(server);
}
