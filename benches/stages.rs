//! The benchmark suite: every stage's throughput and peak memory on the shipped data and on
//! it tiled 10× and 100× (the real series repeated with their timestamps shifted past each
//! other; past 100×, in more namespaces too), one JSON line per stage and scale:
//!
//!     cargo bench --bench stages
//!     cargo bench --bench stages -- --dataset ../shared/datasets/bitbrains-rnd --step 300 --scales 1
//!     cargo bench --bench stages -- --peer .bench-venv/bin/python     # and the reference beside it
//!
//! The pipeline is the reference's (`../shared/bench/torch_peer.py`): `ingest` reads the
//! query_range answers (gzipped, as dumps are) into the long table: JSON MB/s and points/s;
//! `clean` resamples to the step (mean per step, each series apart, no filters): input points/s;
//! `features` z-scores CPU per series and cuts lookback-48/horizon-12 windows (the test part
//! the reference's last 20 %; 10 % before it validates, which the backtest and plan need):
//! points/s;
//! `train` is a 2×64 LSTM (or `--model SPEC`), batch 256, Adam 1e-3, MSE, one epoch over
//! 50,000 seeded-random windows (training samples/s of the timed epoch; the stage's seconds
//! include scoring the validation and test parts' non-overlapping windows); `predict`
//! forecasts up to 50,000 test windows through the backtest's path: windows/s of the forward
//! passes, as the reference times its own (`read_s`: reading the windows and the model
//! before, untimed by the reference too). Training and
//! prediction cost the same per window at any scale, so they run only at scales up to
//! `--model-scales` (default 10); so do `evaluate` (the backtest: every method from the
//! test part's origins, the model also from the validation part's) and `plan` (CPU request
//! lines calibrated on validation and replayed with KRR, VPA and the oracle on change
//! budgets 1, 4 and 24: seconds), `report` (the HTML and Markdown report: seconds and bytes)
//! and `refresh` (an hourly refresh: every stage again, as new
//! data makes it, but with the model `train` left used as it is and the plan's loop
//! continued from its state: seconds, workloads and points). Each stage runs in a fresh
//! process on what the stages before it committed, so its peak RSS is its own. The refresh
//! target (100 workloads × 14 days at 5 minutes in ≤ 30 s) is measured on the Bitbrains VMs:
//!
//!     cargo bench --bench stages -- --dataset ../shared/datasets/bitbrains-rnd --step 300 \
//!       --scales 1 --stages ingest,clean,features,train,refresh
//!
//! `--stages ingest,clean` measures only those; `--single-file` writes each scale as one
//! plain answer file instead (one JSON document holding every series of every copy), for
//! streaming a dump far larger than memory:
//!
//!     cargo bench --bench stages -- --scales 1700 --single-file --stages ingest    # ~10 GB
//!
//! With `--peer PYTHON`, the reference runs on the same files right after ours at each scale
//! up to `--peer-scales` (default 1: its pandas resample fills every gap of a series with
//! empty steps, and the gaps between shifted copies make that hundreds of millions of rows
//! at 10×), its JSON line tagged `"tool": "torch_peer"` with its peak RSS.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use applearner_pipeline::run::{self, RunOptions, RunReport, Selection};
use applearner_pipeline::{Pipeline, Registry, Store};
use serde_json::{Value, json};

const STAGES: [&str; 9] = ["ingest", "clean", "features", "train", "predict", "evaluate", "plan", "report", "refresh"];
/// Training windows per epoch and predicted windows: the reference's 50,000.
const WINDOWS: usize = 50_000;
const PEER: &str = "../shared/bench/torch_peer.py";
/// The reference's model; `--model '{kind: gru, hidden: 64, layers: 2}'` trains another.
const REFERENCE_MODEL: &str = "{kind: lstm, hidden: 64, layers: 2}";

