//! `plan.resources`: container requests (and memory limits) per workload and planning
//! interval, made from the model's forecasts, and the plan backtest: the usage that really
//! followed replayed against the model's plans and against what VPA and KRR would have set.

use std::collections::BTreeMap;
use std::fmt::Write;

use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::arrow::datatypes::SchemaRef;
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{
    BoxError, Output, ParamProblem, Stage, StageContext, StageParams, Summary, parse_duration, parse_quantity,
};
use serde::{Deserialize, Serialize};

use crate::recommend::{KrrSettings, MIB, Vpa, VpaSettings, krr};
use crate::table::{TableBuilder, Usage, read_usage};
use applearner_pipeline::columns::{floats, ints, strings};

/// Turns the model's forecasts (`forecasts` of evaluate.backtest) into resource plans.
/// Writes `plan` (and `plan.csv`: per workload and interval ahead, from the forecast past
/// the end of the data: CPU and memory requests and the memory limit), `patches.yaml`
/// (strategic-merge patches of each workload's container resources, also valid for
/// server-side apply), `vpa.yaml` (VerticalPodAutoscaler objects holding the plan as their
/// recommendation, update mode Off), `plan_backtest` (per method and setting: slack,
/// under-provisioned time and changes over the test part, for the trade-off curve) and
/// `plan_comparison` (the model's slack at the under-provisioned time of VPA and KRR).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanParams {
    /// How CPU requests are sized.
    #[serde(default = "default_cpu")]
    pub cpu: ResourceParams,
    /// How memory requests are sized.
    /// Memory is not compressible: above the limit the container is killed, so it is sized
    /// on a higher quantile than CPU.
    #[serde(default = "default_memory")]
    pub memory: ResourceParams,
    /// Memory limit = request × this (1: usage above the request is an OOM risk).
    #[serde(default = "one")]
    pub memory_limit_factor: f64,
    /// The planning interval: requests hold for this long (default: the whole horizon).
    #[serde(default)]
    pub interval: Option<String>,
    /// A plan changes at most once per this long (pods restart to take new requests)…
    #[serde(default = "default_hold")]
    pub hold: String,
    /// …and only when the new value differs by more than this fraction.
    #[serde(default = "default_min_change")]
    pub min_change: f64,
    /// Margins swept over every quantile the model forecasts, for the trade-off curve.
    #[serde(default = "default_sweep")]
    pub sweep: Vec<f64>,
}

/// How one resource's requests are sized.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceParams {
    /// What requests are sized from: a quantile the model forecasts (`p90`) or `point`.
    pub source: String,
    /// Headroom on top of it, as a fraction (0.1 = +10 %).
    #[serde(default)]
    pub margin: f64,
    /// The smallest request: CPU as `10m` or cores, memory as `32Mi`, `1Gi` or bytes.
    pub min: String,
    /// Requests are rounded up to a multiple of this (`5m`, `4Mi`).
    pub step: String,
}

fn default_cpu() -> ResourceParams {
    ResourceParams { source: "p90".into(), margin: 0.0, min: "10m".into(), step: "5m".into() }
}
fn default_memory() -> ResourceParams {
    ResourceParams { source: "p99".into(), margin: 0.2, min: "32Mi".into(), step: "4Mi".into() }
}
fn one() -> f64 {
    1.0
}
fn default_hold() -> String {
    "30m".into()
}
fn default_min_change() -> f64 {
    0.1
}
fn default_sweep() -> Vec<f64> {
    vec![0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0]
}

/// `35m`, or whole cores.
pub fn format_cpu(cores: f64) -> String {
    let m = (cores * 1000.0).round() as i64;
    if m % 1000 == 0 { format!("{}", m / 1000) } else { format!("{m}m") }
}

/// `64Mi` when a whole number of MiB, else bytes.
pub fn format_memory(bytes: f64) -> String {
    let b = bytes.round() as i64;
    if b % (1 << 20) == 0 { format!("{}Mi", b >> 20) } else { format!("{b}") }
}

/// How forecasts become requests: floor, rounding and how often they may change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub floor: f64,
    pub step: f64,
    pub hold_ms: i64,
    pub min_change: f64,
}

impl Policy {
    pub fn round(&self, v: f64) -> f64 {
        let v = if v.is_finite() { v.max(self.floor) } else { self.floor };
        if self.step > 0.0 { (v / self.step - 1e-9).ceil() * self.step } else { v }
    }

    /// The requests in force over intervals starting at `starts` for the wanted values,
    /// and how many times they changed.
    pub fn apply(&self, starts: &[i64], wanted: &[f64]) -> (Vec<f64>, usize) {
        let mut out = Vec::with_capacity(wanted.len());
        let (mut current, mut since, mut changes) = (None::<f64>, i64::MIN, 0);
        for (&t, &w) in starts.iter().zip(wanted) {
            let w = self.round(w);
            match current {
                Some(c) if (w - c).abs() <= self.min_change * c || t.saturating_sub(since) < self.hold_ms => {}
                Some(_) => {
                    current = Some(w);
                    since = t;
                    changes += 1;
                }
                None => {
                    current = Some(w);
                    since = t;
                }
            }
            out.push(current.expect("set above"));
        }
        (out, changes)
    }
}

