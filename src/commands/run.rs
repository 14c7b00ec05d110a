//! `applearner run`: a pipeline, or part of it, with Ctrl-C stopping it cleanly.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use applearner_pipeline::run::{self, RunReport};
use applearner_pipeline::{Pipeline, PipelineError, Registry, RunOptions, Selection, Store};

use super::load;
use crate::cli::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, Sets};

/// Which part of the pipeline, in which run (the command line's `run` options).
pub struct What {
    pub run_id: Option<String>,
    pub stage: Option<String>,
    pub until: Option<String>,
    pub from: Option<String>,
    pub force: Vec<String>,
    pub jobs: Option<usize>,
    pub shard: Option<(u32, u32)>,
    pub quiet: bool,
}

pub fn run(config: &str, sets: &Sets, what: What, registry: &Registry) -> anyhow::Result<ExitCode> {
    let (p, text) = match load(config, sets, registry)? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let selection = match (what.stage, what.until, what.from) {
        (Some(s), _, _) => Selection::Stage(s),
        (_, Some(s), _) => Selection::Until(s),
        (_, _, Some(s)) => Selection::From(s),
        _ => Selection::All,
    };
    let options = RunOptions {
        run_id: what.run_id,
        jobs: what.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        selection,
        force: what.force,
        progress: !what.quiet && std::io::stderr().is_terminal(),
        shard: what.shard,
    };
    let store = Store::open(&p.store).map_err(|e| anyhow::anyhow!(p.redactor.redact(&e.to_string())))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let on_signal = cancel.clone();
    store.block_on(async {
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping after the running stages' current step");
                on_signal.store(true, Ordering::Relaxed);
            }
        });
    });
    Ok(match run::run(&p, &text, &store, &options, &cancel) {
        Ok(report) => {
            print_report(&p, &report);
            // The plan's table closes a run that made one; a stage run alone prints only itself.
            if !what.quiet
                && let Err(e) = super::plan::after_run(&store, &report.manifest, 15)
            {
                eprintln!("warning: the plan's summary could not be printed: {e:#}");
            }
            ExitCode::SUCCESS
        }
        Err(
            e @ (PipelineError::UnknownStage { .. } | PipelineError::BadRunId(_) | PipelineError::MissingInputs { .. }),
        ) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) if e.is_cancellation() => ExitCode::from(EXIT_INTERRUPTED),
        Err(e) => {
            // The message already carries its cause.
            eprintln!("error: {}", p.redactor.redact(&e.to_string()));
            ExitCode::from(EXIT_FAILED)
        }
    })
}

fn print_report(p: &Pipeline, report: &RunReport) {
    println!("run {} succeeded", report.run_id);
    for r in &report.manifest.stages {
        let how = match r.status {
            run::Status::Ran => format!("ran in {:.1}s", r.duration_ms as f64 / 1000.0),
            run::Status::Cached if r.produced_by == report.run_id => "up to date".to_string(),
            run::Status::Cached => format!("cached (from run {})", r.produced_by),
        };
        println!("  {:<20} {how}", r.stage);
    }
    println!("manifest: {}/{}/manifest.json", p.redactor.redact(&p.store), report.run_id);
}
