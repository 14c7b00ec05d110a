//! `report.html`: what a run found, for people (one self-contained HTML page: inline CSS and
//! SVG charts, no scripts, nothing fetched) and for machines and diffs (`report.md`,
//! `metrics.json`).

mod charts;
mod error;
mod plans;

pub use error::ReportError;

use std::collections::BTreeMap;
use std::fmt::Write;

use applearner_contracts::Method;
use applearner_contracts::card::{CARD_FILE, Card};
use applearner_contracts::summaries::PlanSummary;
use applearner_contracts::tables::{forecasts, resampled as table, scores};
use applearner_contracts::tables::{plan as pt, plan_backtest as pb, plan_comparison as pc, recommendations as rt};
use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::columns;
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{BoxError, Output, ParamProblem, Registry, Stage, StageContext, StageParams, Summary};
use charts::{Band, Chart, Line, PALETTE, short};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    pub rank_by: String,
}

fn default_title() -> String {
    "AppLearner report".into()
}

fn default_rank_by() -> String {
    "cpu".into()
}

impl StageParams for ReportParams {
    const KIND: &'static str = "report.html";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        if !["cpu", "memory"].contains(&self.rank_by.as_str()) {
            return Err(vec![ParamProblem::new(
                &["rank_by"],
                format!("unknown target `{}`", self.rank_by),
                "cpu or memory",
            )]);
        }
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn fmt(v: f64) -> String {
    if v.is_finite() { short(v) } else { "–".into() }
}

fn num(v: f64) -> Value {
    if v.is_finite() { json!((v * 1e6).round() / 1e6) } else { Value::Null }
}

/// One score row.
/// A row of `scores` of the test part.
struct Score {
    method: String,
    resource: String,
    scope: String,
    key: String,
    /// `all`, a horizon bucket, or empty on a row of one step.
    bucket: String,
    step: i64,
    metric: String,
    value: f64,
}

impl Stage for Report {
    fn reads(&self) -> Vec<String> {
        const TABLES: [&str; 9] = [
            "resampled",
            "card.json",
            "forecasts",
            "scores",
            "plan",
            "plan_backtest",
            "plan_comparison",
            "plan_risk",
            "recommendations",
        ];
        TABLES.map(String::from).to_vec()
    }

