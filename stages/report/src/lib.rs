//! `report.html`: what a run found, for people (one self-contained HTML page: inline CSS and
//! SVG charts, no scripts, nothing fetched) and for machines and diffs (`report.md`,
//! `metrics.json`).

mod charts;
mod error;
mod html;
mod leaderboard;
mod plans;
mod series_charts;

pub use error::ReportError;

use std::collections::BTreeMap;
use std::fmt::Write;

use applearner_contracts::card::{CARD_FILE, Card};
use applearner_contracts::summaries::{BacktestSummary, CleanSummary, PlanSummary};
use applearner_contracts::tables::{forecasts, plan_risk, resampled as table, scores};
use applearner_contracts::tables::{plan as pt, plan_backtest as pb, plan_comparison as pc, recommendations as rt};
use applearner_contracts::{Method, Part, Resource};
use applearner_pipeline::arrow::array::{AsArray, RecordBatch};
use applearner_pipeline::arrow::datatypes::DataType;
use applearner_pipeline::by_key::ByKey;
use applearner_pipeline::columns;
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{
    BoxError, Output, ParamProblem, PipelineError, Registry, Stage, StageContext, StageParams, Summary,
};
use charts::{Band, Chart, Line, PALETTE, short};
use html::{Html, md_table};
use leaderboard::{Score, leaderboard_section, read_scores};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use series_charts::forecasts_section;

pub fn register(registry: &mut Registry) {
    registry.register::<ReportParams>();
}

/// Writes `report.html`, `report.md` and `metrics.json` from the outputs of clean.resample
/// (`resampled` and what cleaning did), train.fit (`card.json`), evaluate.backtest
/// (`forecasts`, `scores`) and plan.resources (`plan`, `plan_backtest`, `plan_comparison`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// The page's title.
    #[serde(default = "default_title")]
    pub title: String,
    /// The target whose per-series MASE picks the best, median and worst series to draw.
    #[serde(default = "default_rank_by")]
    pub rank_by: Resource,
}

fn default_title() -> String {
    "AppLearner report".into()
}

fn default_rank_by() -> Resource {
    Resource::Cpu
}

impl StageParams for ReportParams {
    const KIND: &'static str = "report.html";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        Ok(Box::new(Report { params: self }))
    }
}

struct Report {
    params: ReportParams,
}

/// What people read for a stored method name; an external forecaster's name as it is.
fn method_name(m: &str) -> &str {
    match Method::parse(m) {
        Some(method) => method.label(),
        None => m,
    }
}

fn color(m: &str) -> plotters::style::RGBColor {
    PALETTE[Method::ALL.iter().position(|k| k.name() == m).unwrap_or(7) % PALETTE.len()]
}

/// A table read as columns of strings, integers and floats (null → NaN).
struct Cols<'a> {
    batches: &'a [RecordBatch],
    table: &'a str,
}

impl Cols<'_> {
    fn each<T>(&self, name: &str, read: ColumnReader<T>) -> Result<Vec<T>, BoxError> {
        let mut out = Vec::new();
        for b in self.batches {
            out.extend(read(b, self.table, name)?);
        }
        Ok(out)
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, BoxError> {
        self.each(name, columns::strings)
    }

    fn ints(&self, name: &str) -> Result<Vec<i64>, BoxError> {
        self.each(name, columns::ints)
    }

    fn floats(&self, name: &str) -> Result<Vec<f64>, BoxError> {
        self.each(name, columns::floats)
    }
}

type ColumnReader<T> = fn(&RecordBatch, &str, &str) -> Result<Vec<T>, BoxError>;
fn fmt(v: f64) -> String {
    if v.is_finite() { short(v) } else { "–".into() }
}

fn num(v: f64) -> Value {
    if v.is_finite() { json!((v * 1e6).round() / 1e6) } else { Value::Null }
}

impl Stage for Report {
    fn reads(&self) -> Vec<String> {
        const TABLES: [&str; 9] = [
            table::NAME,
            CARD_FILE,
            forecasts::NAME,
            scores::NAME,
            pt::NAME,
            pb::NAME,
            pc::NAME,
            plan_risk::NAME,
            rt::NAME,
        ];
        TABLES.map(String::from).to_vec()
    }