/// The suite's options: `cargo bench --bench stages -- --help`.
#[derive(clap::Parser)]
struct Args {
    /// A dataset folder holding `query_range/<metric>/` answers.
    #[arg(long, default_value = "data/nezha-k8s")]
    dataset: PathBuf,
    /// The data's step, in seconds.
    #[arg(long, default_value_t = 60)]
    step: u64,
    /// The model `train` fits (a train.fit `model`).
    #[arg(long, default_value = REFERENCE_MODEL)]
    model: String,
    /// Where `train` and `predict` run: `cpu`, or `cuda` on a GPU (a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Training windows per step (the reference's 256; a GPU wants more, such as 4096).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// The stages measured, in order.
    #[arg(long, value_delimiter = ',', default_values_t = STAGES.map(String::from))]
    stages: Vec<String>,
    /// The copies of the dataset measured.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100])]
    scales: Vec<usize>,
    /// The scales up to which the model's stages run.
    #[arg(long, value_delimiter = ',', default_values_t = [10])]
    model_scales: Vec<usize>,
    /// The scales up to which the reference runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1])]
    peer_scales: Vec<usize>,
    /// Each scale as one plain answer file.
    #[arg(long)]
    single_file: bool,
    /// The Python that runs the reference beside ours.
    #[arg(long)]
    peer: Option<String>,
    /// One stage measured in this process (the suite runs each so, for its own peak RSS),
    /// with the store and input it reads and the scale it reports.
    #[arg(long, hide = true, requires_all = ["store", "input", "scale"])]
    measure: Option<String>,
    #[arg(long, hide = true)]
    store: Option<PathBuf>,
    #[arg(long, hide = true)]
    input: Option<PathBuf>,
    #[arg(long, hide = true)]
    scale: Option<usize>,
}

fn main() {
    // `cargo bench` passes `--bench` to every bench binary.
    let args = <Args as clap::Parser>::parse_from(std::env::args().filter(|a| a != "--bench"));
    let (dataset, step) = (&args.dataset, args.step);
    let fit = Fit { model: &args.model, device: &args.device, batch: args.batch };
    if let (Some(stage), Some(store), Some(input), Some(scale)) = (&args.measure, &args.store, &args.input, args.scale)
    {
        let mut result = measure(stage, store, input, step, &fit);
        result["model"] = json!(fit.model);
        result["device"] = json!(fit.device);
        result["batch"] = json!(fit.batch);
        result["dataset"] = json!(dataset);
        result["scale"] = json!(scale);
        println!("{result}");
        return;
    }
    for &scale in &args.scales {
        let work = tempfile::tempdir().unwrap();
        let input = work.path().join("input");
        tile(&answers(dataset), scale, &input, args.single_file);
        let store = work.path().join("store");
        for stage in &args.stages {
            if matches!(stage.as_str(), "train" | "predict" | "evaluate" | "plan" | "report" | "refresh")
                && !args.model_scales.iter().any(|s| scale <= *s)
            {
                continue;
            }
            let status = Command::new(std::env::current_exe().unwrap())
                .args(["--measure", stage, "--scale", &scale.to_string(), "--step", &step.to_string()])
                .arg("--dataset")
                .arg(dataset)
                .args(["--model", fit.model, "--device", fit.device, "--batch", &fit.batch.to_string()])
                .arg("--store")
                .arg(&store)
                .arg("--input")
                .arg(input.join("query_range"))
                .status()
                .unwrap();
            assert!(status.success(), "{stage} at {scale}×");
        }
        if let Some(python) = args.peer.as_deref().filter(|_| args.peer_scales.iter().any(|s| scale <= *s)) {
            let mut result = peer(python, &input, step, work.path());
            result["dataset"] = json!(dataset);
            result["scale"] = json!(scale);
            println!("{result}");
        }
    }
}

fn answers(dataset: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dataset.join("query_range"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().map(|f| f.unwrap().path()))
        .collect();
    files.sort();
    files
}

/// Copies tiled in time; beyond them, the cluster's namespaces are copied (at 1,000×, 10
/// clusters' worth of pods with 100 spans each: 100 spans end about 2067, a thousand
/// would pass 2262, where nanosecond timestamps end).
const TIME_COPIES: usize = 100;