/// The outcome of replaying usage against requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Replay {
    /// Σ requested × time, Σ used × time, Σ max(requested − used, 0) × time (unit-hours).
    pub provisioned: f64,
    pub used: f64,
    pub slack: f64,
    /// Steps with usage above the line (request for CPU, limit for memory), and all steps.
    pub under_steps: usize,
    pub steps: usize,
    pub changes: usize,
}

impl Replay {
    /// `line[i]` is what usage `used[i]` must stay under; `request[i]` what was reserved.
    pub fn add(&mut self, request: f64, line: f64, used: f64, hours: f64) {
        self.provisioned += request * hours;
        self.used += used * hours;
        self.slack += (request - used).max(0.0) * hours;
        self.under_steps += usize::from(used > line);
        self.steps += 1;
    }

    pub fn merge(&mut self, other: &Replay) {
        self.provisioned += other.provisioned;
        self.used += other.used;
        self.slack += other.slack;
        self.under_steps += other.under_steps;
        self.steps += other.steps;
        self.changes += other.changes;
    }

    pub fn slack_pct(&self) -> f64 {
        100.0 * self.slack / self.provisioned
    }

    pub fn under_pct(&self) -> f64 {
        100.0 * self.under_steps as f64 / self.steps as f64
    }
}

/// Replays the actual usage in `forecasts` over `intervals` against the requests `policy`
/// makes of `wanted`; `limit` is the limit as a multiple of the request, `unit` the size
/// of the reported unit (1 core, 1 GiB).
fn replay(
    intervals: &[Interval],
    forecasts: &Forecasts,
    wanted: &[f64],
    policy: &Policy,
    limit: f64,
    unit: f64,
    step_ms: i64,
) -> Replay {
    let starts: Vec<i64> = intervals.iter().map(|i| i.start).collect();
    let (requests, changes) = policy.apply(&starts, wanted);
    let mut out = Replay { changes, ..Default::default() };
    for (iv, request) in intervals.iter().zip(&requests) {
        for &(n, h) in &iv.cells {
            out.add(request / unit, request * limit / unit, forecasts.actual[n][h] / unit, step_ms as f64 / 3.6e6);
        }
    }
    out
}

/// The model's slack at a given under-provisioned time, read off its trade-off curve
/// (points `(under %, slack %)`) by linear interpolation; `None` outside its range.
pub fn slack_at(curve: &[(f64, f64)], under: f64) -> Option<f64> {
    let mut c: Vec<(f64, f64)> = curve.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    // Per under-provisioned time keep the least slack: the best the model offers there.
    c.dedup_by(|b, a| a.0 == b.0);
    let i = c.iter().position(|p| p.0 >= under)?;
    if c[i].0 == under || i == 0 {
        return (c[i].0 == under).then_some(c[i].1);
    }
    let (a, b) = (c[i - 1], c[i]);
    Some(a.1 + (b.1 - a.1) * (under - a.0) / (b.0 - a.0))
}

impl StageParams for PlanParams {
    const KIND: &'static str = "plan.resources";

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        let hold_ms = match parse_duration(&self.hold) {
            Some(ms) if ms >= 0 => ms,
            _ => {
                problems.push(ParamProblem::new(
                    &["hold"],
                    format!("`{}` is not a duration", self.hold),
                    "e.g. 30m, 1h",
                ));
                0
            }
        };
        let interval_ms = match self.interval.as_deref().map(parse_duration) {
            None => None,
            Some(Some(ms)) if ms > 0 => Some(ms),
            Some(_) => {
                problems.push(ParamProblem::new(&["interval"], "not a positive duration", "e.g. 10m, 1h"));
                None
            }
        };
        let mut policy = |name: &str, r: &ResourceParams, example: &str| {
            let mut quantity = |field: &str, text: &str| {
                parse_quantity(text).unwrap_or_else(|| {
                    problems.push(ParamProblem::new(
                        &[name, field],
                        format!("`{text}` is not a quantity"),
                        format!("e.g. {example}"),
                    ));
                    0.0
                })
            };
            let (floor, step) = (quantity("min", &r.min), quantity("step", &r.step));
            if r.source != "point" && level_of(&r.source).is_none() {
                problems.push(ParamProblem::new(
                    &[name, "source"],
                    format!("`{}` is neither `point` nor a quantile", r.source),
                    "e.g. p90",
                ));
            }
            if !(r.margin.is_finite() && r.margin >= 0.0) {
                problems.push(ParamProblem::new(&[name, "margin"], "must be a fraction ≥ 0", "e.g. 0.1 for 10 %"));
            }
            Policy { floor, step, hold_ms, min_change: self.min_change }
        };
        let cpu = policy("cpu", &self.cpu, "10m or 0.01");
        let memory = policy("memory", &self.memory, "32Mi");
        if !(self.min_change.is_finite() && self.min_change >= 0.0) {
            problems.push(ParamProblem::new(&["min_change"], "must be a fraction ≥ 0", "e.g. 0.1 for 10 %"));
        }
        if !(self.memory_limit_factor.is_finite() && self.memory_limit_factor >= 1.0) {
            problems.push(ParamProblem::new(&["memory_limit_factor"], "must be at least 1", "1 sets limit = request"));
        }
        if self.sweep.iter().any(|m| !(m.is_finite() && *m >= 0.0)) {
            problems.push(ParamProblem::new(&["sweep"], "margins must be fractions ≥ 0", "e.g. [0, 0.1, 0.2, 0.5]"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Box::new(Plan { params: self, cpu, memory, interval_ms }))
    }
}

fn level_of(source: &str) -> Option<u32> {
    source.strip_prefix('p').and_then(|n| n.parse().ok()).filter(|n| (1..100).contains(n))
}

struct Plan {
    params: PlanParams,
    cpu: Policy,
    memory: Policy,
    interval_ms: Option<i64>,
}

/// The model's forecasts of one series and resource, per origin: step times, actuals and
/// every forecast column (`forecast`, `p50`, …).
#[derive(Default)]
struct Forecasts {
    origins: Vec<i64>,
    times: Vec<Vec<i64>>,
    actual: Vec<Vec<f64>>,
    columns: BTreeMap<String, Vec<Vec<f64>>>,
}

/// A way to set requests, replayed over the test part.
#[derive(Debug, Clone)]
struct Setting {
    method: &'static str,
    label: String,
    /// Per resource (CPU, memory): the configured setting (model) or the tool's default.
    default: [bool; 2],
    /// Model: forecast column and margin; VPA: percentile; KRR: CPU percentile, memory buffer.
    column: String,
    a: f64,
    b: f64,
}

impl Stage for Plan {
    fn reads(&self) -> Vec<String> {
        vec!["forecasts".into(), "resampled".into()]
    }

