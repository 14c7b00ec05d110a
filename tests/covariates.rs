//! Covariates end to end: Bitbrains' disk and network throughput, saved as cAdvisor counters
//! (data/bitbrains-rnd), backfilled into a real Prometheus, pulled with the default live
//! queries, and followed through clean.resample's `inputs:` to the features table.

use applearner_pipeline::columns::{floats, ints, strings};
use applearner_pipeline::{RunReport, Store};

use crate::ingest::temp_store;
use crate::prometheus::{BITBRAINS, SLICE_END, SLICE_START, answer_series, bitbrains, family, raw_openmetrics};

/// (saved folder, counter, input name).
const COVARIATES: [(&str, &str, &str); 4] = [
    ("disk_read_bytes", "container_fs_reads_bytes_total", "disk_read"),
    ("disk_write_bytes", "container_fs_writes_bytes_total", "disk_write"),
    ("network_receive_bytes", "container_network_receive_bytes_total", "net_rx"),
    ("network_transmit_bytes", "container_network_transmit_bytes_total", "net_tx"),
];

/// ingest (`ingest`, a YAML flow mapping) → clean with the four inputs → unscaled features.
fn run(store: &Store, ingest: &str) -> RunReport {
    let inputs: Vec<String> = COVARIATES.iter().map(|(_, m, n)| format!("{n}: {{metric: {m}, as: rate}}")).collect();
    let yaml = format!(
        "name: covariates\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with: {ingest}\n  clean:\n    \
         uses: clean.resample\n    with: {{step: 5m, max_gap: 15m, fill: ffill, min_points: 12, inputs: {{{}}}}}\n  \
         features:\n    uses: features.build\n    with: {{scale: none, split: {{validation: 0.2, test: 0.2}}, \
         windows: {{lookback: 12, horizon: 12}}}}\n",
        inputs.join(", ")
    );
    crate::support::run_with(&crate::support::pipeline(&yaml, &[]), store, Default::default()).unwrap()
}

/// (key, ms, input name, value) of every features row.
fn inputs_of(store: &Store, report: &RunReport) -> Vec<(String, i64, &'static str, f64)> {
    let path = &report.record("features").unwrap().outputs["features"].path;
    let mut out = Vec::new();
    for b in applearner_pipeline::context::read_parquet(path, store.get(path).unwrap()).unwrap() {
        let (key, time) = (strings(&b, "features", "key").unwrap(), ints(&b, "features", "timestamp").unwrap());
        for (_, _, name) in COVARIATES {
            let values = floats(&b, "features", name).unwrap();
            out.extend((0..b.num_rows()).map(|i| (key[i].clone(), time[i], name, values[i])));
        }
    }
    out.sort_by(|a, b| (&a.0, a.2, a.1).cmp(&(&b.0, b.2, b.1)));
    out
}

/// The four counters pulled live equal the saved answers' once they reach the features
/// table, and every value there is the counter's increase over the step per second.
#[test]
#[ignore = "full tier: needs Prometheus and promtool; .ci/run installs it and runs it"]
fn covariates_pulled_live_reach_the_features_as_the_saved_answers_rates() {
    let mut text = raw_openmetrics().strip_suffix("# EOF\n").unwrap().to_string();
    for (folder, counter, _) in COVARIATES {
        let mut series = answer_series(folder);
        if counter.starts_with("container_network") {
            // cAdvisor counts a pod's traffic per interface, without a container.
            series.iter_mut().for_each(|(labels, _)| labels.push(("interface".into(), "eth0".into())));
        }
        family(&mut text, counter, &series);
    }
    text.push_str("# EOF\n");
    let server = crate::prometheus::serve_ready(&text, "5m");
    let (_dir, store) = temp_store();
    let folders = BITBRAINS.iter().chain(COVARIATES.iter().map(|c| &c.0));
    let paths: Vec<String> = folders.map(|f| format!("'{}'", bitbrains(f).display())).collect();
    let saved = run(&store, &format!("{{paths: [{}]}}", paths.join(", ")));
    let url = format!("http://127.0.0.1:{}", server.port);
    let live =
        run(&store, &format!("{{prometheus: {{url: '{url}', start: '{SLICE_START}', end: '{SLICE_END}', step: 5m}}}}"));
    let (a, b) = (inputs_of(&store, &saved), inputs_of(&store, &live));
    assert_eq!(a.len(), 4 * 4 * 577);
    assert_eq!(a, b);
    // Each value against the saved counters: (this step's − the last step's) ÷ 300 s; the first
    // step has no rate (0, flagged filled).
    for (folder, _, name) in COVARIATES {
        for (labels, points) in answer_series(folder) {
            let pod = &labels.iter().find(|(k, _)| k == "pod").unwrap().1;
            let key = format!("bitbrains-rnd/{pod}/vm");
            let got: Vec<f64> = a.iter().filter(|r| r.0 == key && r.2 == name).map(|r| r.3).collect();
            let counter = |i: usize| points[i].1.parse::<f64>().unwrap();
            let want = (0..points.len()).map(|i| if i == 0 { 0.0 } else { (counter(i) - counter(i - 1)) / 300.0 });
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{key} {name} step {i}: {g} vs {w}");
            }
        }
    }
    let summary = &live.record("clean").unwrap().summary;
    assert_eq!(
        (summary["covariate_series"].as_u64(), summary["covariate_counter_resets"].as_u64()),
        (Some(16), Some(0))
    );
}