/// Writes `copies` of every answer under `out/query_range/<metric>/`, gzipped, the k-th with
/// its timestamps shifted by k times the dataset's span (k modulo [`TIME_COPIES`], and its
/// namespaces renamed `<ns>-<k / TIME_COPIES>` past them); or, `single`, every series of
/// every copy into one plain answer, `out/query_range/all/answer.json`.
fn tile(files: &[PathBuf], copies: usize, out: &Path, single: bool) {
    let read = |f: &PathBuf| -> Value {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(f).unwrap()).read_to_string(&mut text).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let docs: Vec<(&PathBuf, Value)> = files.iter().map(|f| (f, read(f))).collect();
    let times = docs
        .iter()
        .flat_map(|(_, d)| d["data"]["result"].as_array().unwrap().iter())
        .flat_map(|s| s["values"].as_array().unwrap().iter().map(|p| p[0].as_f64().unwrap()));
    let (lo, hi) = times.fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let span = (hi - lo + 86_400.0).ceil();
    let mut one = single.then(|| {
        std::fs::create_dir_all(out.join("query_range/all")).unwrap();
        let file = std::fs::File::create(out.join("query_range/all/answer.json")).unwrap();
        let mut file = std::io::BufWriter::new(file);
        file.write_all(br#"{"status":"success","data":{"resultType":"matrix","result":["#).unwrap();
        (file, true)
    });
    for k in 0..copies {
        for (file, doc) in &docs {
            let mut doc = doc.clone();
            for s in doc["data"]["result"].as_array_mut().unwrap() {
                for p in s["values"].as_array_mut().unwrap() {
                    p[0] = json!(p[0].as_f64().unwrap() + span * (k % TIME_COPIES) as f64);
                }
                // Past 100 copies in time, more of the cluster: its namespaces copied.
                if k >= TIME_COPIES
                    && let Some(ns) = s["metric"].get_mut("namespace")
                {
                    *ns = json!(format!("{}-{}", ns.as_str().unwrap(), k / TIME_COPIES));
                }
            }
            if let Some((one, first)) = &mut one {
                for s in doc["data"]["result"].as_array().unwrap() {
                    if !std::mem::take(first) {
                        one.write_all(b",").unwrap();
                    }
                    serde_json::to_writer(&mut *one, s).unwrap();
                }
                continue;
            }
            let metric = file.parent().unwrap().file_name().unwrap();
            let dir = out.join("query_range").join(metric);
            std::fs::create_dir_all(&dir).unwrap();
            let name = format!("{k:04}-{}", file.file_name().unwrap().to_string_lossy());
            let file = std::fs::File::create(dir.join(name)).unwrap();
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            gz.write_all(&serde_json::to_vec(&doc).unwrap()).unwrap();
            gz.finish().unwrap();
        }
    }
    if let Some((mut one, _)) = one {
        one.write_all(b"]}}").unwrap();
        one.flush().unwrap();
    }
}

/// Peak resident memory of this process, in MB (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(round(kb * 1024.0 / 1e6, 1))
}

fn round(x: f64, digits: i32) -> f64 {
    (x * 10f64.powi(digits)).round() / 10f64.powi(digits)
}

/// Runs one stage (its inputs are committed in the store) and returns its measurements.
fn measure(stage: &str, store: &Path, input: &Path, step: u64, fit: &Fit) -> Value {
    if stage == "refresh" {
        // The first refresh starts the plan's state; the one timed continues it, as every
        // hourly refresh after the first does.
        run_stage(store, input, step, stage, fit);
    }
    let started = Instant::now();
    let mut result = json!({"tool": "applearner", "stage": stage});
    if stage == "predict" {
        let (windows, forward_s) = predict(store, fit.device);
        result["windows"] = json!(windows);
        result["windows_per_s"] = json!((windows as f64 / forward_s).round());
        result["read_s"] = json!(round(started.elapsed().as_secs_f64() - forward_s, 3));
    } else {
        let report = run_stage(store, input, step, stage, fit);
        let seconds = started.elapsed().as_secs_f64();
        figures(&mut result, stage, &report, seconds);
        result["seconds"] = json!(round(seconds, 3));
    }
    result["peak_rss_mb"] = json!(peak_rss_mb());
    result["threads"] = json!(std::thread::available_parallelism().map_or(1, |n| n.get()));
    result
}