    fn writes(&self) -> Vec<Output> {
        vec![
            Output::table("plan"),
            Output::artifact("plan.csv"),
            Output::artifact("patches.yaml"),
            Output::artifact("vpa.yaml"),
            Output::table("plan_backtest"),
            Output::table("plan_comparison"),
        ]
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let p = &self.params;
        let usage = read_usage(&ctx.read_table("resampled")?)?;
        let (past, future, columns, step_ms) = read_forecasts(&ctx.read_table("forecasts")?)?;
        let present = RESOURCES.map(|r| past.keys().chain(future.keys()).any(|(_, res)| res == r));
        let column = |r: usize, params: &ResourceParams| -> Result<String, BoxError> {
            let c = if params.source == "point" { "forecast".to_string() } else { params.source.clone() };
            if present[r] && !columns.contains(&c) {
                return Err(format!(
                    "{}.source `{}`: the model forecasts [{}]; choose one of them (or `point`)",
                    RESOURCES[r],
                    params.source,
                    columns
                        .iter()
                        .map(|c| if c == "forecast" { "point" } else { c.as_str() })
                        .collect::<Vec<_>>()
                        .join(", ")
                )
                .into());
            }
            Ok(c)
        };
        let sources = [(column(0, &p.cpu)?, p.cpu.margin), (column(1, &p.memory)?, p.memory.margin)];
        let horizon_ms = past
            .values()
            .chain(future.values())
            .find_map(|f| f.times.first().map(|t| t.last().copied().unwrap_or(0) - f.origins[0]));
        let interval_ms = self.interval_ms.or(horizon_ms).unwrap_or(step_ms).max(step_ms);

        // Settings: every quantile × margin of the model (the configured ones flagged per
        // resource), VPA's and KRR's knobs (their defaults flagged).
        let mut settings = Vec::new();
        for c in &columns {
            for &m in &p.sweep {
                settings.push(Setting {
                    method: "model",
                    label: label(c, m),
                    default: [false; 2],
                    column: c.clone(),
                    a: m,
                    b: 0.0,
                });
            }
        }
        for (r, (c, m)) in sources.iter().enumerate().filter(|(r, _)| present[*r]) {
            match settings.iter_mut().find(|s| &s.column == c && s.a == *m) {
                Some(s) => s.default[r] = true,
                None => {
                    let mut default = [false; 2];
                    default[r] = true;
                    settings.push(Setting {
                        method: "model",
                        label: label(c, *m),
                        default,
                        column: c.clone(),
                        a: *m,
                        b: 0.0,
                    });
                }
            }
        }
        for pct in [0.5, 0.8, 0.9, 0.95, 0.99] {
            settings.push(Setting {
                method: "vpa",
                label: format!("p{}+15%", (pct * 100.0) as u32),
                default: [pct == 0.9; 2],
                column: String::new(),
                a: pct,
                b: 0.0,
            });
        }
        for (pct, buffer) in [(50.0, 0.0), (80.0, 0.05), (90.0, 0.1), (95.0, 0.15), (99.0, 0.3)] {
            settings.push(Setting {
                method: "krr",
                label: format!("cpu p{pct} / memory max+{}%", (buffer * 100.0) as u32),
                default: [pct == 95.0; 2],
                column: String::new(),
                a: pct,
                b: buffer,
            });
        }

        // Replay: (setting, resource) → totals; defaults also per series.
        let policies = [&self.cpu, &self.memory];
        let mut totals: BTreeMap<(usize, &str), Replay> = BTreeMap::new();
        let mut per_series: BTreeMap<(usize, &str, String), Replay> = BTreeMap::new();
        for (key, series) in &usage {
            let forecasts = RESOURCES.map(|r| past.get(&(key.clone(), r.to_string())));
            // Both targets of one model share their origins, so either gives the intervals.
            let Some(first) = forecasts.iter().flatten().next() else { continue };
            let intervals = intervals(first, interval_ms);
            for (s, setting) in settings.iter().enumerate() {
                let want = wanted(setting, &intervals, forecasts, series);
                for (r, f) in forecasts.iter().enumerate() {
                    let Some(f) = f else { continue };
                    let resource = RESOURCES[r];
                    let (limit, unit) =
                        if resource == "memory" { (p.memory_limit_factor, MIB * 1024.0) } else { (1.0, 1.0) };
                    let replay = replay(&intervals, f, &want[r], policies[r], limit, unit, step_ms);
                    totals.entry((s, resource)).or_default().merge(&replay);
                    if setting.default[r] {
                        per_series.insert((s, resource, key.clone()), replay);
                    }
                }
            }
        }
        if totals.is_empty() {
            return Err(
                "no series has forecasts of cpu or memory with actuals: run evaluate.backtest on a model of them"
                    .into(),
            );
        }
        let (schema, batch) = backtest_table(&settings, &totals, &per_series)?;
        ctx.write_table("plan_backtest", schema, &[batch])?;
        let (schema, batch, comparison) = comparison_table(&settings, &totals)?;
        ctx.write_table("plan_comparison", schema, &[batch])?;

        // The plan ahead, from the forecast past the end of the data.
        let plan = forward_plan(&future, &sources, interval_ms, policies, p.memory_limit_factor, &columns);
        let (schema, batch) = plan_table(&plan)?;
        ctx.write_artifact("plan.csv", applearner_train::predict::to_csv(&batch)?)?;
        ctx.write_table("plan", schema, &[batch])?;
        ctx.write_artifact("patches.yaml", patches(&plan, &sources))?;
        ctx.write_artifact("vpa.yaml", vpa_objects(&plan))?;

        let mut summary = Summary::new();
        summary.insert("workloads".into(), plan.len().into());
        summary.insert("interval_s".into(), (interval_ms / 1000).into());
        for ((s, resource), r) in &totals {
            if settings[*s].default[usize::from(*resource == "memory")] {
                let name = format!("{}_{resource}", settings[*s].method);
                summary.insert(format!("{name}_slack_pct"), round2(r.slack_pct()).into());
                summary.insert(format!("{name}_under_pct"), round2(r.under_pct()).into());
            }
        }
        for c in comparison {
            summary.insert(
                format!("model_{}_slack_pct_at_{}_under", c.resource, c.baseline),
                c.model_slack.map(round2).into(),
            );
        }
        Ok(summary)
    }
}

/// The resources plans are made for, in the order of `[cpu, memory]` arrays.
const RESOURCES: [&str; 2] = ["cpu", "memory"];

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn label(column: &str, margin: f64) -> String {
    let name = if column == "forecast" { "point" } else { column };
    if margin == 0.0 { name.to_string() } else { format!("{name}+{}%", (margin * 100.0).round()) }
}

type ByKey = BTreeMap<(String, String), Forecasts>;

/// The model's rows of `forecasts`: with actuals (the test part) and past the end (ahead);
/// also the forecast columns and the grid step.
fn read_forecasts(batches: &[RecordBatch]) -> Result<(ByKey, ByKey, Vec<String>, i64), BoxError> {
    let (mut past, mut future) = (ByKey::new(), ByKey::new());
    let mut columns = Vec::new();
    let mut step_ms = i64::MAX;
    for b in batches {
        let schema = b.schema();
        columns = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n == "forecast" || level_of(n).is_some())
            .collect();
        let (method, key, resource) =
            (strings(b, "forecasts", "method")?, strings(b, "forecasts", "key")?, strings(b, "forecasts", "resource")?);
        let (origin, time, actual) =
            (ints(b, "forecasts", "origin")?, ints(b, "forecasts", "timestamp")?, floats(b, "forecasts", "actual")?);
        let values: Vec<Vec<f64>> = columns.iter().map(|c| floats(b, "forecasts", c)).collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            if method[i] != "model" {
                continue;
            }
            step_ms = step_ms.min(time[i] - origin[i]);
            let map = if actual[i].is_finite() { &mut past } else { &mut future };
            let f = map.entry((key[i].clone(), resource[i].clone())).or_default();
            if f.origins.last() != Some(&origin[i]) {
                f.origins.push(origin[i]);
                f.times.push(Vec::new());
                f.actual.push(Vec::new());
                for c in &columns {
                    f.columns.entry(c.clone()).or_default().push(Vec::new());
                }
            }
            f.times.last_mut().expect("pushed").push(time[i]);
            f.actual.last_mut().expect("pushed").push(actual[i]);
            for (c, v) in columns.iter().zip(&values) {
                f.columns.get_mut(c).expect("made").last_mut().expect("pushed").push(v[i]);
            }
        }
    }
    if step_ms == i64::MAX {
        return Err("the forecasts table has no model forecasts: run evaluate.backtest first".into());
    }
    Ok((past, future, columns, step_ms))
}