/// The four VMs' usage and covariates, cleaned with the covariates as inputs, and a small
/// LSTM trained with `covariates: <mode>`; the model card.
fn train_with(store: &std::path::Path, mode: &str) -> applearner_contracts::card::Card {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/bitbrains-rnd/query_range");
    let folders = ["cpu_cores", "memory_bytes"].iter().chain(COVARIATES.iter().map(|c| &c.0));
    let paths: Vec<String> = folders.map(|f| format!("'{data}/{f}'")).collect();
    let inputs: Vec<String> = COVARIATES.iter().map(|(_, m, n)| format!("{n}: {{metric: {m}, as: rate}}")).collect();
    let yaml = format!(
        "name: covariates\nstore: '{}'\nseed: 7\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with: {{paths: [{}]}}\n  \
         clean:\n    uses: clean.resample\n    with: {{step: 5m, max_gap: 15m, fill: ffill, min_points: 12, inputs: {{{}}}}}\n  \
         features:\n    uses: features.build\n    with: {{scale: zscore, split: {{validation: 0.2, test: 0.2}}, windows: {{lookback: 12, horizon: 6}}}}\n  \
         train:\n    uses: train.fit\n    with: {{targets: [cpu, memory], covariates: {mode}, model: {{kind: lstm, hidden: 8, layers: 1}}, \
         train: {{epochs: 2, lr: 0.003, patience: 0}}}}\n",
        store.display(),
        paths.join(", "),
        inputs.join(", ")
    );
    let config = store.join(format!("{mode}.yaml"));
    std::fs::create_dir_all(store).unwrap();
    std::fs::write(&config, yaml).unwrap();
    let out = crate::support::applearner(&["run", config.to_str().unwrap(), "--run-id", mode]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(store.join(mode).join("train/card.json")).unwrap()).unwrap()
}

/// `auto` trains without and with the covariates and keeps the one with the lower
/// validation error: the same weights as `ignore` or `use`, whichever that is, and never a
/// validation error above either; the card says which and both errors.
#[test]
fn covariates_are_kept_only_where_they_lower_the_validation_error() {
    let dir = tempfile::tempdir().unwrap();
    let (auto, ignore, used) =
        (train_with(dir.path(), "auto"), train_with(dir.path(), "ignore"), train_with(dir.path(), "use"));
    let choice = auto.covariates.clone().expect("auto says what it chose");
    assert_eq!(choice.columns, ["disk_read", "disk_write", "net_rx", "net_tx"]);
    assert_eq!(choice.validation_without, ignore.validation.relative_mae);
    assert_eq!(choice.validation_with, used.validation.relative_mae);
    let kept = if choice.used { &used } else { &ignore };
    assert_eq!(auto.weights_digest, kept.weights_digest);
    assert_eq!(auto.validation.relative_mae, choice.validation_with.min(choice.validation_without));
    // What each model reads: no covariate feature without them, all of them with them.
    assert!(!ignore.blueprint.inputs.iter().any(|i| i.starts_with("net_") || i.starts_with("disk_")));
    assert!(used.blueprint.inputs.iter().any(|i| i == "net_rx_mean12" || i == "net_rx"));
    assert_eq!(used.blueprint.targets, ["cpu", "memory"]);
    assert!(std::fs::read_to_string(dir.path().join("auto/train/card.md")).unwrap().contains(&choice.sentence()));
}