    fn writes(&self) -> Vec<Output> {
        vec![Output::artifact("report.html"), Output::artifact("report.md"), Output::artifact("metrics.json")]
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let card: Card = serde_json::from_slice(&ctx.read_artifact(CARD_FILE)?)?;
        let cleaning = ctx.input_record(table::NAME)?.get("summary").cloned().unwrap_or(Value::Null);
        let cleaned = CleanSummary::read(cleaning.as_object().unwrap_or(&serde_json::Map::new()))
            .map_err(|source| ReportError::Summary { stage: "clean", source })?;
        let backtest_summary = ctx.input_record(scores::NAME)?.get("summary").cloned().unwrap_or(Value::Null);
        let backtest_counts = BacktestSummary::read(backtest_summary.as_object().unwrap_or(&serde_json::Map::new()))
            .map_err(|source| ReportError::Summary { stage: "evaluate", source })?;
        let scores = read_scores(&ctx.read_table(scores::NAME)?)?;
        let mut resources: Vec<String> = scores.iter().map(|s| s.resource.clone()).collect();
        resources.sort();
        resources.dedup();

        let mut doc = Doc::default();
        model_section(&mut doc, &card, &self.params.title);
        // The answer first: what to change and what it saves, then at what risk beside KRR
        // and VPA; the data, methods and leaderboards after.
        let plan_summary = ctx.input_record(pc::NAME)?.get("summary").cloned().unwrap_or(Value::Null);
        let plan = PlanSummary::read(plan_summary.as_object().unwrap_or(&serde_json::Map::new()))
            .map_err(|source| ReportError::Summary { stage: "plan", source })?;
        plans::current_section(&mut doc, &ctx.read_table(rt::NAME)?, &plan)?;
        let (backtest, comparison) = (ctx.read_table(pb::NAME)?, ctx.read_table(pc::NAME)?);
        plans::plans_section(&mut doc, &backtest, &comparison, &plan_summary, &plan)?;
        plans::risk_per_day(&mut doc, &ctx.read_table(plan_risk::NAME)?)?;
        let planned = plans::plan_ahead_section(&mut doc, &ctx.read_table(pt::NAME)?)?;
        doc.metrics.insert("plan".into(), plan_summary);
        // `resampled` is read twice, a batch at a time, never held: the data's coverage, then
        // the charted series' history.
        let keys_and_times = ctx.table_batches(table::NAME, Some(&[table::KEY, table::TIMESTAMP]), &[])?;
        data_section(&mut doc, keys_and_times, &cleaned, cleaning)?;
        leaderboard_section(&mut doc, &scores, &resources, (backtest_summary, &backtest_counts))?;
        let forecasts = ctx.table_batches(forecasts::NAME, None, &[])?;
        let resampled = ctx.table_batches(table::NAME, None, &[])?;
        forecasts_section(&mut doc, &scores, self.params.rank_by, forecasts, resampled, &resources)?;

        let html = doc.html.finish();
        let charts = html.matches("<figure").count();
        ctx.write_artifact("report.html", html)?;
        ctx.write_artifact("report.md", doc.md)?;
        ctx.write_artifact("metrics.json", serde_json::to_vec_pretty(&Value::Object(doc.metrics))?)?;
        let mut summary = Summary::new();
        summary.insert("charts".into(), charts.into());
        summary.insert("workloads_planned".into(), planned.into());
        Ok(summary)
    }
}

/// The report as it is written: HTML, Markdown and the JSON of `metrics.json`, each section
/// adding to all three.
#[derive(Default)]
struct Doc {
    html: Html,
    md: String,
    metrics: serde_json::Map<String, Value>,
}

impl Doc {
    /// A table under its own heading, in the HTML and the Markdown.
    fn titled_table(&mut self, title: &str, headers: &[&str], rows: &[Vec<String>]) {
        self.html.h3(title);
        self.html.table(headers, rows);
        let _ = writeln!(self.md, "### {title}\n");
        md_table(&mut self.md, headers, rows);
    }
}

/// What the model is: the report's head.
fn model_section(doc: &mut Doc, card: &Card, title: &str) {
    // The model.
    let b = &card.blueprint;
    let mut model_line = format!(
        "{} on [{}] → [{}], lookback {} steps, horizon {} steps of {} s; loss {}; best epoch {} of {}",
        b.model.name(),
        b.inputs.join(", "),
        b.targets.join(", "),
        b.shape.lookback,
        b.shape.horizon,
        card.step_ms / 1000,
        b.loss.name(),
        card.best_epoch,
        card.epochs_run,
    );
    if let Some(c) = &card.covariates {
        model_line.push_str(&format!("; {}", c.sentence()));
    }
    // No run id: the same inputs give the same bytes, whichever run made them.
    let digest = card.weights_digest.chars().take(12).collect::<String>();
    doc.html.head(title, &digest, &model_line);
    let _ = writeln!(doc.md, "# {}\n\nModel `{digest}`: {model_line}.\n", title);
    let mut model = json!({"blueprint": b, "weights_digest": card.weights_digest});
    if let Some(c) = &card.covariates {
        model["covariates"] = json!(c);
    }
    doc.metrics.insert("model".into(), model);
}