/// A planning interval: when it starts and the (origin, step) cells it covers.
struct Interval {
    start: i64,
    cells: Vec<(usize, usize)>,
}

/// Intervals from origins at least a horizon apart, each horizon cut every `interval_ms`.
fn intervals(f: &Forecasts, interval_ms: i64) -> Vec<Interval> {
    let mut out: Vec<Interval> = Vec::new();
    let mut covered_until = i64::MIN;
    for (n, &o) in f.origins.iter().enumerate() {
        if o < covered_until {
            continue;
        }
        for (h, &t) in f.times[n].iter().enumerate() {
            let start = o + (t - o - 1).div_euclid(interval_ms) * interval_ms;
            match out.last_mut() {
                Some(iv) if iv.start == start => iv.cells.push((n, h)),
                _ => out.push(Interval { start, cells: vec![(n, h)] }),
            }
        }
        covered_until = f.times[n].last().copied().unwrap_or(o);
    }
    out
}

/// What a setting asks for in each interval, CPU and memory.
/// What a setting asks for in each interval, per resource (empty where not forecast).
fn wanted(s: &Setting, intervals: &[Interval], forecasts: [Option<&Forecasts>; 2], series: &Usage) -> [Vec<f64>; 2] {
    let samples = || series.samples();
    let (cpu, memory): (Vec<f64>, Vec<f64>) = match s.method {
        "model" => {
            let peak = |f: Option<&Forecasts>| -> Vec<f64> {
                let Some(f) = f else { return Vec::new() };
                let values = &f.columns[&s.column];
                intervals
                    .iter()
                    .map(|iv| iv.cells.iter().map(|&(n, h)| values[n][h]).fold(f64::MIN, f64::max) * (1.0 + s.a))
                    .collect()
            };
            return [peak(forecasts[0]), peak(forecasts[1])];
        }
        "vpa" => {
            let samples = samples();
            let mut vpa = Vpa::new(VpaSettings { percentile: s.a, ..Default::default() });
            let mut fed = 0;
            intervals
                .iter()
                .map(|iv| {
                    while fed < samples.len() && samples[fed].0 <= iv.start {
                        vpa.add(samples[fed].0, samples[fed].1, samples[fed].2);
                        fed += 1;
                    }
                    vpa.target().unwrap_or((f64::NAN, f64::NAN))
                })
                .unzip()
        }
        _ => {
            let samples = samples();
            let settings = KrrSettings { cpu_percentile: s.a, memory_buffer: s.b, ..Default::default() };
            intervals.iter().map(|iv| krr(&settings, &samples, iv.start).unwrap_or((f64::NAN, f64::NAN))).unzip()
        }
    };
    [cpu, memory]
}

