//! Running a pipeline: topological order, independent stages in parallel, the stage cache,
//! atomic commits and the run manifest.
//!
//! Store layout (relative to the store root):
//!
//! ```text
//! <run-id>/config.lock.yaml      the fully resolved config, written first
//! <run-id>/<stage>/<output>      a stage's tables (.parquet) and artifacts
//! <run-id>/<stage>/_stage.json   the stage's commit record, written after its outputs
//! <run-id>/<stage>/_lease        held by the process running the stage (see `lease`)
//! <run-id>/manifest.json         the run manifest, written last
//! _cache/<key>.json              the record of the run that produced a cache key
//! _cache/<key>.partial/          a running stage's checkpoints, until it commits
//! _cache/<key>.lease             held while a process computes that key
//! ```
//!
//! A stage counts as done in a run only when its `_stage.json` exists, and that record is
//! deleted before a stage reruns, so a stage killed midway leaves nothing a rerun could
//! mistake for a result; the rerun simply runs it again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use indicatif::{MultiProgress, ProgressDrawTarget};
use serde::{Deserialize, Serialize};

use crate::PipelineError;
use crate::config::{Pipeline, StageSpec};
use crate::context::StoredOutput;
use crate::stage::{Summary, closest};
use crate::store::{Store, digest};

mod executor;

use executor::Executor;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Beside the runs; run ids cannot start with `_`, so it never collides with one.
const CACHE_DIR: &str = "_cache";

/// Which stages a run executes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    #[default]
    All,
    /// Exactly this stage, its inputs read from the same run (one Kubernetes Job / Argo step).
    Stage(String),
    /// This stage and everything it depends on.
    Until(String),
    /// This stage and everything that depends on it; other inputs come from the same run.
    From(String),
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Reuse (or name) a run; a new id is made when absent.
    pub run_id: Option<String>,
    /// Most stages running at once.
    pub jobs: usize,
    pub selection: Selection,
    /// Rerun these stages even when cached; `["*"]` reruns all.
    pub force: Vec<String>,
    /// Draw progress bars (they are hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// `(i, n)`: run only shard `i` of the selected stage (one Argo task of a fan-out); a
    /// later run of the stage merges the shards.
    pub shard: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The stage ran in this run.
    Ran,
    /// Its outputs were reused: from an earlier run with the same cache key, or already
    /// committed in this run.
    Cached,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    /// `stage.output` it came from.
    pub from: String,
    pub digest: String,
}

/// What a stage committed: the `_stage.json` of its folder, and its entry in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: String,
    pub kind: String,
    pub cache_key: String,
    pub status: Status,
    /// The run whose work this is (differs from the current run on a cache hit).
    pub produced_by: String,
    pub inputs: BTreeMap<String, InputRecord>,
    pub outputs: BTreeMap<String, StoredOutput>,
    pub summary: Summary,
    pub started_at: String,
    pub duration_ms: u64,
}

/// The run manifest: what produced what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub applearner: String,
    pub run_id: String,
    pub pipeline: String,
    pub config: String,
    pub config_digest: String,
    pub overrides: Vec<String>,
    pub seed: u64,
    pub store: String,
    pub selection: Selection,
    pub started_at: String,
    pub finished_at: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Committed stages of this run, in pipeline order.
    pub stages: Vec<StageRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Cancelled,
}

pub(crate) fn missing_inputs_message(run_id: &str, missing: &[(String, String)], config: &str) -> String {
    let mut text = format!("run `{run_id}` lacks inputs:");
    for (consumer, producer) in missing {
        text.push_str(&format!(
            "\n  stage `{consumer}` reads the output of `{producer}`, which is not committed in this run"
        ));
    }
    let first = &missing[0].1;
    text.push_str(&format!(
        "\n  help: run it first (`applearner run {config} --run-id {run_id} --stage {first}`), or use `--until`"
    ));
    text
}

/// What happened to each stage of a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub manifest: Manifest,
}

impl RunReport {
    pub fn record(&self, stage: &str) -> Option<&StageRecord> {
        self.manifest.stages.iter().find(|r| r.stage == stage)
    }
}

fn record_path(run_id: &str, stage: &str) -> String {
    format!("{run_id}/{stage}/_stage.json")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn new_run_id() -> String {
    let time = chrono::Utc::now();
    let salt = blake3::hash(format!("{:?}{}", time, std::process::id()).as_bytes()).to_hex();
    format!("{}-{}", time.format("%Y%m%dt%H%M%S"), &salt[..6])
}

fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(['.', '_', '-'])
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn load_json<T: for<'de> Deserialize<'de>>(store: &Store, path: &str) -> Result<Option<T>, PipelineError> {
    match store.get_opt(path)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PipelineError::BadRecord { path: path.to_string(), message: e.to_string() }),
    }
}

