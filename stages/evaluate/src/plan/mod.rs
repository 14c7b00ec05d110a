//! `plan.resources`: container requests (and memory limits) per workload and planning
//! interval, made from the model's forecasts, and the plan backtest: the usage that really
//! followed replayed against the model's plans and against what VPA and KRR would have set.

mod ahead;
mod replay;
mod tables;
#[cfg(test)]
mod tests;

use ahead::*;
use replay::*;
use tables::*;

use std::collections::BTreeMap;
use std::fmt::Write;

use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::arrow::datatypes::SchemaRef;
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{
    BoxError, Duration, Output, ParamProblem, QuantileSource, Quantity, Stage, StageContext, StageParams, Summary,
};
use serde::{Deserialize, Serialize};

use crate::EvaluateError;
use crate::recommend::{KrrSettings, MIB, Vpa, VpaSettings, krr};
use crate::table::{TableBuilder, Usage, read_usage};
use applearner_contracts::Resource;
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
    pub interval: Option<Duration>,
    /// A plan changes at most once per this long (pods restart to take new requests)…
    #[serde(default = "default_hold")]
    pub hold: Duration,
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
    pub source: QuantileSource,
    /// Headroom on top of it, as a fraction (0.1 = +10 %).
    #[serde(default)]
    pub margin: f64,
    /// The smallest request: CPU as `10m` or cores, memory as `32Mi`, `1Gi` or bytes.
    pub min: Quantity,
    /// Requests are rounded up to a multiple of this (`5m`, `4Mi`).
    pub step: Quantity,
}

fn default_cpu() -> ResourceParams {
    let q = |t: &str| t.parse().expect("a valid default");
    ResourceParams { source: QuantileSource::Percentile(90), margin: 0.0, min: q("10m"), step: q("5m") }
}
fn default_memory() -> ResourceParams {
    let q = |t: &str| t.parse().expect("a valid default");
    ResourceParams { source: QuantileSource::Percentile(99), margin: 0.2, min: q("32Mi"), step: q("4Mi") }
}
fn one() -> f64 {
    1.0
}
fn default_hold() -> Duration {
    "30m".parse().expect("a valid default")
}
fn default_min_change() -> f64 {
    0.1
}
fn default_sweep() -> Vec<f64> {
    vec![0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0]
}

impl StageParams for PlanParams {
    const KIND: &'static str = "plan.resources";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        let (hold_ms, interval_ms) = (self.hold.ms(), self.interval.as_ref().map(Duration::ms));
        let mut policy = |name: &str, r: &ResourceParams| {
            if !(r.margin.is_finite() && r.margin >= 0.0) {
                problems.push(ParamProblem::new(&[name, "margin"], "must be a fraction ≥ 0", "e.g. 0.1 for 10 %"));
            }
            Policy { floor: r.min.value(), step: r.step.value(), hold_ms, min_change: self.min_change }
        };
        let cpu = policy("cpu", &self.cpu);
        let memory = policy("memory", &self.memory);
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

struct Plan {
    params: PlanParams,
    cpu: Policy,
    memory: Policy,
    interval_ms: Option<i64>,
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
            let c = params.source.column();
            if present[r] && !columns.contains(&c) {
                let forecast = columns.iter().map(|c| if c == "forecast" { "point" } else { c.as_str() });
                return Err(EvaluateError::SourceNotForecast {
                    resource: RESOURCES[r],
                    asked: params.source.to_string(),
                    forecast: forecast.collect::<Vec<_>>().join(", "),
                }
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

        let settings = settings(&columns, &p.sweep, &sources, present);
        let bar = ctx.progress(usage.len() as u64, "series replayed");
        let (totals, per_series) = self.replay_all(&settings, &usage, &past, interval_ms, step_ms, &|| bar.inc(1));
        bar.finish();
        if totals.is_empty() {
            return Err(EvaluateError::NoActuals.into());
        }
        let (schema, batch) = backtest_table(&settings, &totals, &per_series)?;
        ctx.write_table("plan_backtest", schema, &[batch])?;
        let (schema, batch, comparison) = comparison_table(&settings, &totals)?;
        ctx.write_table("plan_comparison", schema, &[batch])?;

        // The plan ahead, from the forecast past the end of the data.
        let plan =
            forward_plan(&future, &sources, interval_ms, [&self.cpu, &self.memory], p.memory_limit_factor, &columns);
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

/// Every way to set requests that the backtest replays: each quantile × margin of the model
/// (the configured ones flagged per resource), VPA's and KRR's knobs (their defaults flagged).
fn settings(columns: &[String], sweep: &[f64], sources: &[(String, f64); 2], present: [bool; 2]) -> Vec<Setting> {
    let mut settings = Vec::new();
    for c in columns {
        for &m in sweep {
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

    settings
}

/// Replay totals per (setting, resource), and per series for the flagged settings.
type Totals<'a> = (BTreeMap<(usize, &'a str), Replay>, BTreeMap<(usize, &'a str, String), Replay>);

impl Plan {
    /// Replays every setting over the test part of every series; `tick` after each series.
    fn replay_all(
        &self,
        settings: &[Setting],
        usage: &BTreeMap<String, Usage>,
        past: &ByKey,
        interval_ms: i64,
        step_ms: i64,
        tick: &dyn Fn(),
    ) -> Totals<'static> {
        let policies = [&self.cpu, &self.memory];
        let mut totals: BTreeMap<(usize, &str), Replay> = BTreeMap::new();
        let mut per_series = BTreeMap::new();
        for (key, series) in usage {
            tick();
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
                        if resource == "memory" { (self.params.memory_limit_factor, MIB * 1024.0) } else { (1.0, 1.0) };
                    let replay = replay(&intervals, f, &want[r], policies[r], limit, unit, step_ms);
                    totals.entry((s, resource)).or_default().merge(&replay);
                    if setting.default[r] {
                        per_series.insert((s, resource, key.clone()), replay);
                    }
                }
            }
        }
        (totals, per_series)
    }
}

/// The resources plans are made for, in the order of `[cpu, memory]` arrays.
const RESOURCES: [&str; 2] = [Resource::Cpu.name(), Resource::Memory.name()];

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn label(column: &str, margin: f64) -> String {
    let name = if column == "forecast" { "point" } else { column };
    if margin == 0.0 { name.to_string() } else { format!("{name}+{}%", (margin * 100.0).round()) }
}