fn backtest_table(
    settings: &[Setting],
    totals: &BTreeMap<(usize, &str), Replay>,
    per_series: &BTreeMap<(usize, &str, String), Replay>,
) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let mut c = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut v: [Vec<f64>; 7] = Default::default();
    let rows = totals
        .iter()
        .map(|((s, r), x)| (*s, *r, String::new(), x))
        .chain(per_series.iter().map(|((s, r, k), x)| (*s, *r, k.clone(), x)));
    for (s, resource, key, x) in rows {
        c.0.push(settings[s].method.to_string());
        c.1.push(settings[s].label.clone());
        c.2.push(if settings[s].default[usize::from(resource == "memory")] { "yes" } else { "no" }.to_string());
        c.3.push(resource.to_string());
        c.4.push(key);
        for (slot, value) in v.iter_mut().zip([
            x.provisioned,
            x.used,
            x.slack,
            x.slack_pct(),
            x.under_pct(),
            x.under_steps as f64,
            x.changes as f64,
        ]) {
            slot.push(value);
        }
    }
    let [provisioned, used, slack, slack_pct, under_pct, under_steps, changes] = v;
    TableBuilder::default()
        .strings("method", c.0)
        .strings("setting", c.1)
        .strings("default", c.2)
        .strings("resource", c.3)
        // Empty: all series together.
        .strings("key", c.4)
        // Core-hours for CPU, GiB-hours for memory.
        .floats("provisioned_hours", provisioned)
        .floats("used_hours", used)
        .floats("slack_hours", slack)
        .floats("slack_pct", slack_pct)
        .floats("under_provisioned_pct", under_pct)
        .floats("under_provisioned_steps", under_steps)
        .floats("changes", changes)
        .finish()
}

pub struct Comparison {
    pub resource: &'static str,
    pub baseline: &'static str,
    pub baseline_under: f64,
    pub baseline_slack: f64,
    pub model_slack: Option<f64>,
}

