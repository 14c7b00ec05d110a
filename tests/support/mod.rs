//! Test stages and helpers. The stages are real implementations of the stage contract,
//! small enough to reason about: a seeded source, a transform, a rendezvous that proves two
//! stages run at the same time, and a pause that lets a test kill a process mid-stage.

pub mod s3;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use applearner_pipeline::arrow::array::{Float64Array, Int64Array, RecordBatch};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use applearner_pipeline::run::{self, RunReport};
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{
    BoxError, Output, ParamProblem, Pipeline, PipelineError, Registry, RunOptions, Stage, StageContext, StageParams,
    Store, Summary,
};
use serde::{Deserialize, Serialize};

fn numbers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("value", DataType::Float64, false)]))
}

/// Writes `rows` seeded pseudo-random numbers.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceParams {
    /// How many rows.
    rows: u32,
    /// A file whose content feeds the cache key.
    #[serde(default)]
    file: Option<String>,
}

struct Source(SourceParams);

impl StageParams for SourceParams {
    const KIND: &'static str = "test.source";
    const SOURCE: &'static str = file!();
    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        if self.rows == 0 {
            return Err(vec![ParamProblem::new(&["rows"], "rows must be positive", "use 1 or more")]);
        }
        Ok(Box::new(Source(self)))
    }
}

impl Stage for Source {
    fn writes(&self) -> Vec<Output> {
        vec![Output::table("numbers")]
    }
    fn fingerprint(&self, _store: &Store, hasher: &mut blake3::Hasher) -> Result<(), BoxError> {
        if let Some(f) = &self.0.file {
            hasher.update(&std::fs::read(f)?);
        }
        Ok(())
    }
    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let ids: Vec<i64> = (0..self.0.rows as i64).collect();
        let values: Vec<f64> = ids
            .iter()
            .map(|i| {
                let h = blake3::hash(format!("{}:{i}", ctx.seed()).as_bytes());
                u32::from_le_bytes(h.as_bytes()[..4].try_into().unwrap()) as f64 / u32::MAX as f64
            })
            .collect();
        let batch = RecordBatch::try_new(
            numbers_schema(),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(Float64Array::from(values))],
        )?;
        ctx.write_table("numbers", numbers_schema(), &[batch])?;
        let mut s = Summary::new();
        s.insert("rows".into(), self.0.rows.into());
        Ok(s)
    }
}

/// Multiplies `numbers` by a factor. With `pause_once`, the first run (when that file does
/// not exist yet) creates it and then waits up to a minute, so a test can kill it midway.
/// With `panic`, it panics with that message (a bug in a stage kind).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleParams {
    factor: f64,
    #[serde(default)]
    pause_once: Option<String>,
    #[serde(default)]
    panic: Option<String>,
}

struct Scale(ScaleParams);

impl StageParams for ScaleParams {
    const KIND: &'static str = "test.scale";
    const SOURCE: &'static str = file!();
    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        Ok(Box::new(Scale(self)))
    }
}

impl Stage for Scale {
    fn reads(&self) -> Vec<String> {
        vec!["numbers".into()]
    }
    fn writes(&self) -> Vec<Output> {
        vec![Output::table("scaled")]
    }
    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        if let Some(message) = &self.0.panic {
            panic!("{message}");
        }
        if let Some(marker) = &self.0.pause_once
            && !Path::new(marker).exists()
        {
            std::fs::write(marker, b"started")?;
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                ctx.check_cancelled()?;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let batches = ctx.read_table("numbers")?;
        let mut writer = ctx.table_writer("scaled", numbers_schema())?;
        for b in batches {
            let values = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
            let scaled: Float64Array = values.iter().map(|v| v.map(|v| v * self.0.factor)).collect();
            writer.write(&RecordBatch::try_new(numbers_schema(), vec![b.column(0).clone(), Arc::new(scaled)])?)?;
        }
        writer.finish()?;
        Ok(Summary::new())
    }
}

/// Waits until `expect` stages of the same `group` are running at once (proof of
/// parallelism), or fails after `timeout_ms`.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RendezvousParams {
    group: String,
    expect: u32,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
}

