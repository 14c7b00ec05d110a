//! Executing a run's stages: in parallel as their inputs commit, each leased, cached,
//! sharded or run, then committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Instant;

use indicatif::MultiProgress;

use super::*;
use crate::context::{StageContext, StoredOutput};
use crate::lease;
use crate::merge;
use crate::queue::ReadyQueue;
use crate::stage::{BoxError, Summary};

/// Runs the stages of one run of a pipeline.
pub(super) struct Executor<'a> {
    pub(super) pipeline: &'a Pipeline,
    pub(super) store: &'a Store,
    pub(super) run_id: &'a str,
    pub(super) progress: &'a MultiProgress,
    pub(super) cancel: &'a AtomicBool,
}

impl<'a> Executor<'a> {
    /// Runs the selected stages, at most `options.jobs` at once, each as soon as its inputs
    /// are committed; fills `records` and returns the first error. After an error or a
    /// cancellation nothing new starts, and running stages stop at their next check.
    pub(super) fn all(
        &self,
        selected: &[bool],
        records: &mut [Option<StageRecord>],
        options: &RunOptions,
    ) -> Option<PipelineError> {
        let stages = &self.pipeline.stages;
        let mut queue = ReadyQueue::new(
            stages.iter().map(|s| s.upstream.clone()).collect(),
            records.iter().map(Option::is_some).collect(),
        );
        (0..stages.len()).filter(|&j| selected[j]).for_each(|j| queue.enqueue(j));
        let forced = |name: &str| options.force.iter().any(|f| f == "*" || f == name);
        let mut first_error = None;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(usize, Result<StageRecord, PipelineError>)>();
            let mut running = 0;
            loop {
                let stop = self.cancel.load(Ordering::Relaxed) || first_error.is_some();
                while !stop && running < options.jobs.max(1) {
                    let Some(j) = queue.dequeue() else { break };
                    running += 1;
                    let upstream: Vec<StageRecord> =
                        stages[j].upstream.iter().map(|&u| records[u].clone().expect("inputs are done")).collect();
                    let (tx, force) = (tx.clone(), forced(&stages[j].name));
                    scope.spawn(move || {
                        let _ = tx.send((j, self.guarded(j, || self.stage(j, &upstream, force, options.shard))));
                    });
                }
                if running == 0 {
                    break;
                }
                let (j, result) = rx.recv().expect("a worker always reports");
                running -= 1;
                match result {
                    Ok(record) => {
                        records[j] = Some(record);
                        queue.finish(j);
                    }
                    Err(e) => {
                        // The error itself is returned (and printed once by the caller).
                        tracing::error!(stage = stages[j].name, "stage failed; stopping the run");
                        first_error.get_or_insert(e);
                        // Let running stages stop early; nothing new starts.
                        self.cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        first_error
    }

    /// One stage, a panic in it turned into its failure rather than a run waiting forever.
    /// A stage that stops while the run is being cancelled was cancelled, whatever error its
    /// own check returned (`PipelineError::Cancelled`, a closed queue, a dropped request).
    fn guarded(
        &self,
        j: usize,
        stage: impl FnOnce() -> Result<StageRecord, PipelineError>,
    ) -> Result<StageRecord, PipelineError> {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(stage));
        release_freed_memory();
        let result = result.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(PipelineError::Stage {
                stage: self.pipeline.stages[j].name.clone(),
                source: format!("panicked (a bug in the stage kind; please report it): {what}").into(),
            })
        });
        match result {
            Err(PipelineError::Stage { .. }) if self.cancel.load(Ordering::Relaxed) => Err(PipelineError::Cancelled),
            other => other,
        }
    }

