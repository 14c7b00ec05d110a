//! `applearner plan RUN`: a run's recommendations (what is allocated now → what the plan
//! sets, the change in reserved capacity and its monthly cost, the flags), as a table for a
//! person or as JSON, CSV or YAML for machines. `applearner run` prints the same table when
//! its pipeline has a plan.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use applearner_contracts::tables::recommendations as rt;
use applearner_pipeline::Store;
use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::context::read_parquet;
use applearner_pipeline::run::{Manifest, StageRecord, load_manifest};
use serde_json::{Map, Value};

use crate::cli::PlanFormat;

const PLAN_KIND: &str = "plan.resources";

pub fn show(
    run_id: &str,
    store: &str,
    format: PlanFormat,
    top: Option<usize>,
    to: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let store = Store::open(store)?;
    let manifest = load_manifest(&store, run_id)?;
    let Some(record) = plan_record(&manifest) else {
        anyhow::bail!("run {run_id} has no {PLAN_KIND} stage; its pipeline makes no plan");
    };
    let text = render(&store, &manifest, record, format, top)?;
    match to {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {path}"))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn render(
    store: &Store,
    manifest: &Manifest,
    record: &StageRecord,
    format: PlanFormat,
    top: Option<usize>,
) -> anyhow::Result<String> {
    let rows = || read_rows(store, record);
    Ok(match format {
        PlanFormat::Patches => {
            let path = &record.outputs.get("patches.yaml").context("the plan stage wrote no patches.yaml")?.path;
            String::from_utf8(store.get(path)?.to_vec())?
        }
        PlanFormat::Table => table(manifest, record, &rows()?, top, colours()),
        PlanFormat::Json => serde_json::to_string_pretty(&rows()?)? + "\n",
        PlanFormat::Yaml => serde_saphyr::to_string(&rows()?)?,
        PlanFormat::Csv => {
            let batches = batches(store, record)?;
            let batch = applearner_pipeline::arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
            String::from_utf8(applearner_train::predict::to_csv(&batch).map_err(super::boxed)?)?
        }
    })
}

/// The table `applearner run` ends with, when its pipeline has a plan (its top `top` rows).
pub fn after_run(store: &Store, manifest: &Manifest, top: usize) -> anyhow::Result<()> {
    let Some(record) = plan_record(manifest) else { return Ok(()) };
    let rows = read_rows(store, record)?;
    print!("{}", table(manifest, record, &rows, Some(top), colours()));
    Ok(())
}

fn plan_record(manifest: &Manifest) -> Option<&StageRecord> {
    manifest.stages.iter().find(|s| s.kind == PLAN_KIND && s.outputs.contains_key(rt::NAME))
}

fn batches(store: &Store, record: &StageRecord) -> anyhow::Result<Vec<RecordBatch>> {
    let path = &record.outputs[rt::NAME].path;
    let batches = read_parquet(path, store.get(path)?).with_context(|| format!("cannot read `{path}`"))?;
    anyhow::ensure!(!batches.is_empty(), "`{path}` holds no workloads");
    Ok(batches)
}

fn read_rows(store: &Store, record: &StageRecord) -> anyhow::Result<Vec<Map<String, Value>>> {
    Ok(batches(store, record)?.iter().flat_map(applearner_train::predict::rows).collect())
}

/// ANSI colours for a person at a terminal; plain text in pipes, logs and with `NO_COLOR`.
fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn number(row: &Map<String, Value>, column: &str) -> Option<f64> {
    row.get(column).and_then(Value::as_f64)
}

/// `250m`, `2`, `1.5` cores.
fn cores(v: f64) -> String {
    if v < 1.0 { format!("{}m", (v * 1000.0).round()) } else { format!("{}", (v * 100.0).round() / 100.0) }
}

/// `512Mi`, `1.5Gi`, `2Ti`.
fn bytes(v: f64) -> String {
    let mib = v / (1u64 << 20) as f64;
    match mib {
        m if m < 1024.0 => format!("{}Mi", m.round()),
        m if m < 1024.0 * 1024.0 => format!("{}Gi", (m / 1024.0 * 10.0).round() / 10.0),
        m => format!("{}Ti", (m / 1024.0 / 1024.0 * 10.0).round() / 10.0),
    }
}

/// `current → planned` for one line: `?` where nothing is known, `kept` where the plan sets
/// no such line (its patch leaves the current one as it is).
fn change(row: &Map<String, Value>, line: &str, format: fn(f64) -> String) -> String {
    let unit = if line.starts_with("cpu") { "cores" } else { "bytes" };
    let value = |prefix: &str| number(row, &format!("{prefix}{line}_{unit}"));
    let (current, planned) = (value(rt::CURRENT), value(rt::PLANNED));
    let planned = match (current, planned) {
        (_, Some(p)) => format(p),
        (Some(_), None) => "kept".into(),
        (None, None) => "?".into(),
    };
    format!("{} → {planned}", current.map_or("?".to_string(), format))
}

/// `+1.25`, `-3.5`: a change with its sign, coloured green when capacity is given back.
fn signed(v: Option<f64>, decimals: usize, colour: bool) -> String {
    let Some(v) = v else { return String::new() };
    let text = format!("{v:+.decimals$}");
    match colour {
        true if v < 0.0 => format!("\x1b[32m{text}\x1b[0m"),
        true if v > 0.0 => format!("\x1b[31m{text}\x1b[0m"),
        _ => text,
    }
}

/// The recommendations as a table a person reads: one row per workload, largest cost
/// change first, then the totals and what the numbers mean.
fn table(
    manifest: &Manifest,
    record: &StageRecord,
    rows: &[Map<String, Value>],
    top: Option<usize>,
    colour: bool,
) -> String {
    let summary = &record.summary;
    let with = summary.get("workloads_with_allocation").and_then(Value::as_u64).unwrap_or(0);
    let mut out = format!("\nplan of run {} ({}): {} workloads", manifest.run_id, manifest.pipeline, rows.len());
    if with == 0 {
        out.push_str(
            "\nno allocation in the data (kube_pod_container_resource_requests/limits were not ingested): \
             the plan's values are shown without what they save\n",
        );
    } else {
        out.push_str(&format!(", {with} with an allocation\n"));
    }
    let header = [
        "workload",
        "pods",
        "cpu request",
        "cpu limit",
        "memory request",
        "memory limit",
        "Δ cores",
        "Δ GiB",
        "Δ $/month",
        "flags",
    ];
    let shown = top.unwrap_or(rows.len()).min(rows.len());
    let mut cells: Vec<Vec<String>> = vec![header.map(str::to_string).to_vec()];
    for row in &rows[..shown] {
        let key = row.get(rt::KEY).and_then(Value::as_str).unwrap_or_default();
        let kind = if row.get(rt::KIND).and_then(Value::as_str) == Some("node") { " (node)" } else { "" };
        let flags = row.get(rt::FLAGS).and_then(Value::as_str).unwrap_or_default().replace(',', ", ");
        cells.push(vec![
            format!("{key}{kind}"),
            // One pod's values; the Δ columns are over these replicas.
            row.get(rt::REPLICAS).and_then(Value::as_u64).map_or("?".into(), |n| n.to_string()),
            change(row, "cpu_request", cores),
            change(row, "cpu_limit", cores),
            change(row, "memory_request", bytes),
            change(row, "memory_limit", bytes),
            signed(number(row, rt::CPU_CHANGE_CORES), 2, colour),
            signed(number(row, rt::MEMORY_CHANGE_GIB), 2, colour),
            signed(number(row, rt::COST_CHANGE_PER_MONTH), 2, colour),
            if colour && !flags.is_empty() { format!("\x1b[33m{flags}\x1b[0m") } else { flags },
        ]);
    }
    // No CPU limit now or planned (the usual case): no column for it.
    if cells[1..].iter().all(|r| r[3] == "? → ?") {
        cells.iter_mut().for_each(|r| drop(r.remove(3)));
    }
    out.push_str(&aligned(&cells));
    if shown < rows.len() {
        out.push_str(&format!(
            "… and {} more: applearner plan {} (-o json|csv|yaml)\n",
            rows.len() - shown,
            manifest.run_id
        ));
    }
    if with > 0 {
        out.push_str(&totals(summary, with, colour));
    }
    out
}

/// The plan's totals over the workloads with an allocation.
fn totals(summary: &Map<String, Value>, with: u64, colour: bool) -> String {
    let n = |name: &str| summary.get(name).and_then(Value::as_f64).unwrap_or(f64::NAN);
    format!(
        "total over the {with} with an allocation: cpu requests {:.2} → {:.2} cores, memory requests {:.1} → {:.1} GiB, {} per month\n",
        n("current_cpu_request_cores"),
        n("planned_cpu_request_cores"),
        n("current_memory_request_gib"),
        n("planned_memory_request_gib"),
        signed(Some(n("cost_change_per_month")), 2, colour),
    )
}

/// Columns padded to their widest cell (ANSI colour codes take no room).
fn aligned(cells: &[Vec<String>]) -> String {
    let visible = |s: &str| {
        let mut n = 0;
        let mut escape = false;
        for c in s.chars() {
            match c {
                '\x1b' => escape = true,
                'm' if escape => escape = false,
                _ if !escape => n += 1,
                _ => {}
            }
        }
        n
    };
    let widths: Vec<usize> =
        (0..cells[0].len()).map(|c| cells.iter().map(|r| visible(&r[c])).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in cells {
        let padded: Vec<String> =
            row.iter().zip(&widths).map(|(cell, w)| format!("{cell}{}", " ".repeat(w - visible(cell)))).collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_take_no_room_and_plain_text_has_none() {
        let cells = vec![
            vec!["a".to_string(), signed(Some(-1.5), 2, true), "x".into()],
            vec!["bbb".to_string(), signed(Some(2.0), 2, false), "y".into()],
        ];
        let text = aligned(&cells);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "a    \x1b[32m-1.50\x1b[0m  x");
        assert_eq!(lines[1], "bbb  +2.00  y");
        assert_eq!(signed(None, 2, true), "");
    }

    #[test]
    fn a_line_the_plan_does_not_set_is_kept_and_an_unknown_one_is_a_question_mark() {
        let row: Map<String, Value> = serde_json::from_str(
            r#"{"current_cpu_limit_cores": 2.0, "planned_cpu_limit_cores": null, "planned_cpu_request_cores": 0.25}"#,
        )
        .unwrap();
        assert_eq!(change(&row, "cpu_limit", cores), "2 → kept");
        assert_eq!(change(&row, "cpu_request", cores), "? → 250m");
        assert_eq!(change(&row, "memory_limit", bytes), "? → ?");
        assert_eq!(
            (bytes(1.5 * (1u64 << 30) as f64), bytes(64.0 * (1u64 << 20) as f64)),
            ("1.5Gi".into(), "64Mi".into())
        );
    }
}