fn put_json<T: Serialize>(store: &Store, path: &str, value: &T) -> Result<(), PipelineError> {
    let mut text = serde_json::to_vec_pretty(value).expect("records serialize");
    text.push(b'\n');
    store.put(path, Bytes::from(text))
}

/// Runs (part of) a pipeline. `config_text` is the config file's content, digested into the
/// manifest. `cancel` stops the run between units of work (Ctrl-C sets it).
pub fn run(
    pipeline: &Pipeline,
    config_text: &str,
    store: &Store,
    options: &RunOptions,
    cancel: &AtomicBool,
) -> Result<RunReport, PipelineError> {
    let selected = select(pipeline, options)?;
    let lock = Bytes::from(serde_saphyr::to_string(&pipeline.lock()).expect("the lock serializes to YAML"));
    let run_id = claim_run_id(store, options, &lock)?;
    let mut records = committed_inputs(pipeline, store, &run_id, &selected)?;

    let started_at = now();
    store.put(&format!("{run_id}/config.lock.yaml"), lock)?;
    tracing::info!(run_id, store = pipeline.redactor.redact(store.url()), "run started");
    let progress = MultiProgress::with_draw_target(if options.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let exec = Executor { pipeline, store, run_id: &run_id, progress: &progress, cancel };
    let error = exec.all(&selected, &mut records, options);
    let cancelled = error.is_none() && selected.iter().zip(&records).any(|(s, r)| *s && r.is_none());
    let status = match (&error, cancelled) {
        (Some(e), _) if e.is_cancellation() => RunStatus::Cancelled,
        (Some(_), _) => RunStatus::Failed,
        (None, true) => RunStatus::Cancelled,
        (None, false) => RunStatus::Succeeded,
    };
    let manifest = Manifest {
        applearner: VERSION.to_string(),
        run_id: run_id.clone(),
        pipeline: pipeline.name.clone(),
        config: pipeline.file.clone(),
        config_digest: digest(config_text.as_bytes()),
        overrides: pipeline.overrides.iter().map(|o| pipeline.redactor.redact(o)).collect(),
        seed: pipeline.seed,
        store: pipeline.redactor.redact(store.url()),
        selection: options.selection.clone(),
        started_at,
        finished_at: now(),
        status,
        error: error.as_ref().map(|e| pipeline.redactor.redact(&e.to_string())),
        stages: committed(pipeline, store, &run_id, records)?,
    };
    let manifest_json = pipeline.redactor.redact_json(&serde_json::to_value(&manifest).expect("manifests serialize"));
    put_json(store, &format!("{run_id}/manifest.json"), &manifest_json)?;
    match error {
        Some(e) => Err(e),
        None if cancelled => Err(PipelineError::Cancelled),
        None => Ok(RunReport { run_id, manifest }),
    }
}

/// The run's id: the one given, checked, or a new one claimed with a create-only put of
/// the lock, so two runs started at once never share a folder.
fn claim_run_id(store: &Store, options: &RunOptions, lock: &Bytes) -> Result<String, PipelineError> {
    match &options.run_id {
        Some(id) if !valid_run_id(id) => Err(PipelineError::BadRunId(id.clone())),
        Some(id) => Ok(id.clone()),
        None => loop {
            let id = new_run_id();
            if store.put_new(&format!("{id}/config.lock.yaml"), lock.clone())? {
                return Ok(id);
            }
        },
    }
}

/// Every stage committed in this run, including by earlier partial runs: what the manifest
/// covers.
fn committed(
    pipeline: &Pipeline,
    store: &Store,
    run_id: &str,
    mut records: Vec<Option<StageRecord>>,
) -> Result<Vec<StageRecord>, PipelineError> {
    let mut committed = Vec::new();
    for (j, spec) in pipeline.stages.iter().enumerate() {
        let rec = match records[j].take() {
            Some(r) => Some(r),
            None => load_json::<StageRecord>(store, &record_path(run_id, &spec.name))?,
        };
        committed.extend(rec);
    }
    Ok(committed)
}

/// Which stages the run executes, with the options checked against the pipeline.
fn select(pipeline: &Pipeline, options: &RunOptions) -> Result<Vec<bool>, PipelineError> {
    let stage_index = |name: &str| {
        pipeline.index_of(name).ok_or_else(|| PipelineError::UnknownStage {
            name: name.to_string(),
            suggestion: closest(name, pipeline.stages.iter().map(|s| s.name.as_str())).map(str::to_string),
        })
    };
    let n = pipeline.stages.len();
    let selected: Vec<bool> = match &options.selection {
        Selection::All => vec![true; n],
        Selection::Stage(name) => {
            let i = stage_index(name)?;
            (0..n).map(|j| j == i).collect()
        }
        Selection::Until(name) => {
            let mut sel = vec![false; n];
            sel[stage_index(name)?] = true;
            // Stages are in topological order: walk backwards marking what selected ones read.
            for j in (0..n).rev() {
                if sel[j] {
                    for &u in &pipeline.stages[j].upstream {
                        sel[u] = true;
                    }
                }
            }
            sel
        }
        Selection::From(name) => {
            let mut sel = vec![false; n];
            sel[stage_index(name)?] = true;
            for j in 0..n {
                if pipeline.stages[j].upstream.iter().any(|&u| sel[u]) {
                    sel[j] = true;
                }
            }
            sel
        }
    };
    if let Some(shard) = options.shard {
        check_shard(pipeline, &options.selection, shard, stage_index)?;
    }
    for name in &options.force {
        if name != "*" {
            stage_index(name)?;
        }
    }
    Ok(selected)
}

/// `--shard I/N` runs one stage that the config splits into `N` shards.
fn check_shard(
    pipeline: &Pipeline,
    selection: &Selection,
    (i, n): (u32, u32),
    stage_index: impl Fn(&str) -> Result<usize, PipelineError>,
) -> Result<(), PipelineError> {
    let bad = |message: String| Err(PipelineError::BadShard { shard: format!("{i}/{n}"), message });
    let Selection::Stage(name) = selection else {
        return bad("it runs one stage: give it with --stage NAME".into());
    };
    let configured = pipeline.stages[stage_index(name)?].shards;
    if configured != n || i >= n {
        return bad(format!(
            "stage `{name}` has `shards: {configured}` in the config; give --shard I/{configured} with I from 0 to {}",
            configured.saturating_sub(1)
        ));
    }
    Ok(())
}

/// The records of the stages the run reads but does not execute: they must already be
/// committed in it.
fn committed_inputs(
    pipeline: &Pipeline,
    store: &Store,
    run_id: &str,
    selected: &[bool],
) -> Result<Vec<Option<StageRecord>>, PipelineError> {
    let n = pipeline.stages.len();
    let mut records: Vec<Option<StageRecord>> = vec![None; n];
    let mut missing = Vec::new();
    let needed: BTreeSet<usize> = (0..n)
        .filter(|&j| selected[j])
        .flat_map(|j| pipeline.stages[j].upstream.clone())
        .filter(|&u| !selected[u])
        .collect();
    for u in needed {
        let name = &pipeline.stages[u].name;
        match load_json::<StageRecord>(store, &record_path(run_id, name))? {
            Some(rec) => records[u] = Some(rec),
            None => {
                for j in (0..n).filter(|&j| selected[j] && pipeline.stages[j].upstream.contains(&u)) {
                    missing.push((pipeline.stages[j].name.clone(), name.clone()));
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(PipelineError::MissingInputs {
            run_id: run_id.to_string(),
            config: pipeline.file.clone(),
            missing,
        });
    }
    Ok(records)
}

/// Manifests of every run in the store, oldest first.
pub fn list_runs(store: &Store) -> Result<Vec<Manifest>, PipelineError> {
    let mut manifests = Vec::new();
    for dir in store.list_dirs("")? {
        if !dir.starts_with(CACHE_DIR) {
            manifests.extend(load_json::<Manifest>(store, &format!("{dir}/manifest.json"))?);
        }
    }
    manifests.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(manifests)
}

/// A run's manifest.
pub fn load_manifest(store: &Store, run_id: &str) -> Result<Manifest, PipelineError> {
    let path = format!("{run_id}/manifest.json");
    load_json::<Manifest>(store, &path)?.ok_or(PipelineError::NotFound { path })
}

/// Checks every artifact that a run's manifest lists against its recorded digest; returns
/// how many were checked and what does not match.
pub fn verify(store: &Store, run_id: &str) -> Result<(usize, Vec<String>), PipelineError> {
    let manifest = load_manifest(store, run_id)?;
    let mut problems = Vec::new();
    let mut checked = 0;
    for out in manifest.stages.iter().flat_map(|s| s.outputs.values()) {
        checked += 1;
        match store.get_opt(&out.path)? {
            None => problems.push(format!("`{}` is missing", out.path)),
            Some(bytes) if digest(&bytes) != out.digest => {
                problems.push(format!("`{}` has digest {}; the manifest says {}", out.path, digest(&bytes), out.digest))
            }
            Some(_) => {}
        }
    }
    Ok((checked, problems))
}
