//! Stage throughput and peak memory, one JSON line per run:
//!
//!     cargo bench --bench stages -- ingest DATASET [--tile N]
//!     cargo bench --bench stages -- resample DATASET --step SECONDS [--tile N]
//!     cargo bench --bench stages -- train DATASET --step SECONDS
//!
//! `ingest` runs `ingest.prometheus` on a dataset's `query_range` answers: JSON bytes and
//! points per second. `resample` ingests first (not measured), then runs `clean.resample`
//! (mean per step, each series apart, no filters: the reference's resample): input points
//! per second. With `--tile N` the answers are first written N times with timestamps shifted
//! past each other (the real series, tiled), to show growth with input size. The measured
//! stage runs in a fresh process, so its peak RSS is its own.
//!
//! `train` is the reference's training run: per-series z-scored CPU, lookback 48, horizon
//! 12, a 2×64 LSTM, batch 256, Adam 1e-3, MSE, one epoch over 50,000 seeded-random
//! training windows. It prints training samples per second (the timed epoch, not the data
//! loading) and prediction windows per second over the test part.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use applearner_pipeline::run::{self, RunOptions, RunReport, Selection};
use applearner_pipeline::{Pipeline, Registry, Store};

fn answers(dataset: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dataset.join("query_range"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().map(|f| f.unwrap().path()))
        .collect();
    files.sort();
    files
}