    fn writes(&self) -> Vec<Output> {
        vec![Output::artifact("report.html"), Output::artifact("report.md"), Output::artifact("metrics.json")]
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let card: Card = serde_json::from_slice(&ctx.read_artifact(CARD_FILE)?)?;
        let cleaning = ctx.input_record("resampled")?.get("summary").cloned().unwrap_or(Value::Null);
        let backtest_summary = ctx.input_record("scores")?.get("summary").cloned().unwrap_or(Value::Null);
        let resampled = ctx.read_table("resampled")?;
        let scores = read_scores(&ctx.read_table("scores")?)?;
        let mut resources: Vec<String> = scores.iter().map(|s| s.resource.clone()).collect();
        resources.sort();
        resources.dedup();

        let mut doc = Doc::default();
        model_section(&mut doc, &card, &self.params.title);
        // The answer first: what to change and what it saves, then at what risk beside KRR
        // and VPA; the data, methods and leaderboards after.
        let plan_summary = ctx.input_record("plan_comparison")?.get("summary").cloned().unwrap_or(Value::Null);
        let plan = PlanSummary::read(plan_summary.as_object().unwrap_or(&serde_json::Map::new()))
            .map_err(|source| ReportError::Summary { stage: "plan", source })?;
        plans::current_section(&mut doc, &ctx.read_table("recommendations")?, &plan)?;
        let (backtest, comparison) = (ctx.read_table("plan_backtest")?, ctx.read_table("plan_comparison")?);
        plans::plans_section(&mut doc, &backtest, &comparison, &plan_summary, &plan)?;
        plans::risk_per_day(&mut doc, &ctx.read_table("plan_risk")?)?;
        let planned = plans::plan_ahead_section(&mut doc, &ctx.read_table("plan")?)?;
        doc.metrics.insert("plan".into(), plan_summary);
        data_section(&mut doc, &resampled, &cleaning)?;
        leaderboard_section(&mut doc, &scores, &resources, backtest_summary)?;
        let forecasts = ctx.read_table("forecasts")?;
        forecasts_section(&mut doc, &scores, &self.params.rank_by, &forecasts, &resampled, &resources)?;

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
    let model_line = format!(
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
    // No run id: the same inputs give the same bytes, whichever run made them.
    let digest = card.weights_digest.chars().take(12).collect::<String>();
    doc.html.head(title, &digest, &model_line);
    let _ = writeln!(doc.md, "# {}\n\nModel `{digest}`: {model_line}.\n", title);
    doc.metrics.insert("model".into(), json!({"blueprint": b, "weights_digest": card.weights_digest}));
}

/// What was read and what cleaning did.
fn data_section(doc: &mut Doc, resampled: &[RecordBatch], cleaning: &Value) -> Result<(), BoxError> {
    // Data.
    let data = data_summary(resampled, cleaning)?;
    doc.html.section("data", "Data", "What was read, what cleaning removed, and what the models learned from.");
    doc.html.table(&[], &data.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect::<Vec<_>>());
    let _ = writeln!(doc.md, "## Data\n");
    for (k, v) in &data {
        let _ = writeln!(doc.md, "- {k}: {v}");
    }
    doc.metrics.insert("data".into(), cleaning.clone());

    Ok(())
}

/// Every method's errors on the test part, per resource and by horizon step.
fn leaderboard_section(
    doc: &mut Doc,
    scores: &[Score],
    resources: &[String],
    backtest_summary: Value,
) -> Result<(), BoxError> {
    doc.html.section(
        "leaderboard",
        "Leaderboard",
        "Every method forecasts from the same origins of the test part. MASE divides each series' MAE by the in-sample error of the seasonal-naive forecast (of the last value where the history holds no season): below 1 beats it. Direction F1: does the forecast rise when usage rises. Auto forecasts each series with the method that was best on its validation part. Every quantile is conformal: shifted by the residuals of its method on the validation part. VPA and KRR are recommenders, not forecasters: they are compared where they belong, as plans, above.",
    );
    let note = backtest_note(&backtest_summary);
    doc.html.paragraph(&note);
    let _ = writeln!(doc.md, "{note}\n");
    doc.metrics.insert("backtest".into(), backtest_summary);
    let mut leaderboard = serde_json::Map::new();
    let _ = writeln!(doc.md, "\n## Leaderboard (test part, median over series unless said)\n");
    for resource in resources {
        leaderboard.insert(resource.clone(), resource_leaderboard(doc, scores, resource)?);
    }
    doc.metrics.insert("leaderboard".into(), Value::Object(leaderboard));
    Ok(())
}

/// The backtest's counts and what `auto` chose, in a sentence.
fn backtest_note(backtest_summary: &Value) -> String {
    let count = |k: &str| backtest_summary.get(k).and_then(Value::as_u64).unwrap_or(0);
    let chose: Vec<String> = backtest_summary
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some(format!("{} {}", method_name(k.strip_prefix("auto_chose_")?), v.as_u64()?)))
        .collect();
    format!(
        "{} origins over {} series. Auto chose, per series and resource: {}. MASE used the last-value scale for {} series with no point a season earlier in sample; seasonal naive fell back to the last value for {} forecast steps with no value a season before; {} filled-in points were not scored.",
        count("origins"),
        count("series"),
        chose.join(", "),
        count("mase_scaled_by_last_value"),
        count("seasonal_naive_fell_back"),
        count("filled_actuals_not_scored")
    )
}

/// One resource's leaderboard and its accuracy by horizon (tables and chart); the rows as
/// `metrics.json` holds them.
fn resource_leaderboard(doc: &mut Doc, scores: &[Score], resource: &str) -> Result<Value, BoxError> {
    let columns =
        ["mase", "mae", "rmse", "smape", "direction_f1", "pinball", "coverage_p50", "coverage_p90", "coverage_p99"];
    let value = |m: &str, scope: &str, metric: &str| score_of(scores, m, resource, scope, "all", metric);
    // Ours, then any scored from an `external` file (statsforecast's), by name.
    let external: std::collections::BTreeSet<&str> =
        scores.iter().map(|s| s.method.as_str()).filter(|m| Method::parse(m).is_none()).collect();
    let mut methods: Vec<&str> = Method::ALL
        .into_iter()
        .filter(|m| !m.is_recommender())
        .map(|m| m.name())
        .chain(external)
        .filter(|m| value(m, "median", "mase").is_finite() || value(m, "mean", "mae").is_finite())
        .collect();
    methods.sort_by(|a, b| value(a, "median", "mase").total_cmp(&value(b, "median", "mase")));
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for m in &methods {
        let mut row = vec![method_name(m).to_string(), fmt(value(m, "mean", "mase"))];
        let mut j = serde_json::Map::new();
        j.insert("method".into(), (*m).into());
        j.insert("mase_mean".into(), num(value(m, "mean", "mase")));
        for c in columns {
            row.push(fmt(value(m, "median", c)));
            j.insert(c.into(), num(value(m, "median", c)));
        }
        rows.push(row);
        json_rows.push(Value::Object(j));
    }
    let headers = [
        "method",
        "MASE (mean)",
        "MASE",
        "MAE",
        "RMSE",
        "sMAPE %",
        "direction F1",
        "pinball",
        "cover p50",
        "cover p90",
        "cover p99",
    ];
    doc.titled_table(resource, &headers, &rows);
    horizon_table(doc, scores, resource, &methods);
    horizon_chart(doc, scores, resource, &methods)?;
    Ok(Value::Array(json_rows))
}

/// One score of the test part; NaN where it was not scored.
fn score_of(scores: &[Score], method: &str, resource: &str, scope: &str, bucket: &str, metric: &str) -> f64 {
    scores
        .iter()
        .find(|s| {
            s.method == method && s.resource == resource && s.scope == scope && s.bucket == bucket && s.metric == metric
        })
        .map_or(f64::NAN, |s| s.value)
}

/// Accuracy by how far ahead: each method's mean MASE in the buckets the horizon reaches.
fn horizon_table(doc: &mut Doc, scores: &[Score], resource: &str, methods: &[&str]) {
    let mase = |m: &str, bucket: &str| score_of(scores, m, resource, "mean", bucket, "mase");
    let buckets: Vec<&str> =
        ["1h", "6h", "1d", "more"].into_iter().filter(|b| methods.iter().any(|m| mase(m, b).is_finite())).collect();
    let rows: Vec<Vec<String>> = methods
        .iter()
        .map(|m| std::iter::once(method_name(m).to_string()).chain(buckets.iter().map(|b| fmt(mase(m, b)))).collect())
        .collect();
    let headers: Vec<String> = std::iter::once("method".to_string())
        .chain(buckets.iter().map(|b| format!("MASE (mean), up to {b} ahead")))
        .collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    doc.titled_table(&format!("{resource} by horizon"), &headers, &rows);
}

/// Each method's median MASE by horizon step, for one resource.
fn horizon_chart(doc: &mut Doc, scores: &[Score], resource: &str, methods: &[&str]) -> Result<(), BoxError> {
    let steps: i64 = scores.iter().map(|s| s.step).max().unwrap_or(0);
    let lines = methods
        .iter()
        .map(|m| Line {
            name: method_name(m).into(),
            color: color(m),
            points: (1..=steps)
                .map(|st| {
                    (
                        st as f64,
                        scores
                            .iter()
                            .find(|s| {
                                &s.method == m
                                    && s.resource == resource
                                    && s.scope == "median"
                                    && s.step == st
                                    && s.metric == "mase"
                            })
                            .map_or(f64::NAN, |s| s.value),
                    )
                })
                .collect(),
            markers: true,
            bold: *m == Method::Model.name(),
        })
        .collect();
    doc.html.chart(
        &format!("horizon-{resource}"),
        &Chart {
            title: format!("{resource}: median MASE by horizon step"),
            x_label: "steps ahead".into(),
            y_label: "MASE".into(),
            time_x: false,
            log_x: false,
            lines,
            bands: vec![],
        },
        "The original project reported errors per forecast length: how fast each method degrades further ahead.",
    )?;
    Ok(())
}

/// Forecast against actual for the best, median and worst series.
fn forecasts_section(
    doc: &mut Doc,
    scores: &[Score],
    rank_by: &str,
    forecasts: &[RecordBatch],
    resampled: &[RecordBatch],
    resources: &[String],
) -> Result<(), BoxError> {
    // Forecast vs actual for the best, median and worst series.
    let picks = pick_series(scores, rank_by);
    doc.html.section("forecasts", "Forecast against actual", &format!("The series with the best, median and worst model MASE on {}: history, what happened, the model's point forecast and its quantile band over the test part.", rank_by));
    let f = ForecastRows::read(forecasts)?;
    let usage = Usage::read(resampled)?;
    for (label, key) in &picks {
        for resource in resources {
            let chart = forecast_chart(&f, &usage, key, resource, label);
            doc.html.chart(&format!("forecast-{label}-{resource}"), &chart, &escape(key))?;
        }
    }
    doc.metrics.insert(
        "series_shown".into(),
        json!(picks.iter().map(|(l, k)| json!({"rank": l, "key": k})).collect::<Vec<_>>()),
    );

    Ok(())
}

fn read_scores(batches: &[RecordBatch]) -> Result<Vec<Score>, BoxError> {
    let c = Cols { batches, table: scores::NAME };
    let (method, resource, scope) =
        (c.strings(scores::METHOD)?, c.strings(scores::RESOURCE)?, c.strings(scores::SCOPE)?);
    let (key, metric) = (c.strings(scores::KEY)?, c.strings(scores::METRIC)?);
    let (step, value) = (c.ints(scores::STEP)?, c.floats(scores::VALUE)?);
    let (part, bucket) = (c.strings(scores::PART)?, c.strings(scores::BUCKET)?);
    Ok((0..method.len())
        .filter(|&i| part[i] == "test")
        .map(|i| Score {
            method: method[i].clone(),
            resource: resource[i].clone(),
            scope: scope[i].clone(),
            key: key[i].clone(),
            bucket: bucket[i].clone(),
            step: step[i],
            metric: metric[i].clone(),
            value: value[i],
        })
        .collect())
}

/// The best, median and worst series by the model's MASE.
fn pick_series(scores: &[Score], resource: &str) -> Vec<(&'static str, String)> {
    let mut ranked: Vec<(f64, &str)> = scores
        .iter()
        .filter(|s| {
            s.method == Method::Model.name()
                && s.resource == resource
                && s.scope == "series"
                && s.bucket == "all"
                && s.metric == "mase"
                && s.value.is_finite()
        })
        .map(|s| (s.value, s.key.as_str()))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    if ranked.is_empty() {
        return Vec::new();
    }
    let mut out = vec![
        ("best", ranked[0].1.to_string()),
        ("median", ranked[ranked.len() / 2].1.to_string()),
        ("worst", ranked[ranked.len() - 1].1.to_string()),
    ];
    out.dedup_by(|b, a| a.1 == b.1);
    out
}

/// Data summary lines, from the resampled table and clean.resample's record.
fn data_summary(resampled: &[RecordBatch], cleaning: &Value) -> Result<Vec<(String, String)>, BoxError> {
    let c = Cols { batches: resampled, table: table::NAME };
    let times = c.ints(table::TIMESTAMP)?;
    let keys = c.strings(table::KEY)?;
    let time = |ms: Option<&i64>| {
        ms.and_then(|ms| chrono::DateTime::from_timestamp_millis(*ms))
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    // Coverage: the share of each series' span (first to last point) that has points; the
    // rest are the gaps between segments.
    let mut spans: BTreeMap<&str, (i64, i64, usize)> = BTreeMap::new();
    for (k, t) in keys.iter().zip(&times) {
        let e = spans.entry(k).or_insert((*t, *t, 0));
        *e = (e.0.min(*t), e.1.max(*t), e.2 + 1);
    }
    let step = {
        let mut sorted: Vec<(&str, i64)> = keys.iter().map(String::as_str).zip(times.iter().copied()).collect();
        sorted.sort();
        sorted.windows(2).filter(|w| w[0].0 == w[1].0 && w[1].1 > w[0].1).map(|w| w[1].1 - w[0].1).min().unwrap_or(1)
    };
    let mut coverage: Vec<f64> =
        spans.values().map(|(a, b, n)| *n as f64 * step as f64 / (b - a + step) as f64).collect();
    coverage.sort_by(f64::total_cmp);
    let pct = |v: Option<&f64>| v.map_or("–".to_string(), |v| format!("{:.0} %", v * 100.0));
    let n = |k: &str| cleaning.get(k).map_or("–".to_string(), |v| v.to_string());
    Ok(vec![
        ("series read (pods × metrics)".into(), n("input_series")),
        ("points read".into(), n("input_points")),
        ("workload series after grouping".into(), n("grouped_series")),
        (
            "series kept".into(),
            format!("{} ({} segments: a gap longer than max_gap splits a series)", unique.len(), n("output_segments")),
        ),
        (
            "points kept".into(),
            format!("{} on the grid, {} of them filled across short gaps", times.len(), n("filled_points")),
        ),
        (
            "removed".into(),
            format!(
                "{} non-finite and {} negative samples, {} partial points trimmed at segment ends, {} short segments, {} all-zero and {} constant series",
                n("non_finite_dropped"),
                n("negative_dropped"),
                n("trimmed_points"),
                n("short_segments_dropped"),
                n("zero_series_dropped"),
                n("constant_series_dropped")
            ),
        ),
        ("time span".into(), format!("{} to {}", time(times.iter().min()), time(times.iter().max()))),
        (
            "coverage (of each series' first-to-last span)".into(),
            format!(
                "median {}, lowest {}; the rest is gaps between collection sessions",
                pct(coverage.get(coverage.len() / 2)),
                pct(coverage.first())
            ),
        ),
    ])
}

/// Model forecasts with actuals, per (key, resource): (time, actual, point, low, high).
struct ForecastRows {
    rows: BTreeMap<(String, String), Vec<(i64, f64, f64, f64, f64)>>,
    band: String,
}

impl ForecastRows {
    fn read(batches: &[RecordBatch]) -> Result<ForecastRows, BoxError> {
        let c = Cols { batches, table: "forecasts" };
        let names: Vec<String> = batches
            .first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .filter(|n| n.starts_with('p') && n[1..].parse::<u32>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        let (part, method, key, resource, time, actual, point) = (
            c.strings(forecasts::PART)?,
            c.strings(forecasts::METHOD)?,
            c.strings(forecasts::KEY)?,
            c.strings(forecasts::RESOURCE)?,
            c.ints(forecasts::TIMESTAMP)?,
            c.floats(forecasts::ACTUAL)?,
            c.floats(forecasts::FORECAST)?,
        );
        let (lo, hi) = match (names.first(), names.last()) {
            (Some(a), Some(b)) => (c.floats(a)?, c.floats(b)?),
            _ => (vec![f64::NAN; method.len()], vec![f64::NAN; method.len()]),
        };
        let mut rows: BTreeMap<(String, String), Vec<_>> = BTreeMap::new();
        for i in 0..method.len() {
            if part[i] == "test" && method[i] == Method::Model.name() {
                rows.entry((key[i].clone(), resource[i].clone()))
                    .or_default()
                    .push((time[i], actual[i], point[i], lo[i], hi[i]));
            }
        }
        let band = match (names.first(), names.last()) {
            (Some(a), Some(b)) => format!("{a}–{b}"),
            _ => String::new(),
        };
        Ok(ForecastRows { rows, band })
    }
}

/// Usage per (key, resource): (time, value), in time order.
struct Usage(BTreeMap<(String, String), Vec<(i64, f64)>>);

impl Usage {
    fn read(batches: &[RecordBatch]) -> Result<Usage, BoxError> {
        let c = Cols { batches, table: "resampled" };
        let (keys, times) = (c.strings("key")?, c.ints("timestamp")?);
        let mut out: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
        for resource in ["cpu", "memory"] {
            if batches.first().is_some_and(|b| b.column_by_name(resource).is_some()) {
                for (i, v) in c.floats(resource)?.into_iter().enumerate() {
                    out.entry((keys[i].clone(), resource.to_string())).or_default().push((times[i], v));
                }
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|p| p.0);
        }
        Ok(Usage(out))
    }
}

fn forecast_chart(f: &ForecastRows, usage: &Usage, key: &str, resource: &str, label: &str) -> Chart {
    let id = (key.to_string(), resource.to_string());
    let mut rows = f.rows.get(&id).cloned().unwrap_or_default();
    rows.sort_by_key(|r| r.0);
    // The last stretch of the test part without a gap, and as much history before it.
    let step = rows.windows(2).map(|w| w[1].0 - w[0].0).filter(|d| *d > 0).min().unwrap_or(0);
    let cut = rows.windows(2).rposition(|w| w[1].0 - w[0].0 > 2 * step).map_or(0, |i| i + 1);
    rows.drain(..cut);
    let (first, last) = (rows.first().map_or(0, |r| r.0), rows.last().map_or(0, |r| r.0));
    let from = first - (last - first);
    let history: Vec<(f64, f64)> = usage
        .0
        .get(&id)
        .map(|v| v.iter().filter(|p| p.0 >= from && p.0 <= last).map(|p| (p.0 as f64, p.1)).collect())
        .unwrap_or_default();
    let history = with_breaks(history);
    let (unit, y) = if resource == "memory" { (1048576.0, "MiB") } else { (1e-3, "millicores") };
    let scale = |v: Vec<(f64, f64)>| v.into_iter().map(|(x, y)| (x, y / unit)).collect();
    let mut bands = Vec::new();
    if !f.band.is_empty() {
        bands.push(Band {
            name: format!("model {}", f.band),
            color: color(Method::Model.name()),
            points: rows.iter().map(|r| (r.0 as f64, r.3 / unit, r.4 / unit)).collect(),
        });
    }
    Chart {
        title: format!("{label}: {key} — {resource}"),
        x_label: "time (UTC)".into(),
        y_label: y.into(),
        time_x: true,
        log_x: false,
        lines: vec![
            Line {
                name: "actual".into(),
                color: plotters::style::RGBColor(30, 30, 30),
                points: scale(history),
                markers: false,
                bold: false,
            },
            Line {
                name: "model".into(),
                color: color(Method::Model.name()),
                points: scale(rows.iter().map(|r| (r.0 as f64, r.2)).collect()),
                markers: false,
                bold: false,
            },
        ],
        bands,
    }
}

/// Breaks a line where points are further apart than twice the usual step.
fn with_breaks(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut gaps: Vec<f64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_by(f64::total_cmp);
    let step = gaps.get(gaps.len() / 2).copied().unwrap_or(0.0);
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        if out.last().is_some_and(|l: &(f64, f64)| step > 0.0 && p.0 - l.0 > 2.0 * step) {
            out.push((p.0, f64::NAN));
        }
        out.push(p);
    }
    out
}

fn md_table(md: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(md, "| {} |", headers.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(headers.len()));
    for r in rows {
        let _ = writeln!(md, "| {} |", r.join(" | "));
    }
    md.push('\n');
}

/// The page, built in order.
#[derive(Default)]
struct Html {
    body: String,
    nav: Vec<(String, String)>,
}

impl Html {
    fn head(&mut self, title: &str, run: &str, model: &str) {
        let _ = write!(
            self.body,
            "<h1>{}</h1><p class=meta>Run <code>{}</code> · model: {}</p>",
            escape(title),
            escape(run),
            escape(model)
        );
    }

    fn section(&mut self, id: &str, title: &str, text: &str) {
        self.nav.push((id.into(), title.into()));
        let _ = write!(self.body, "<section id=\"{id}\"><h2>{}</h2><p>{}</p></section>", escape(title), text);
    }

    fn paragraph(&mut self, text: &str) {
        let _ = write!(self.body, "<p>{}</p>", escape(text));
    }

    fn h3(&mut self, title: &str) {
        let _ = write!(self.body, "<h3>{}</h3>", escape(title));
    }

    /// A table; without headers, a list of name–value rows.
    fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) {
        self.body.push_str("<table>");
        if !headers.is_empty() {
            self.body.push_str("<thead><tr>");
            for h in headers {
                let _ = write!(self.body, "<th>{}</th>", escape(h));
            }
            self.body.push_str("</tr></thead>");
        }
        self.body.push_str("<tbody>");
        for r in rows {
            self.body.push_str("<tr>");
            for c in r {
                let _ = write!(self.body, "<td>{}</td>", escape(c));
            }
            self.body.push_str("</tr>");
        }
        self.body.push_str("</tbody></table>");
    }

    fn chart(&mut self, id: &str, chart: &Chart, caption: &str) -> Result<(), BoxError> {
        let svg = chart.svg((900, 360))?;
        let _ = write!(
            self.body,
            "<figure class=chart id=\"chart-{}\">{svg}<figcaption>{caption}</figcaption></figure>",
            escape(id)
        );
        Ok(())
    }

    fn finish(self) -> String {
        let nav: String = self
            .nav
            .iter()
            .map(|(id, t)| format!("<a href=\"#{id}\">{}</a>", escape(t)))
            .collect::<Vec<_>>()
            .join(" · ");
        format!(
            "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\"><title>AppLearner report</title><style>{CSS}</style></head><body><nav>{nav}</nav>{}<footer>Made by AppLearner {}. Self-contained: no scripts, nothing fetched.</footer></body></html>\n",
            self.body,
            env!("CARGO_PKG_VERSION")
        )
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
nav{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd}\
h2{margin-top:2em;border-bottom:2px solid #1f77b4}.meta{color:#555}\
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}\
th{background:#f4f6f8}td:first-child,th:first-child{text-align:left}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}\
footer{margin-top:3em;color:#888;font-size:.8em}";