fn comparison_table(
    settings: &[Setting],
    totals: &BTreeMap<(usize, &str), Replay>,
) -> Result<(SchemaRef, RecordBatch, Vec<Comparison>), BoxError> {
    let mut out = Vec::new();
    for resource in ["cpu", "memory"] {
        let curve: Vec<(f64, f64)> = totals
            .iter()
            .filter(|((s, r), _)| *r == resource && settings[*s].method == "model")
            .map(|(_, x)| (x.under_pct(), x.slack_pct()))
            .collect();
        for baseline in ["vpa", "krr"] {
            let Some((_, x)) = totals
                .iter()
                .find(|((s, r), _)| *r == resource && settings[*s].method == baseline && settings[*s].default[0])
            else {
                continue;
            };
            out.push(Comparison {
                resource,
                baseline,
                baseline_under: x.under_pct(),
                baseline_slack: x.slack_pct(),
                model_slack: slack_at(&curve, x.under_pct()),
            });
        }
    }
    let (schema, batch) = TableBuilder::default()
        .strings("resource", out.iter().map(|c| c.resource.to_string()).collect())
        .strings("baseline", out.iter().map(|c| c.baseline.to_string()).collect())
        .floats("baseline_under_provisioned_pct", out.iter().map(|c| c.baseline_under).collect())
        .floats("baseline_slack_pct", out.iter().map(|c| c.baseline_slack).collect())
        // Null where the model's curve does not reach that under-provisioned time.
        .floats("model_slack_pct", out.iter().map(|c| c.model_slack.unwrap_or(f64::NAN)).collect())
        .finish()?;
    Ok((schema, batch, out))
}

/// One interval of the plan ahead: CPU and memory requests and the memory limit, for the
/// resources the model forecasts.
pub struct Planned {
    pub from: i64,
    pub until: i64,
    pub requests: [Option<f64>; 2],
    pub limit: Option<f64>,
}

/// One workload's plan ahead.
pub struct WorkloadPlan {
    pub key: String,
    pub namespace: String,
    pub workload: String,
    pub container: String,
    pub intervals: Vec<Planned>,
    /// Over the whole horizon, from the lowest and highest quantile: VPA's bounds.
    pub lower: [Option<f64>; 2],
    pub upper: [Option<f64>; 2],
}

impl WorkloadPlan {
    /// What to set now to cover every interval planned: requests and memory limit.
    pub fn peak(&self) -> ([Option<f64>; 2], Option<f64>) {
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.intervals.iter().fold(([None; 2], None), |(r, l), i| {
            ([max(r[0], i.requests[0]), max(r[1], i.requests[1])], max(l, i.limit))
        })
    }
}

fn forward_plan(
    future: &ByKey,
    sources: &[(String, f64); 2],
    interval_ms: i64,
    policies: [&Policy; 2],
    limit_factor: f64,
    columns: &[String],
) -> Vec<WorkloadPlan> {
    let mut keys: Vec<&String> = future.keys().map(|(k, _)| k).collect();
    keys.dedup();
    let quantiles: Vec<&String> = columns.iter().filter(|c| *c != "forecast").collect();
    // Bounds from the lowest and highest quantile forecast (the point forecast if none).
    let (lo, hi) = match (quantiles.first(), quantiles.last()) {
        (Some(lo), Some(hi)) => (lo.as_str(), hi.as_str()),
        _ => ("forecast", "forecast"),
    };
    let mut out = Vec::new();
    for key in keys {
        let forecasts = RESOURCES.map(|r| future.get(&(key.clone(), r.to_string())));
        let Some(first) = forecasts.iter().flatten().next() else { continue };
        let ivs = intervals(first, interval_ms);
        let peak = |f: &Forecasts, iv: &Interval, column: &str, m: f64| {
            iv.cells.iter().map(|&(n, h)| f.columns[column][n][h]).fold(f64::MIN, f64::max) * (1.0 + m)
        };
        let request =
            |r: usize, iv: &Interval| forecasts[r].map(|f| policies[r].round(peak(f, iv, &sources[r].0, sources[r].1)));
        let intervals = ivs
            .iter()
            .map(|iv| {
                let requests = [request(0, iv), request(1, iv)];
                Planned {
                    from: iv.start,
                    until: iv.cells.last().map_or(iv.start, |&(n, h)| first.times[n][h]),
                    requests,
                    limit: requests[1].map(|m| policies[1].round(m * limit_factor)),
                }
            })
            .collect();
        let bound = |column: &str| {
            [0, 1].map(|r| {
                forecasts[r]
                    .map(|f| policies[r].round(ivs.iter().map(|iv| peak(f, iv, column, 0.0)).fold(f64::MIN, f64::max)))
            })
        };
        let parts: Vec<&str> = key.splitn(3, '/').collect();
        let (namespace, workload, container) = match parts.as_slice() {
            [n, w, c] => (n.to_string(), w.to_string(), c.to_string()),
            _ => (String::new(), key.clone(), key.clone()),
        };
        out.push(WorkloadPlan {
            key: key.clone(),
            namespace,
            workload,
            container,
            intervals,
            lower: bound(lo),
            upper: bound(hi),
        });
    }
    out
}

