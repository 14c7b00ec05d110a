//! `applearner plan RUN`: a run's recommendations (what is allocated now → what the plan
//! sets, the change in reserved capacity and its monthly cost, the flags), as a table for a
//! person or as JSON, CSV or YAML for machines. `applearner run` prints the same table when
//! its pipeline has a plan.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use applearner_contracts::summaries::{PlanSavings, PlanSummary};
use applearner_contracts::tables::recommendations as rt;
use applearner_contracts::{Line, Resource};
use applearner_pipeline::Store;
use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::context::read_parquet;
use applearner_pipeline::run::{Manifest, StageRecord, load_manifest};
use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
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
        PlanFormat::Table => table(manifest, record, &rows()?, top, colours())?,
        PlanFormat::Json => serde_json::to_string_pretty(&rows()?)? + "\n",
        PlanFormat::Yaml => serde_saphyr::to_string(&rows()?)?,
        PlanFormat::Csv => {
            let batches = batches(store, record)?;
            let batch = applearner_pipeline::arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
            String::from_utf8(applearner_pipeline::encode::to_csv(&batch).map_err(super::boxed)?)?
        }
    })
}

/// The table `applearner run` ends with, when its pipeline has a plan (its top `top` rows).
pub fn after_run(store: &Store, manifest: &Manifest, top: usize) -> anyhow::Result<()> {
    let Some(record) = plan_record(manifest) else { return Ok(()) };
    let rows = read_rows(store, record)?;
    print!("{}", table(manifest, record, &rows, Some(top), colours())?);
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
    let mut rows = Vec::new();
    for batch in batches(store, record)? {
        rows.extend(applearner_pipeline::encode::rows(&batch).map_err(super::boxed)?);
    }
    Ok(rows)
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
fn change(row: &Map<String, Value>, line: Line, format: fn(f64) -> String) -> String {
    let unit = if line.resource() == Resource::Cpu { "cores" } else { "bytes" };
    let value = |prefix: &str| number(row, &format!("{prefix}{}_{unit}", line.name()));
    let (current, planned) = (value(rt::CURRENT), value(rt::PLANNED));
    let planned = match (current, planned) {
        (_, Some(p)) => format(p),
        (Some(_), None) => "kept".into(),
        (None, None) => "?".into(),
    };
    format!("{} → {planned}", current.map_or("?".to_string(), format))
}

/// `+1.25`, `-3.5`: a change with its sign, green where capacity is given back, red where
/// it is taken (shown only where the table is styled).
fn signed(v: Option<f64>, decimals: usize) -> Cell {
    let Some(v) = v else { return Cell::new("") };
    let cell = Cell::new(format!("{v:+.decimals$}"));
    match v {
        v if v < 0.0 => cell.fg(Color::Green),
        v if v > 0.0 => cell.fg(Color::Red),
        _ => cell,
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
) -> anyhow::Result<String> {
    let summary = PlanSummary::read(&record.summary).with_context(|| {
        format!("run {}: the plan stage's summary (run it again with --force=plan)", manifest.run_id)
    })?;
    let with = summary.savings.workloads_with_allocation;
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
    let mut cells: Vec<Vec<Cell>> = rows[..shown].iter().map(cells_of).collect();
    let mut header = header.to_vec();
    // No CPU limit now or planned (the usual case): no column for it.
    if cells.iter().all(|r| r[3].content() == "? → ?") {
        header.remove(3);
        cells.iter_mut().for_each(|r| drop(r.remove(3)));
    }
    out.push_str(&aligned(header, cells, colour));
    if shown < rows.len() {
        out.push_str(&format!(
            "… and {} more: applearner plan {} (-o json|csv|yaml)\n",
            rows.len() - shown,
            manifest.run_id
        ));
    }
    if with > 0 {
        out.push_str(&totals(&summary.savings));
    }
    Ok(out)
}

/// One workload's row: its pods, each line's change, what it saves and its flags.
fn cells_of(row: &Map<String, Value>) -> Vec<Cell> {
    let key = row.get(rt::KEY).and_then(Value::as_str).unwrap_or_default();
    let kind = if row.get(rt::KIND).and_then(Value::as_str) == Some("node") { " (node)" } else { "" };
    let flags = row.get(rt::FLAGS).and_then(Value::as_str).unwrap_or_default().replace(',', ", ");
    vec![
        Cell::new(format!("{key}{kind}")),
        // One pod's values; the Δ columns are over these replicas.
        Cell::new(row.get(rt::REPLICAS).and_then(Value::as_u64).map_or("?".into(), |n| n.to_string())),
        Cell::new(change(row, Line::CpuRequest, cores)),
        Cell::new(change(row, Line::CpuLimit, cores)),
        Cell::new(change(row, Line::MemoryRequest, bytes)),
        Cell::new(change(row, Line::MemoryLimit, bytes)),
        signed(number(row, rt::CPU_CHANGE_CORES), 2),
        signed(number(row, rt::MEMORY_CHANGE_GIB), 2),
        signed(number(row, rt::COST_CHANGE_PER_MONTH), 2),
        Cell::new(flags).fg(Color::Yellow),
    ]
}

/// The plan's totals over the workloads with an allocation.
fn totals(s: &PlanSavings) -> String {
    format!(
        "total over the {} with an allocation: cpu requests {:.2} → {:.2} cores, memory requests {:.1} → {:.1} GiB, {:+.2} per month\n",
        s.workloads_with_allocation,
        s.current_cpu_request_cores,
        s.planned_cpu_request_cores,
        s.current_memory_request_gib,
        s.planned_memory_request_gib,
        s.cost_change_per_month,
    )
}

/// The rows under their header, in columns two spaces apart, without borders; styled
/// (colours) only where `colour`.
fn aligned(header: Vec<&str>, rows: Vec<Vec<Cell>>, colour: bool) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled).set_header(header);
    table.add_rows(rows);
    if colour {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.lines().map(|l| l.trim_end().to_string() + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_plain_text_has_no_colours() {
        let rows = || {
            vec![
                vec![Cell::new("a"), signed(Some(-1.5), 2), Cell::new("x")],
                vec![Cell::new("bbb"), signed(Some(2.0), 2), Cell::new("y")],
            ]
        };
        let text = aligned(vec!["k", "Δ", "f"], rows(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["k    Δ      f", "a    -1.50  x", "bbb  +2.00  y"]);
        let styled = aligned(vec!["k", "Δ", "f"], rows(), true);
        assert!(styled.contains("\x1b[") && styled.contains("-1.50"), "{styled:?}");
        assert_eq!(signed(None, 2).content(), "");
    }

    #[test]
    fn a_line_the_plan_does_not_set_is_kept_and_an_unknown_one_is_a_question_mark() {
        let row: Map<String, Value> = serde_json::from_str(
            r#"{"current_cpu_limit_cores": 2.0, "planned_cpu_limit_cores": null, "planned_cpu_request_cores": 0.25}"#,
        )
        .unwrap();
        assert_eq!(change(&row, Line::CpuLimit, cores), "2 → kept");
        assert_eq!(change(&row, Line::CpuRequest, cores), "? → 250m");
        assert_eq!(change(&row, Line::MemoryLimit, bytes), "? → ?");
        assert_eq!(
            (bytes(1.5 * (1u64 << 30) as f64), bytes(64.0 * (1u64 << 20) as f64)),
            ("1.5Gi".into(), "64Mi".into())
        );
    }
}