    fn stage(
        &self,
        j: usize,
        upstream: &[StageRecord],
        force: bool,
        shard: Option<(u32, u32)>,
    ) -> Result<StageRecord, PipelineError> {
        let spec = &self.pipeline.stages[j];
        let fail = |source: BoxError| PipelineError::Stage { stage: spec.name.clone(), source };
        let (inputs, input_records) = self.inputs(spec, upstream)?;
        let key = self.cache_key(spec, &input_records).map_err(fail)?;

        if let Some((i, n)) = shard {
            return self.shard(spec, &key, (i, n), &inputs, &input_records, force);
        }
        // One process at a time per stage of a run, and per computation: a second run of
        // the same stage (or of the same work in another run) waits, then reuses the result.
        let _leases = self.leases(
            &spec.name,
            &[format!("{}/{}/_lease", self.run_id, spec.name), format!("{CACHE_DIR}/{key}.lease")],
        )?;
        let rec_path = record_path(self.run_id, &spec.name);
        if !force && let Some(rec) = self.reuse(&spec.name, &key, &rec_path)? {
            tracing::info!(stage = spec.name, from_run = rec.produced_by, "cached");
            return Ok(rec);
        }

        // Uncommit first: from here until the new record is written the stage is not done.
        self.store.delete(&rec_path)?;
        let started_at = now();
        let clock = Instant::now();
        let ctx = self.context(
            spec,
            format!("{}/{}", self.run_id, spec.name),
            format!("{CACHE_DIR}/{key}.partial"),
            inputs.clone(),
            None,
        );
        let summary = self.execute(spec, &key, &ctx, (&inputs, &input_records), force)?;
        let outputs = ctx.written.into_inner().unwrap();
        if let Some(o) = spec.outputs.iter().find(|o| !outputs.contains_key(&o.name)) {
            return Err(PipelineError::OutputNotWritten { stage: spec.name.clone(), output: o.name.clone() });
        }
        let record = StageRecord {
            stage: spec.name.clone(),
            kind: spec.kind.to_string(),
            cache_key: key.clone(),
            status: Status::Ran,
            produced_by: self.run_id.to_string(),
            inputs: input_records,
            outputs,
            summary,
            started_at,
            duration_ms: clock.elapsed().as_millis() as u64,
        };
        put_json(self.store, &rec_path, &record)?;
        put_json(self.store, &format!("{CACHE_DIR}/{key}.json"), &record)?;
        tracing::info!(stage = spec.name, ms = record.duration_ms, "committed");
        Ok(record)
    }

    /// Runs the stage through `ctx`, or each of its shards and then their merge.
    fn execute(
        &self,
        spec: &'a StageSpec,
        key: &str,
        ctx: &StageContext,
        (inputs, input_records): (&BTreeMap<String, StoredOutput>, &BTreeMap<String, InputRecord>),
        force: bool,
    ) -> Result<Summary, PipelineError> {
        let fail = |source: BoxError| PipelineError::Stage { stage: spec.name.clone(), source };
        if spec.shards <= 1 {
            tracing::info!(stage = spec.name, kind = spec.kind, "running");
            return spec.stage.run(ctx).map_err(fail);
        }
        let shards = (0..spec.shards)
            .map(|i| self.shard(spec, key, (i, spec.shards), inputs, input_records, force))
            .collect::<Result<Vec<_>, _>>()?;
        tracing::info!(stage = spec.name, shards = spec.shards, "merging");
        let order = spec.stage.shard_order().expect("the config admits only stages that shard");
        merge::merge(&order, &spec.stage.shard_row_columns(), ctx, &shards).map_err(fail)
    }

    /// What the stage reads: each input slot's stored output, and how the record names it.
    #[allow(clippy::type_complexity)]
    fn inputs(
        &self,
        spec: &StageSpec,
        upstream: &[StageRecord],
    ) -> Result<(BTreeMap<String, StoredOutput>, BTreeMap<String, InputRecord>), PipelineError> {
        let (mut inputs, mut records) = (BTreeMap::new(), BTreeMap::new());
        for input in &spec.inputs {
            let rec = upstream.iter().find(|r| r.stage == input.stage).expect("upstream records are passed in");
            let stored = rec.outputs.get(&input.output).cloned().ok_or_else(|| PipelineError::BadRecord {
                path: record_path(self.run_id, &input.stage),
                message: format!("it has no output `{}`", input.output),
            })?;
            let from = format!("{}.{}", input.stage, input.output);
            records.insert(input.slot.clone(), InputRecord { from, digest: stored.digest.clone() });
            inputs.insert(input.slot.clone(), stored);
        }
        Ok((inputs, records))
    }