fn plan_table(plan: &[WorkloadPlan]) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let rows: Vec<(&WorkloadPlan, &Planned)> =
        plan.iter().flat_map(|w| w.intervals.iter().map(move |i| (w, i))).collect();
    let mut t = TableBuilder::default()
        .strings("key", rows.iter().map(|(w, _)| w.key.clone()).collect())
        .strings("namespace", rows.iter().map(|(w, _)| w.namespace.clone()).collect())
        .strings("workload", rows.iter().map(|(w, _)| w.workload.clone()).collect())
        .strings("container", rows.iter().map(|(w, _)| w.container.clone()).collect())
        .times("from", rows.iter().map(|(_, i)| i.from).collect())
        .times("until", rows.iter().map(|(_, i)| i.until).collect());
    // Columns only for the resources planned.
    if rows.iter().any(|(_, i)| i.requests[0].is_some()) {
        t = t.floats("cpu_request_cores", rows.iter().map(|(_, i)| i.requests[0].unwrap_or(f64::NAN)).collect());
    }
    if rows.iter().any(|(_, i)| i.requests[1].is_some()) {
        t = t
            .floats("memory_request_bytes", rows.iter().map(|(_, i)| i.requests[1].unwrap_or(f64::NAN)).collect())
            .floats("memory_limit_bytes", rows.iter().map(|(_, i)| i.limit.unwrap_or(f64::NAN)).collect());
    }
    t.finish()
}

/// `cpu: 35m, memory: 64Mi` for the resources planned.
fn quantities(values: [Option<f64>; 2]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(c) = values[0] {
        out.push(("cpu", format_cpu(c)));
    }
    if let Some(m) = values[1] {
        out.push(("memory", format_memory(m)));
    }
    out
}

/// One strategic-merge patch per workload, as a multi-document YAML file.
fn patches(plan: &[WorkloadPlan], sources: &[(String, f64); 2]) -> String {
    let mut out = format!(
        "# Container resources planned by AppLearner (CPU from the {} forecast, memory from the {} forecast),\n\
         # each the peak over every interval planned.\n\
         # Apply one workload: kubectl patch deployment NAME -n NAMESPACE --type strategic --patch-file <(its document)\n\
         # or all of them: kubectl apply --server-side --field-manager=applearner -f patches.yaml\n\
         # Workloads are assumed to be Deployments; change `kind` for StatefulSets and DaemonSets.\n",
        label(&sources[0].0, sources[0].1),
        label(&sources[1].0, sources[1].1),
    );
    for w in plan {
        let (requests, limit) = w.peak();
        let _ = write!(
            out,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  template:\n    spec:\n      containers:\n        - name: {}\n          resources:\n            requests:\n",
            w.workload, w.namespace, w.container,
        );
        for (name, q) in quantities(requests) {
            let _ = writeln!(out, "              {name}: {q}");
        }
        if let Some(limit) = limit {
            let _ = write!(out, "            limits:\n              memory: {}\n", format_memory(limit));
        }
    }
    out
}

