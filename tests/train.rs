//! train.fit and `applearner predict` on the real data shipped in data/: the quickstart
//! pipeline with small, fast training settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{applearner, applearner_cmd};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Quick training on the quickstart's data: a small model from scratch, few windows.
const QUICK: &[&str] = &[
    "train.init_from=null",
    "train.model={kind: lstm, hidden: 16, layers: 1}",
    "train.train={epochs: 3, max_train_windows: 2000, lr: 0.003, patience: 0}",
];

/// Runs the quickstart up to training in `store` under `run_id` with `sets`, and returns
/// its manifest.
fn quickstart(store: &Path, run_id: &str, sets: &[&str]) -> serde_json::Value {
    let store_set = format!("store={}", store.display());
    let mut args = vec!["run", "configs/quickstart.yaml", "--until", "train", "--run-id", run_id, "--set", &store_set];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = applearner(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&std::fs::read(store.join(run_id).join("manifest.json")).unwrap()).unwrap()
}

fn stage<'a>(manifest: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    manifest["stages"].as_array().unwrap().iter().find(|s| s["stage"] == name).unwrap()
}

fn metrics(store: &Path, run_id: &str) -> Vec<f64> {
    let path = store.join(run_id).join("train/metrics.parquet");
    let batches = applearner_pipeline::context::read_parquet("metrics", std::fs::read(path).unwrap().into()).unwrap();
    use applearner_pipeline::arrow::array::AsArray;
    use applearner_pipeline::arrow::datatypes::Float64Type;
    batches
        .iter()
        .flat_map(|b| b.column_by_name("train_loss").unwrap().as_primitive::<Float64Type>().values().to_vec())
        .collect()
}

#[test]
fn training_on_real_data_lowers_the_loss_and_a_killed_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("runs");
    let manifest = quickstart(&store, "whole", QUICK);
    let losses = metrics(&store, "whole");
    assert_eq!(losses.len(), 3);
    assert!(losses[2] < losses[0], "training loss did not fall: {losses:?}");
    let whole = &stage(&manifest, "train")["outputs"]["model.mpk"]["digest"];

    // On one thread the same weights, bit for bit: the fused layers shard the batch by a
    // fixed rule and sum the shards in order, whatever the core count.
    let single = dir.path().join("single");
    let store_set = format!("store={}", single.display());
    let mut args = vec!["run", "configs/quickstart.yaml", "--until", "train", "--run-id", "one", "--set", &store_set];
    for s in QUICK {
        args.extend(["--set", s]);
    }
    let out = applearner_cmd(&args, &[("RAYON_NUM_THREADS", "1".into())]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let one: serde_json::Value =
        serde_json::from_slice(&std::fs::read(single.join("one/manifest.json")).unwrap()).unwrap();
    assert_eq!(&stage(&one, "train")["outputs"]["model.mpk"]["digest"], whole, "one thread");

    // Kill a run after its first checkpoint, then rerun it: it resumes and ends with the
    // weights of the run that was never interrupted.
    let other = dir.path().join("other");
    let store_set = format!("store={}", other.display());
    let mut args =
        vec!["run", "configs/quickstart.yaml", "--until", "train", "--run-id", "killed", "--set", &store_set];
    for s in QUICK {
        args.extend(["--set", s]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_applearner"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let progress = || -> Option<PathBuf> {
        let cache = other.join("_cache");
        std::fs::read_dir(cache)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("progress.json"))
            .find(|p| p.exists())
    };
    let started = std::time::Instant::now();
    while progress().is_none() && child.try_wait().unwrap().is_none() {
        assert!(started.elapsed().as_secs() < 600, "no checkpoint after 10 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let checkpoint = progress().expect("the run was killed before its first checkpoint");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert!(saved["next_epoch"].as_u64().unwrap() >= 1);

    let resumed = quickstart(&other, "killed", QUICK);
    let train = stage(&resumed, "train");
    assert_eq!(train["status"], "ran");
    assert!(train["summary"]["resumed_from_epoch"].as_u64().unwrap() >= 1, "{}", train["summary"]);
    assert_eq!(&train["outputs"]["model.mpk"]["digest"], whole);
    assert!(!checkpoint.exists(), "checkpoints are removed once the stage commits");
}

#[test]
fn every_model_kind_and_head_trains_on_real_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("runs");
    let models = [
        ("gru", "{kind: gru, hidden: 16, layers: 2, dropout: 0.1}", "{kind: huber}"),
        ("tcn", "{kind: tcn, channels: 8, levels: 3}", "{kind: mae}"),
        ("nbeats", "{kind: nbeats, blocks: 2, layers: 2, hidden: 32}", "{kind: mse}"),
        ("dlinear", "{kind: dlinear, kernel: 9}", "{kind: quantile, quantiles: [0.1, 0.5, 0.9]}"),
        ("deepar", "{kind: deepar, hidden: 16, layers: 1}", "null"),
    ];
    for (name, model, loss) in models {
        let (model, loss) = (format!("train.model={model}"), format!("train.loss={loss}"));
        let sets = [
            "train.init_from=null",
            "train.targets=[cpu]",
            model.as_str(),
            loss.as_str(),
            "train.train={epochs: 2, max_train_windows: 1000}",
        ];
        let manifest = quickstart(&store, name, &sets);
        let card: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.join(name).join("train/card.json")).unwrap()).unwrap();
        assert_eq!(card["blueprint"]["model"]["kind"], name);
        let relative_mae = card["test"]["relative_mae"].as_f64().unwrap();
        assert!(relative_mae.is_finite() && relative_mae > 0.0, "{name}: {relative_mae}");
        assert!(metrics(&store, name).iter().all(|l| l.is_finite()), "{name}");
        assert_eq!(stage(&manifest, "train")["status"], "ran");
    }
}