/// The stage's own figures from its run report, added to `result`.
fn figures(result: &mut Value, stage: &str, report: &RunReport, seconds: f64) {
    let summary = &report.record(if stage == "refresh" { "plan" } else { stage }).unwrap().summary;
    let per_s = |n: f64| json!((n / seconds).round());
    match stage {
        "ingest" => {
            let bytes = summary["bytes_read"].as_f64().unwrap();
            result["json_mb"] = json!(round(bytes / 1e6, 1));
            result["json_mb_per_s"] = json!(round(bytes / 1e6 / seconds, 1));
            result["points"] = summary["points"].clone();
            result["points_per_s"] = per_s(summary["points"].as_f64().unwrap());
        }
        "clean" => {
            result["input_points"] = summary["input_points"].clone();
            result["output_points"] = summary["points"].clone();
            result["points_per_s"] = per_s(summary["input_points"].as_f64().unwrap());
        }
        "features" => {
            result["points"] = summary["points"].clone();
            result["windows"] = json!(
                ["train", "validation", "test"]
                    .iter()
                    .map(|p| summary[&format!("{p}_windows")].as_u64().unwrap())
                    .sum::<u64>()
            );
            result["points_per_s"] = per_s(summary["points"].as_f64().unwrap());
        }
        "evaluate" => {
            result["series"] = summary["series"].clone();
            result["origins"] = summary["origins"].clone();
            result["validation_origins"] = summary["validation_origins"].clone();
        }
        "refresh" => {
            result["workloads"] = summary["workloads"].clone();
            let clean = &report.record("clean").unwrap().summary;
            result["points"] = clean["points"].clone();
            result["state"] = summary["state"].clone();
        }
        "report" => {
            result["bytes"] = json!(report.record("report").unwrap().outputs.values().map(|o| o.bytes).sum::<u64>())
        }
        "plan" => {
            result["workloads"] = summary["workloads"].clone();
            result["cpu_request_slack_pct"] = summary["cpu_request_slack_pct"].clone();
            result["cpu_request_risk_pct"] = summary["cpu_request_risk_pct"].clone();
        }
        _ => {
            result["epoch_windows"] = json!(summary["train_windows"].as_u64().unwrap().min(WINDOWS as u64));
            result["train_samples_per_s"] = summary["train_samples_per_s"].clone();
            result["test_relative_mae"] = summary["test_relative_mae"].clone();
        }
    }
}

/// Runs `stage` of ingest → clean → features → train → evaluate → plan over `input` in run
/// `bench` of `store`; `refresh` is all of them in run `refresh`, every stage run again (as
/// new data makes it) but training: the model `train` left in run `bench` is used as it is,
/// and the plan's loop continues from the state the last refresh kept.
/// What `train` fits and where.
struct Fit<'a> {
    model: &'a str,
    device: &'a str,
    batch: usize,
}