    /// The stage's cache key: this version, its kind, parameters and the run's seed, its
    /// inputs' digests, and whatever else the stage reads (its fingerprint).
    fn cache_key(&self, spec: &StageSpec, inputs: &BTreeMap<String, InputRecord>) -> Result<String, BoxError> {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"applearner stage cache v1\0");
        for part in [VERSION, spec.kind, &spec.params.to_string(), &self.pipeline.seed.to_string()] {
            hasher.update(part.as_bytes());
            hasher.update(b"\0");
        }
        for (slot, input) in inputs {
            hasher.update(format!("{slot}={}\0", input.digest).as_bytes());
        }
        spec.stage.fingerprint(self.store, &mut hasher)?;
        Ok(hasher.finalize().to_hex().to_string())
    }

    fn context(
        &self,
        spec: &'a StageSpec,
        dir: String,
        scratch: String,
        inputs: BTreeMap<String, StoredOutput>,
        shard: Option<(u32, u32)>,
    ) -> StageContext<'a> {
        StageContext {
            stage: &spec.name,
            run_id: self.run_id,
            seed: self.pipeline.seed,
            store: self.store,
            inputs,
            outputs: spec.outputs.clone(),
            dir,
            scratch,
            written: Mutex::new(BTreeMap::new()),
            progress: self.progress,
            cancel: self.cancel,
            shard,
        }
    }

    fn leases(&self, stage: &str, paths: &[String]) -> Result<Vec<lease::Lease>, PipelineError> {
        paths
            .iter()
            .map(|path| {
                lease::acquire(self.store, path, self.cancel, |holder| {
                    tracing::info!(stage, holder, "waiting for another process running it");
                })
            })
            .collect::<Result<Vec<_>, _>>()
    }

    /// Runs shard `i` of `n` of a stage into `<run>/<stage>/shards/<i>-of-<n>/`, or reuses
    /// it when it is committed there with the same cache key. Shards are not cached across
    /// runs: the merged result is.
    fn shard(
        &self,
        spec: &'a StageSpec,
        key: &str,
        (i, n): (u32, u32),
        inputs: &BTreeMap<String, StoredOutput>,
        input_records: &BTreeMap<String, InputRecord>,
        force: bool,
    ) -> Result<StageRecord, PipelineError> {
        let dir = format!("{}/{}/shards/{i}-of-{n}", self.run_id, spec.name);
        let _leases =
            self.leases(&spec.name, &[format!("{dir}/_lease"), format!("{CACHE_DIR}/{key}-{i}-of-{n}.lease")])?;
        let rec_path = format!("{dir}/_stage.json");
        if !force
            && let Some(mut rec) = load_json::<StageRecord>(self.store, &rec_path)?
            && rec.cache_key == key
            && self.all_exist(&rec)?
        {
            rec.status = Status::Cached;
            return Ok(rec);
        }
        self.store.delete(&rec_path)?;
        let (started_at, clock) = (now(), Instant::now());
        tracing::info!(stage = spec.name, shard = format!("{i}/{n}"), "running");
        let ctx =
            self.context(spec, dir, format!("{CACHE_DIR}/{key}.partial/{i}-of-{n}"), inputs.clone(), Some((i, n)));
        let summary = spec
            .stage
            .run(&ctx)
            .map_err(|source| PipelineError::Stage { stage: format!("{} shard {i}/{n}", spec.name), source })?;
        let outputs = ctx.written.into_inner().unwrap();
        if let Some(o) = spec.outputs.iter().find(|o| !outputs.contains_key(&o.name)) {
            return Err(PipelineError::OutputNotWritten { stage: spec.name.clone(), output: o.name.clone() });
        }
        let record = StageRecord {
            stage: format!("{} shard {i}/{n}", spec.name),
            kind: spec.kind.to_string(),
            cache_key: key.to_string(),
            status: Status::Ran,
            produced_by: self.run_id.to_string(),
            inputs: input_records.clone(),
            outputs,
            summary,
            started_at,
            duration_ms: clock.elapsed().as_millis() as u64,
        };
        put_json(self.store, &rec_path, &record)?;
        Ok(record)
    }

    /// The committed record of this run if it is up to date, or else a copy of a cached
    /// result from another run with the same key; `None` means the stage must run.
    fn reuse(&self, stage: &str, key: &str, rec_path: &str) -> Result<Option<StageRecord>, PipelineError> {
        if let Some(mut rec) = load_json::<StageRecord>(self.store, rec_path)?
            && rec.cache_key == key
            && self.all_exist(&rec)?
        {
            rec.status = Status::Cached;
            return Ok(Some(rec));
        }
        let Some(cached) = load_json::<StageRecord>(self.store, &format!("{CACHE_DIR}/{key}.json"))? else {
            return Ok(None);
        };
        if !self.all_exist(&cached)? {
            return Ok(None); // its run was deleted
        }
        self.store.delete(rec_path)?;
        let dir = format!("{}/{stage}", self.run_id);
        let mut outputs = BTreeMap::new();
        for (name, out) in &cached.outputs {
            let file = out.path.rsplit('/').next().expect("paths have a file name");
            let path = format!("{dir}/{file}");
            if path != out.path {
                self.store.copy(&out.path, &path)?;
            }
            outputs.insert(name.clone(), StoredOutput { path, ..out.clone() });
        }
        let record = StageRecord { stage: stage.to_string(), status: Status::Cached, outputs, ..cached };
        put_json(self.store, rec_path, &record)?;
        Ok(Some(record))
    }

    fn all_exist(&self, rec: &StageRecord) -> Result<bool, PipelineError> {
        for out in rec.outputs.values() {
            if !self.store.exists(&out.path)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Hands back to the system the memory a finished stage freed. glibc keeps it in the arena of
/// the thread that freed it, where the next stage's threads, allocating in another arena,
/// cannot reuse it: in one process the backtest's and the plan's peaks added up
/// (BENCHMARKS.md, "Freed memory handed back between stages").
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
