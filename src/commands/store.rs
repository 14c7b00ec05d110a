//! Commands that read a store: `show` a table, list the `runs`, `verify` a run's artifacts.

use std::process::ExitCode;

use applearner_pipeline::Store;
use applearner_pipeline::context::read_parquet;
use applearner_pipeline::run::{self, RunStatus};

pub fn show(path: &str, store: &str, rows: usize) -> anyhow::Result<ExitCode> {
    let store = Store::open(store)?;
    let bytes = store.get(path)?;
    let batches = read_parquet(path, bytes)?;
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    if let Some(first) = batches.first() {
        println!("{path}: {total} rows");
        for field in first.schema().fields() {
            let nullable = if field.is_nullable() { " (nullable)" } else { "" };
            println!("  {}: {}{nullable}", field.name(), field.data_type());
        }
    }
    let mut head = Vec::new();
    let mut left = rows;
    for b in &batches {
        if left == 0 {
            break;
        }
        let take = left.min(b.num_rows());
        head.push(b.slice(0, take));
        left -= take;
    }
    println!("{}", applearner_pipeline::arrow::util::pretty::pretty_format_batches(&head)?);
    Ok(ExitCode::SUCCESS)
}

pub fn runs(store: &str) -> anyhow::Result<ExitCode> {
    let store = Store::open(store)?;
    let runs = run::list_runs(&store)?;
    if runs.is_empty() {
        println!("no runs in {}", store.url());
    }
    for m in runs {
        let status = match m.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        };
        let ran = m.stages.iter().filter(|s| s.status == run::Status::Ran).count();
        println!(
            "{}  {:<10} {:<20} {} stages ({} ran, {} cached)  {}",
            m.run_id,
            status,
            m.pipeline,
            m.stages.len(),
            ran,
            m.stages.len() - ran,
            m.started_at
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify(run_id: &str, store: &str) -> anyhow::Result<ExitCode> {
    let store = Store::open(store)?;
    let (checked, problems) = run::verify(&store, run_id)?;
    for p in &problems {
        eprintln!("error: {p}");
    }
    if !problems.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    println!("run {run_id}: {checked} artifacts match their manifest");
    Ok(ExitCode::SUCCESS)
}