#[test]
fn predict_turns_the_shipped_model_into_forecasts_in_cores_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("runs");
    let store_set = format!("store={}", store.display());
    let out =
        applearner(&["run", "configs/quickstart.yaml", "--until", "features", "--run-id", "p", "--set", &store_set]);
    assert!(out.status.success(), "{}", stderr(&out));
    let features = store.join("p/features");
    let model = "trained_models/nezha-lstm";
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(model).join("card.json")).unwrap()).unwrap();
    // The shipped model beats repeating the last value on the test part of the data.
    assert!(card["test"]["relative_mae"].as_f64().unwrap() < 1.0, "{}", card["test"]);

    let json = dir.path().join("forecast.json");
    let out =
        applearner(&["predict", "--model", model, "--input", features.to_str().unwrap(), "-o", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let horizon = card["blueprint"]["shape"]["horizon"].as_u64().unwrap() as usize;
    let keys: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    // data/README.md: 53 series survive cleaning; each gets CPU and memory over the horizon.
    assert_eq!(keys.len(), 53);
    assert_eq!(rows.len(), keys.len() * horizon * 2);
    for r in &rows {
        let (p50, p90, p99) = (r["p50"].as_f64().unwrap(), r["p90"].as_f64().unwrap(), r["p99"].as_f64().unwrap());
        assert!(p50 <= p90 && p90 <= p99, "{r}");
        assert_eq!(r["forecast"], r["p50"]);
        if r["column"] == "memory" {
            // Back in bytes: pods here use tens to hundreds of MiB.
            assert!(p50 > 1e6 && p50 < 1e11, "{r}");
        }
    }
    let first = rows.iter().find(|r| r["step"] == 1).unwrap();
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));

    // Fewer steps, other formats.
    let csv = dir.path().join("forecast.csv");
    let out = applearner(&[
        "predict",
        "--model",
        model,
        "--input",
        features.to_str().unwrap(),
        "--horizon",
        "3",
        "-o",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("key,column,step,timestamp,forecast,p50,p90,p99\n"), "{text}");
    assert_eq!(text.lines().count(), 1 + 53 * 3 * 2);

    let out = applearner(&["predict", "--model", model, "--input", features.to_str().unwrap(), "--horizon", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("the model forecasts {horizon} steps")), "{}", stderr(&out));

    // A model folder from another version is refused with what to do.
    let old = dir.path().join("old-model");
    std::fs::create_dir(&old).unwrap();
    for f in ["model.mpk", "card.md"] {
        std::fs::copy(Path::new(model).join(f), old.join(f)).unwrap();
    }
    let mut old_card = card.clone();
    old_card["format"] = 0.into();
    old_card["applearner_version"] = "0.0.1".into();
    std::fs::write(old.join("card.json"), serde_json::to_vec(&old_card).unwrap()).unwrap();
    let out = applearner(&["predict", "--model", old.to_str().unwrap(), "--input", features.to_str().unwrap()]);
    let message = stderr(&out);
    assert!(!out.status.success());
    assert!(message.contains("written by AppLearner 0.0.1") && message.contains("retrain"), "{message}");
}

/// Regression: `validate` and `export` of a pipeline with `device: cuda` failed on a machine
/// without a GPU (or a build without CUDA), although the pods that run it have GPUs; and they
/// read `init_from` weights. Both are checked where the stage runs.
#[test]
fn validate_and_export_do_not_probe_this_machines_hardware() {
    let cuda = ["--set", "train.device=cuda", "--set", "evaluate.device=cuda:0"];
    let missing_model = ["--set", "train.init_from=trained_models/no-such-model"];
    let args = |cmd: &[&'static str]| [cmd, &cuda[..], &missing_model[..]].concat();
    let out = applearner(&args(&["validate", "configs/quickstart.yaml"]));
    let warnings = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{warnings}");
    if !cfg!(feature = "cuda") {
        assert!(warnings.contains("this machine cannot run it") && warnings.contains("--features cuda"), "{warnings}");
    }
    let out = applearner(&args(&["export", "argo", "configs/quickstart.yaml", "--set", "store=s3://bucket/runs"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: Workflow"));

    // Where it runs, each is a clear error before any training.
    let dir = tempfile::tempdir().unwrap();
    let store_set = format!("store={}", dir.path().display());
    let run = |extra: &[&str]| {
        let out =
            applearner(&[&["run", "configs/quickstart.yaml", "--until", "train", "--set", &store_set], extra].concat());
        (out.status.code(), stderr(&out))
    };
    let (code, message) = run(&missing_model);
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("init_from") && message.contains("trained_models/no-such-model"), "{message}");
    if warnings.contains("this machine cannot run it") {
        let (code, message) = run(&cuda[..2]);
        assert_eq!(code, Some(1), "{message}");
        let why = if cfg!(feature = "cuda") { "driver" } else { "--features cuda" };
        assert!(message.contains(why), "{message}");
    }
}

#[test]
fn windows_longer_than_the_data_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store_set = format!("store={}", dir.path().display());
    let out =
        applearner(&["run", "configs/quickstart.yaml", "--set", &store_set, "--set", "features.windows.lookback=5000"]);
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    // No segment holds a window: the longest is named, with the settings to lower.
    assert!(message.contains("lookback 5000") && message.contains("the longest segment, of series"), "{message}");
    assert!(message.contains("Lower `windows.lookback` (5000), `windows.horizon` (10)"), "{message}");
}