/// Writes `copies` of every answer (plain JSON), the k-th shifted by k times the dataset's span.
fn tile(files: &[PathBuf], copies: usize, out: &Path) -> u64 {
    let read = |f: &PathBuf| -> serde_json::Value {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(f).unwrap()).read_to_string(&mut text).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let docs: Vec<(String, serde_json::Value)> =
        files.iter().map(|f| (f.file_name().unwrap().to_string_lossy().replace(".gz", ""), read(f))).collect();
    let times = docs
        .iter()
        .flat_map(|(_, d)| d["data"]["result"].as_array().unwrap().iter())
        .flat_map(|s| s["values"].as_array().unwrap().iter().map(|p| p[0].as_f64().unwrap()));
    let (lo, hi) = times.fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let span = (hi - lo + 86_400.0).ceil();
    let mut bytes = 0;
    for k in 0..copies {
        for (i, (name, doc)) in docs.iter().enumerate() {
            let mut doc = doc.clone();
            for s in doc["data"]["result"].as_array_mut().unwrap() {
                for p in s["values"].as_array_mut().unwrap() {
                    p[0] = serde_json::json!(p[0].as_f64().unwrap() + span * k as f64);
                }
            }
            let text = serde_json::to_vec(&doc).unwrap();
            bytes += text.len() as u64;
            let dir = out.join(format!("{k:04}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::File::create(dir.join(format!("{i:02}-{name}"))).unwrap().write_all(&text).unwrap();
        }
    }
    bytes
}

/// Peak resident memory of this process, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
    let usage = "usage: stages ingest|resample|train DATASET [--step SECONDS] [--tile N]";
    let (bench, dataset) = (args.first().expect(usage).clone(), PathBuf::from(args.get(1).expect(usage)));
    let tiles: usize = value("--tile").map_or(1, |t| t.parse().unwrap());
    let step = value("--step").unwrap_or_else(|| "60".into());
    if let Some(store) = value("--measure") {
        measure(&bench, Path::new(&store), &dataset, tiles, &step);
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let input = if tiles > 1 {
        let dir = work.path().join("tiled");
        tile(&answers(&dataset), tiles, &dir);
        dir
    } else {
        dataset.join("query_range")
    };
    let store = work.path().join("store");
    match bench.as_str() {
        "resample" => drop(run_stages(&store, &input, &step, Selection::Stage("ingest".into()))),
        "train" => drop(run_stages(&store, &input, &step, Selection::Until("features".into()))),
        _ => {}
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(&args)
        .arg("--measure")
        .arg(&store)
        .env("APPLEARNER_BENCH_INPUT", &input)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs the selected stages of ingest → clean.resample over `input`.
fn run_stages(store: &Path, input: &Path, step: &str, selection: Selection) -> RunReport {
    let mut registry = Registry::new();
    applearner_ingest::register(&mut registry);
    applearner_prepare::register(&mut registry);
    applearner_train::register(&mut registry);
    let yaml = format!(
        "name: bench\nseed: 0\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with: {{paths: ['{}']}}\n  \
         clean:\n    uses: clean.resample\n    with: {{step: {step}s, aggregate: mean, min_points: 1, \
         drop_constant: false, drop_zero: false}}\n  \
         features:\n    uses: features.build\n    with: {{columns: [cpu], calendar: [], \
         split: {{validation: 0.01, test: 0.2}}, windows: {{lookback: 48, horizon: 12}}}}\n  \
         train:\n    uses: train.fit\n    with: {{inputs: [cpu], targets: [cpu], \
         model: {{kind: lstm, hidden: 64, layers: 2}}, loss: {{kind: mse}}, \
         train: {{lr: 0.001, batch: 256, epochs: 1, clip: 0, patience: 0, max_train_windows: {windows}}}}}\n",
        input.display(),
        windows = train_windows()
    );
    let pipeline = Pipeline::from_yaml("bench.yaml", &yaml, &[], &registry).unwrap();
    let store = Store::open(store.to_str().unwrap()).unwrap();
    // One run id: the measured stage reads the inputs committed in it by the first call.
    let options = RunOptions { jobs: 1, selection, run_id: Some("bench".into()), ..Default::default() };
    run::run(&pipeline, &yaml, &store, &options, &AtomicBool::new(false)).unwrap()
}

/// Runs the measured stage and prints the measurements.
fn measure(bench: &str, store: &Path, dataset: &Path, tiles: usize, step: &str) {
    let input = PathBuf::from(std::env::var("APPLEARNER_BENCH_INPUT").unwrap());
    let stage = match bench {
        "resample" => "clean",
        "train" => "train",
        _ => "ingest",
    };
    let started = Instant::now();
    let report = run_stages(store, &input, step, Selection::Stage(stage.into()));
    let seconds = started.elapsed().as_secs_f64();
    let summary = &report.record(stage).unwrap().summary;
    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let mut result = serde_json::json!({
        "bench": bench,
        "dataset": dataset,
        "tile": tiles,
        "seconds": round(seconds, 4),
        "peak_rss_mb": peak_rss().map(|b| round(b as f64 / 1e6, 1)),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    if bench == "train" {
        result["train_windows"] = train_windows().into();
        result["train_samples_per_s"] = summary["train_samples_per_s"].clone();
        let (windows, seconds) = predict_speed(store);
        result["test_windows"] = windows.into();
        result["predict_windows_per_s"] = (windows as f64 / seconds).round().into();
    } else if bench == "resample" {
        let points = summary["input_points"].as_f64().unwrap();
        result["step_s"] = step.parse::<f64>().unwrap().into();
        result["input_points"] = points.into();
        result["output_points"] = summary["points"].clone();
        result["points_per_s"] = (points / seconds).round().into();
    } else {
        let (bytes, points) = (summary["bytes_read"].as_f64().unwrap(), summary["points"].as_f64().unwrap());
        result["files"] = summary["files"].clone();
        result["json_bytes"] = bytes.into();
        result["points"] = points.into();
        result["json_mb_per_s"] = round(bytes / 1e6 / seconds, 2).into();
        result["points_per_s"] = (points / seconds).round().into();
    }
    println!("{result}");
}

/// Forecasts every test window with the trained model: (windows, seconds).
fn predict_speed(store: &Path) -> (usize, f64) {
    use applearner_pipeline::context::read_parquet;
    let read = |path: &str| {
        let path = store.join("bench").join(path);
        read_parquet(&path.display().to_string(), std::fs::read(&path).unwrap().into()).unwrap()
    };
    let windows = applearner_prepare::windows::WindowSet::new(
        &read("features/features.parquet"),
        &read("features/windows.parquet"),
        &["cpu".into()],
        &["cpu".into()],
    )
    .unwrap();
    let dir = store.join("bench/train");
    let saved = applearner_train::card::Saved::read(&dir).unwrap();
    let device = burn::backend::flex::FlexDevice;
    let model = saved.model::<burn::backend::Flex>(&dir, &device).unwrap();
    let started = Instant::now();
    applearner_train::fit::evaluate(&saved.card.blueprint, &model, &windows, "test", &device);
    (windows.part("test").len(), started.elapsed().as_secs_f64())
}

/// Training windows of the train bench: the reference's 50,000, or `APPLEARNER_BENCH_WINDOWS`
/// for a quicker look.
fn train_windows() -> usize {
    std::env::var("APPLEARNER_BENCH_WINDOWS").ok().and_then(|w| w.parse().ok()).unwrap_or(50_000)
}