fn run_stage(store: &Path, input: &Path, step: u64, stage: &str, fit: &Fit) -> RunReport {
    let mut registry = Registry::new();
    applearner_ingest::register(&mut registry);
    applearner_clean::register(&mut registry);
    applearner_features::register(&mut registry);
    applearner_train::register(&mut registry);
    applearner_evaluate::register(&mut registry);
    applearner_plan::register(&mut registry);
    applearner_report::register(&mut registry);
    let yaml = format!(
        "name: bench\nseed: 0\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with: {{paths: ['{}']}}\n  \
         clean:\n    uses: clean.resample\n    with: {{step: {step}s, aggregate: mean, min_points: 1, \
         drop_constant: false, drop_zero: false}}\n  \
         features:\n    uses: features.build\n    with: {{columns: [cpu], calendar: [], \
         split: {{validation: 0.1, test: 0.2}}, windows: {{lookback: 48, horizon: 12}}}}\n  \
         train:\n    uses: train.fit\n    with: {{inputs: [cpu], targets: [cpu], \
         model: {model}, loss: {{kind: mse}}, device: {device}, \
         train: {{lr: 0.001, batch: {batch}, epochs: 1, clip: 0, patience: 0, max_train_windows: {WINDOWS}}}}}\n  \
         evaluate:\n    uses: evaluate.backtest\n  plan:\n    uses: plan.resources\n  report:\n    uses: report.html\n",
        input.display(),
        model = fit.model,
        device = fit.device,
        batch = fit.batch,
    );
    let refresh = stage == "refresh";
    let trained = store.join("bench/train");
    assert!(!refresh || trained.exists(), "refresh uses the model `train` leaves: measure train before it");
    let sets = [format!("train.use_model={}", trained.display()), "plan.state=bench".into()];
    let sets: &[String] = if refresh { &sets } else { &[] };
    let pipeline = Pipeline::from_yaml("bench.yaml", &yaml, sets, &registry).unwrap();
    let store = Store::open(store.to_str().unwrap()).unwrap();
    // One run id: each stage reads what the stages before it committed there.
    let options = match refresh {
        // The report is not part of the hourly refresh.
        true => RunOptions {
            jobs: 1,
            selection: Selection::Until("plan".into()),
            run_id: Some("refresh".into()),
            force: vec!["*".into()],
            ..Default::default()
        },
        false => RunOptions {
            jobs: 1,
            selection: Selection::Stage(stage.into()),
            run_id: Some("bench".into()),
            ..Default::default()
        },
    };
    run::run(&pipeline, &yaml, &store, &options, &AtomicBool::new(false)).unwrap()
}

/// Forecasts up to [`WINDOWS`] test windows with the trained model, read as the backtest
/// reads them (decoded a batch at a time, the test part's rows held); returns how many, and
/// the seconds of the forward passes (with each batch's windows copied out), which is what
/// the reference times: its windows are built before its clock starts.
fn predict(store: &Path, device: &str) -> (usize, f64) {
    use applearner_pipeline::context::parquet_batches;
    let open = |path: &str| {
        let path = store.join("bench").join(path);
        parquet_batches(&path.display().to_string(), std::fs::read(&path).unwrap().into(), None, &[]).unwrap()
    };
    let cpu = ["cpu".to_string()];
    let windows = applearner_contracts::WindowSet::of_parts(
        open("features/features.parquet"),
        open("features/windows.parquet"),
        &cpu,
        &cpu,
        &[applearner_contracts::Part::Test],
    )
    .unwrap();
    let dir = store.join("bench/train");
    let saved = applearner_train::card::Saved::read(&dir).unwrap();
    let which: Vec<usize> = (0..windows.part(applearner_contracts::Part::Test).len().min(WINDOWS)).collect();
    let device = device.parse::<applearner_train::device::DeviceName>().unwrap().resolve().unwrap();
    let started = Instant::now();
    applearner_train::predict::forecast_windows(
        &dir,
        &saved,
        &windows,
        applearner_contracts::Part::Test,
        &which,
        device,
    )
    .unwrap();
    (which.len(), started.elapsed().as_secs_f64())
}

/// Runs the reference on the same files with the same settings; its JSON line and peak RSS.
fn peer(python: &str, input: &Path, step: u64, work: &Path) -> Value {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();
    // The reference's own process reports its peak RSS after its JSON line.
    let wrapper = "import resource, runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); \
                   print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)";
    let out = Command::new(python)
        .args(["-c", wrapper, PEER])
        .arg(input)
        .args(["--step", &step.to_string(), "--lookback", "48", "--horizon", "12", "--threads", &threads])
        .args(["--max-train-windows", &WINDOWS.to_string()])
        .arg("--work")
        .arg(work.join("peer"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{PEER} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines().rev();
    let rss_kb: f64 = lines.next().unwrap().trim().parse().unwrap();
    let mut result: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    result["tool"] = json!("torch_peer");
    result["peak_rss_mb"] = json!(round(rss_kb * 1024.0 / 1e6, 1));
    result
}