/// VerticalPodAutoscaler objects in recommendation form, updates off: VPA-aware tooling
/// (dashboards, Goldilocks-style reports) reads the plan where it reads VPA's.
fn vpa_objects(plan: &[WorkloadPlan]) -> String {
    let mut out = String::from(
        "# AppLearner's plan as VerticalPodAutoscaler recommendations (updateMode Off: nothing is evicted).\n",
    );
    let map = |values: [Option<f64>; 2]| {
        let inner: Vec<String> = quantities(values).into_iter().map(|(n, q)| format!("{n}: {q}")).collect();
        format!("{{{}}}", inner.join(", "))
    };
    for w in plan {
        let (requests, _) = w.peak();
        let _ = write!(
            out,
            "---\napiVersion: autoscaling.k8s.io/v1\nkind: VerticalPodAutoscaler\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  targetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: {}\n  updatePolicy:\n    updateMode: \"Off\"\nstatus:\n  recommendation:\n    containerRecommendations:\n      - containerName: {}\n        target: {}\n        uncappedTarget: {}\n        lowerBound: {}\n        upperBound: {}\n",
            w.workload,
            w.namespace,
            w.workload,
            w.container,
            map(requests),
            map(requests),
            map(w.lower),
            map(w.upper),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_and_format_like_kubernetes() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("-1"), None);
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * MIB));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("8Gi"), Some(8.0 * MIB * 1024.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(format_cpu(0.035), "35m");
        assert_eq!(format_cpu(2.0), "2");
        assert_eq!(format_memory(64.0 * MIB), "64Mi");
        assert_eq!(format_memory(1000.0), "1000");
    }

    #[test]
    fn policy_floors_rounds_and_caps_changes() {
        let p = Policy { floor: 0.01, step: 0.005, hold_ms: 30, min_change: 0.1 };
        assert!((p.round(0.0) - 0.01).abs() < 1e-12);
        assert!((p.round(0.0121) - 0.015).abs() < 1e-12);
        assert!((p.round(0.015) - 0.015).abs() < 1e-12);
        // t=0 sets 0.1; t=10 wants +50 % but the hold (30) blocks it; t=30 may change;
        // t=40 wants +5 %: below min_change; t=60 drops.
        let (r, changes) = p.apply(&[0, 10, 30, 40, 60], &[0.1, 0.15, 0.15, 0.157, 0.05]);
        let expect = [0.1, 0.1, 0.15, 0.15, 0.05];
        for (a, b) in r.iter().zip(expect) {
            assert!((a - b).abs() < 1e-9, "{r:?}");
        }
        assert_eq!(changes, 2);
    }

    #[test]
    fn replay_of_a_hand_made_series_gives_the_known_answer() {
        // Request 2 cores for 4 one-hour steps of usage 1, 2, 3, 0.5 cores:
        // provisioned 8, used 6.5, slack 1 + 0 + 0 + 1.5 = 2.5 core-hours (31.25 %),
        // under-provisioned 1 step of 4 (25 %).
        let mut r = Replay::default();
        for used in [1.0, 2.0, 3.0, 0.5] {
            r.add(2.0, 2.0, used, 1.0);
        }
        assert_eq!((r.provisioned, r.used, r.slack), (8.0, 6.5, 2.5));
        assert_eq!(r.slack_pct(), 31.25);
        assert_eq!(r.under_pct(), 25.0);
        // A limit above the request: usage 3 no longer crosses it.
        let mut r = Replay::default();
        r.add(2.0, 4.0, 3.0, 1.0);
        assert_eq!(r.under_steps, 0);
    }

    #[test]
    fn slack_is_read_off_the_curve_at_matched_under_provisioning() {
        // (under %, slack %): more headroom, less under-provisioning, more slack.
        let curve = [(20.0, 10.0), (10.0, 30.0), (0.0, 60.0), (10.0, 40.0)];
        assert_eq!(slack_at(&curve, 15.0), Some(20.0));
        // At 10 % two settings: the one with less slack counts.
        assert_eq!(slack_at(&curve, 10.0), Some(30.0));
        assert_eq!(slack_at(&curve, 5.0), Some(45.0));
        assert_eq!(slack_at(&curve, 25.0), None);
    }

    #[test]
    fn a_hand_made_plan_replays_to_the_known_answer() {
        // Two origins an hour apart, each forecasting two half-hour steps (p90 column);
        // planning interval one hour: the request is the peak p90 of each hour.
        const H: i64 = 3_600_000;
        let f = Forecasts {
            origins: vec![0, H],
            times: vec![vec![H / 2, H], vec![3 * H / 2, 2 * H]],
            actual: vec![vec![0.10, 0.30], vec![0.20, 0.05]],
            columns: [("p90".to_string(), vec![vec![0.15, 0.20], vec![0.25, 0.12]])].into(),
        };
        let ivs = intervals(&f, H);
        assert_eq!(ivs.len(), 2);
        let setting =
            Setting { method: "model", label: "p90".into(), default: [true; 2], column: "p90".into(), a: 0.0, b: 0.0 };
        let [want, memory] = wanted(&setting, &ivs, [Some(&f), None], &Usage::default());
        assert_eq!(want, vec![0.20, 0.25]);
        assert!(memory.is_empty());
        // Rounded up to 0.05 cores: 0.20 then 0.25 (a 25 % change, allowed after an hour).
        let policy = Policy { floor: 0.01, step: 0.05, hold_ms: H, min_change: 0.1 };
        let r = replay(&ivs, &f, &want, &policy, 1.0, 1.0, H / 2);
        // Half-hour steps: requested (0.2 + 0.2 + 0.25 + 0.25) / 2 = 0.45 core-hours,
        // used (0.1 + 0.3 + 0.2 + 0.05) / 2 = 0.325, slack (0.1 + 0 + 0.05 + 0.2) / 2 = 0.175;
        // one step of four above the request (0.3 > 0.2); one change.
        assert!((r.provisioned - 0.45).abs() < 1e-12 && (r.used - 0.325).abs() < 1e-12, "{r:?}");
        assert!((r.slack - 0.175).abs() < 1e-12, "{r:?}");
        assert_eq!((r.under_steps, r.steps, r.changes), (1, 4, 1));
        // A one-day hold keeps the first request: 0.2 throughout, and the third step (0.2)
        // is not above it.
        let held = replay(&ivs, &f, &want, &Policy { hold_ms: 24 * H, ..policy }, 1.0, 1.0, H / 2);
        assert_eq!((held.under_steps, held.changes), (1, 0));
        assert!((held.provisioned - 0.4).abs() < 1e-12);
    }

    #[test]
    fn intervals_tile_the_horizons_of_non_overlapping_origins() {
        // Origins 0, 10, 30 with 3 steps of 10: the one at 10 overlaps the first and is skipped.
        let f = Forecasts {
            origins: vec![0, 10, 30],
            times: vec![vec![10, 20, 30], vec![20, 30, 40], vec![40, 50, 60]],
            ..Default::default()
        };
        let ivs = intervals(&f, 20);
        let got: Vec<(i64, Vec<(usize, usize)>)> = ivs.into_iter().map(|i| (i.start, i.cells)).collect();
        assert_eq!(
            got,
            vec![(0, vec![(0, 0), (0, 1)]), (20, vec![(0, 2)]), (30, vec![(2, 0), (2, 1)]), (50, vec![(2, 2)])]
        );
    }
}