/// What was read and what cleaning did.
fn data_section(
    doc: &mut Doc,
    resampled: impl Iterator<Item = Result<RecordBatch, PipelineError>>,
    cleaned: &CleanSummary,
    record: Value,
) -> Result<(), BoxError> {
    let data = data_summary(resampled, cleaned)?;
    doc.html.section("data", "Data", "What was read, what cleaning removed, and what the models learned from.");
    doc.html.table(&[], &data.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect::<Vec<_>>());
    let _ = writeln!(doc.md, "## Data\n");
    for (k, v) in &data {
        let _ = writeln!(doc.md, "- {k}: {v}");
    }
    doc.metrics.insert("data".into(), record);

    Ok(())
}

/// Data summary lines, from the resampled table and clean.resample's summary.
fn data_summary(
    resampled: impl Iterator<Item = Result<RecordBatch, PipelineError>>,
    c: &CleanSummary,
) -> Result<Vec<(String, String)>, BoxError> {
    let spans = Spans::read(resampled)?;
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    let coverage = spans.coverage();
    let series = coverage.len();
    let pct = |v: Option<&f64>| v.map_or("–".to_string(), |v| format!("{:.0} %", v * 100.0));
    let mut rows = vec![
        ("series read (pods × metrics)".into(), c.input_series.to_string()),
        ("points read".into(), c.input_points.to_string()),
        ("workload series after grouping".into(), c.grouped_series.to_string()),
        (
            "series kept".into(),
            format!("{series} ({} segments: a gap longer than max_gap splits a series)", c.output_segments),
        ),
        (
            "points kept".into(),
            format!("{} on the grid, {} of them filled across short gaps", spans.points, c.filled_points),
        ),
        (
            "removed".into(),
            format!(
                "{} non-finite and {} negative samples, {} partial points trimmed at segment ends, {} short segments, {} all-zero and {} constant series",
                c.non_finite_dropped,
                c.negative_dropped,
                c.trimmed_points,
                c.short_segments_dropped,
                c.zero_series_dropped,
                c.constant_series_dropped
            ),
        ),
        ("time span".into(), spans.span.map_or_else(String::new, |(a, b)| format!("{} to {}", time(a), time(b)))),
        (
            "coverage (of each series' first-to-last span)".into(),
            format!(
                "median {}, lowest {}; the rest is gaps between collection sessions",
                pct(coverage.get(coverage.len() / 2)),
                pct(coverage.first())
            ),
        ),
    ];
    if c.covariate_series > 0 {
        rows.push(("model inputs (covariates)".into(), inputs_line(c)));
    }
    Ok(rows)
}

/// What became of the model inputs' series.
fn inputs_line(c: &CleanSummary) -> String {
    format!(
        "{} series: {} describe no usage series and {} several (left out), {} counter resets; {} series lack \
         one input or more (0 there)",
        c.covariate_series,
        c.covariate_series_without_usage,
        c.covariate_series_ambiguous,
        c.covariate_counter_resets,
        c.series_without_an_input
    )
}

/// Per series of `resampled`, its first and last time and its points; the smallest step
/// between two points of a series; all the points and their span.
#[derive(Default)]
struct Spans {
    per_series: Vec<(i64, i64, usize)>,
    step: i64,
    points: usize,
    span: Option<(i64, i64)>,
}

impl Spans {
    /// A series at a time: the table is sorted by key (an error says so where it is not).
    fn read(batches: impl Iterator<Item = Result<RecordBatch, PipelineError>>) -> Result<Spans, BoxError> {
        let mut out = Spans { step: i64::MAX, ..Default::default() };
        let (mut key, mut times) = (None::<String>, Vec::new());
        for b in ByKey::new(batches, table::NAME, table::KEY).through(None) {
            let b = b?;
            let keys = columns::column(&b, table::NAME, table::KEY, &DataType::Utf8)?;
            let keys = keys.as_string::<i32>();
            for (i, t) in columns::ints(&b, table::NAME, table::TIMESTAMP)?.into_iter().enumerate() {
                if key.as_deref() != Some(keys.value(i)) {
                    out.close(&mut times);
                    key = Some(keys.value(i).to_string());
                }
                times.push(t);
            }
        }
        out.close(&mut times);
        Ok(out)
    }

    /// Adds one series' times.
    fn close(&mut self, times: &mut Vec<i64>) {
        times.sort_unstable();
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else { return };
        let step = times.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0).min();
        self.step = self.step.min(step.unwrap_or(i64::MAX));
        self.per_series.push((first, last, times.len()));
        self.points += times.len();
        self.span = Some(self.span.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
        times.clear();
    }

    /// Per series, sorted: the share of its span (first to last point) that has points; the
    /// rest are the gaps between segments.
    fn coverage(&self) -> Vec<f64> {
        let step = if self.step == i64::MAX { 1 } else { self.step } as f64;
        let mut coverage: Vec<f64> =
            self.per_series.iter().map(|(a, b, n)| *n as f64 * step / ((b - a) as f64 + step)).collect();
        coverage.sort_by(f64::total_cmp);
        coverage
    }
}
