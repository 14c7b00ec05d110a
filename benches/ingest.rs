//! Ingest throughput and peak memory: `cargo bench --bench ingest -- DATASET [--tile N]`.
//!
//! Runs the `ingest.prometheus` stage on a dataset's `query_range` answers and prints one
//! JSON line: JSON bytes and points per second, and the peak RSS of the ingest alone. With
//! `--tile N` it first writes N copies of the answers with timestamps shifted past each other
//! (the real series, tiled) and ingests those, to show growth with input size. The ingest
//! runs in a fresh process, so its peak RSS is its own and not the generator's.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use applearner_pipeline::run::{self, RunOptions};
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
    if let Some(input) = value("--measure") {
        measure(Path::new(&input), &args[0], value("--tile").map_or(1, |t| t.parse().unwrap()));
        return;
    }
    let dataset = PathBuf::from(args.first().expect("usage: ingest DATASET [--tile N]"));
    let work = tempfile::tempdir().unwrap();
    let input = match value("--tile") {
        Some(n) => {
            let dir = work.path().join("tiled");
            tile(&answers(&dataset), n.parse().unwrap(), &dir);
            dir
        }
        None => dataset.join("query_range"),
    };
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(&args)
        .arg("--measure")
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Ingests `input` and prints the measurements.
fn measure(input: &Path, dataset: &str, tile: usize) {
    let work = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    applearner_ingest::register(&mut registry);
    let yaml = format!(
        "name: bench\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with: {{paths: ['{}']}}\n",
        input.display()
    );
    let pipeline = Pipeline::from_yaml("bench.yaml", &yaml, &[], &registry).unwrap();
    let store = Store::open(work.path().join("store").to_str().unwrap()).unwrap();
    let options = RunOptions { jobs: 1, ..Default::default() };
    let started = Instant::now();
    let report = run::run(&pipeline, &yaml, &store, &options, &AtomicBool::new(false)).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let summary = &report.record("ingest").unwrap().summary;
    let (bytes, points) = (summary["bytes_read"].as_f64().unwrap(), summary["points"].as_f64().unwrap());
    let result = serde_json::json!({
        "bench": "ingest",
        "dataset": dataset,
        "tile": tile,
        "files": summary["files"],
        "json_bytes": bytes,
        "points": points,
        "seconds": (seconds * 1e4).round() / 1e4,
        "json_mb_per_s": (bytes / 1e6 / seconds * 100.0).round() / 100.0,
        "points_per_s": (points / seconds).round(),
        "peak_rss_mb": peak_rss().map(|b| (b as f64 / 1e6 * 10.0).round() / 10.0),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    println!("{result}");
}