fn default_timeout() -> u64 {
    20_000
}

struct Rendezvous(RendezvousParams);

impl StageParams for RendezvousParams {
    const KIND: &'static str = "test.rendezvous";
    const SOURCE: &'static str = file!();
    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        Ok(Box::new(Rendezvous(self)))
    }
}

fn arrivals() -> &'static (Mutex<HashMap<String, u32>>, Condvar) {
    static ARRIVALS: OnceLock<(Mutex<HashMap<String, u32>>, Condvar)> = OnceLock::new();
    ARRIVALS.get_or_init(Default::default)
}

impl Stage for Rendezvous {
    fn writes(&self) -> Vec<Output> {
        vec![Output::artifact("met.json")]
    }
    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let (lock, cvar) = arrivals();
        let mut seen = lock.lock().unwrap();
        *seen.entry(self.0.group.clone()).or_default() += 1;
        cvar.notify_all();
        let (seen, timeout) = cvar
            .wait_timeout_while(seen, Duration::from_millis(self.0.timeout_ms), |s| s[&self.0.group] < self.0.expect)
            .unwrap();
        if timeout.timed_out() {
            return Err(format!(
                "only {} of {} stages of group {} ran at once",
                seen[&self.0.group], self.0.expect, self.0.group
            )
            .into());
        }
        ctx.write_artifact("met.json", format!("{{\"group\":\"{}\"}}", self.0.group))?;
        Ok(Summary::new())
    }
}

pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<SourceParams>().register::<ScaleParams>().register::<RendezvousParams>();
    applearner_ingest::register(&mut r);
    applearner_clean::register(&mut r);
    applearner_features::register(&mut r);
    applearner_train::register(&mut r);
    applearner_evaluate::register(&mut r);
    applearner_plan::register(&mut r);
    applearner_report::register(&mut r);
    r
}

pub fn pipeline(yaml: &str, sets: &[&str]) -> Pipeline {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Pipeline::from_yaml("test.yaml", yaml, &sets, &registry()).unwrap_or_else(|p| panic!("{p}"))
}

pub fn problems(yaml: &str, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    match Pipeline::from_yaml("test.yaml", yaml, &sets, &registry()) {
        Ok(_) => panic!("the config was accepted"),
        Err(p) => p.to_string(),
    }
}

pub fn run_with(p: &Pipeline, store: &Store, options: RunOptions) -> Result<RunReport, PipelineError> {
    run::run(p, "", store, &RunOptions { jobs: options.jobs.max(2), ..options }, &AtomicBool::new(false))
}

/// `stage/output` → digest of every output of a run.
pub fn digests(report: &RunReport) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report
        .manifest
        .stages
        .iter()
        .flat_map(|r| r.outputs.iter().map(move |(name, o)| (format!("{}/{name}", r.stage), o.digest.clone())))
        .collect();
    out.sort();
    out
}

pub fn values(store: &Store, path: &str) -> Vec<f64> {
    let batches = applearner_pipeline::context::read_parquet(path, store.get(path).unwrap()).unwrap();
    batches
        .iter()
        .flat_map(|b| b.column(1).as_any().downcast_ref::<Float64Array>().unwrap().values().to_vec())
        .collect()
}

/// Output digests of a manifest, by `stage.output`.
pub fn manifest_digests(manifest: &[u8]) -> std::collections::BTreeMap<String, String> {
    let m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for stage in m["stages"].as_array().unwrap() {
        for (name, o) in stage["outputs"].as_object().unwrap() {
            out.insert(format!("{}.{name}", stage["stage"].as_str().unwrap()), o["digest"].as_str().unwrap().into());
        }
    }
    out
}

/// Every file below `dir`.
pub fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The `applearner` binary, run from the repository root as a user would.
pub fn applearner(args: &[&str]) -> std::process::Output {
    applearner_cmd(args, &[]).output().unwrap()
}

/// The `applearner` command with extra environment variables, not yet started.
pub fn applearner_cmd(args: &[&str], env: &[(&str, String)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_applearner"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("APPLEARNER_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}
