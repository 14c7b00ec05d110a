//! `plan.resources`: container requests and limits per workload, sized from the model's
//! forecasts at a stated risk (calibrated on the validation part), and the plan backtest:
//! the test part's usage replayed against them, against KRR and VPA (at their defaults and
//! tuned to the same risk) and against the oracle, on several change budgets.

mod ahead;
mod calibrate;
mod compare;
mod current;
mod oracle;
mod policy;
mod replay;
mod tables;
#[cfg(test)]
mod tests;
mod timeline;

use ahead::*;
use calibrate::*;
use compare::*;
use current::*;
use oracle::*;
use policy::*;
use replay::*;
use tables::*;
use timeline::*;

use std::collections::BTreeMap;
use std::fmt::Write;

use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::arrow::datatypes::SchemaRef;
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{
    BoxError, Output, ParamProblem, QuantileSource, Quantity, Risk, Stage, StageContext, StageParams, Summary,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::EvaluateError;
use crate::recommend::MIB;
use crate::table::{TableBuilder, Usage, read_usage};
use applearner_contracts::Resource;
use applearner_contracts::tables::resampled::is_node;
use applearner_pipeline::columns::{floats, ints, strings};

/// Turns the model's forecasts (`forecasts` of evaluate.backtest, validation and test parts
/// and ahead) into resource plans. Each line (CPU request, optional CPU limit, memory
/// request, memory limit) is sized at the risk you state: the share of time usage may sit
/// above it. A rule (a forecast quantile's peak over the horizon, that peak never below a
/// recent quantile, or the recent quantile alone; limits never below a recent peak) times a
/// factor (per workload, shrunk toward the fleet's, or one for the fleet) that meets the risk
/// on the validation part; rule and factor pooling are chosen there by cross-validation in
/// time. Nothing is chosen on the test part.
/// Writes `plan` (and `plan.csv`: per workload, the lines to set now and how long they hold),
/// `patches.yaml` (strategic-merge patches of each workload's container resources, also valid
/// for server-side apply), `vpa.yaml` (VerticalPodAutoscaler objects holding the plan as their
/// recommendation, update mode Off), `plan_backtest` (per line, change budget, method and
/// setting: slack, time above the line and changes over the test part) and `plan_comparison`
/// (per line and budget: the model against KRR and VPA, default and tuned, and the oracle).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanParams {
    /// Whose forecasts plans are sized from: `auto` (per workload and resource, the
    /// backtest's choice on the validation part: the model or a baseline) or `model`.
    #[serde(default)]
    pub forecasts: Forecasts,
    /// CPU: the request at `request_risk` (default 1%); a limit only if `limit_risk` is set
    /// (above it CPU is throttled).
    #[serde(default)]
    pub cpu: ResourceParams,
    /// Memory: the request at `request_risk` (default 1%: above it a pod may be evicted under
    /// node pressure) and the limit at `limit_risk` (default 0.01%: above it it is OOM-killed).
    #[serde(default)]
    pub memory: ResourceParams,
    /// Changes a plan may make in any 24 hours (1: a daily resize; 24 for hourly in-place
    /// pod resize). A value is lowered only after 24 h / this, raised as soon as allowed.
    #[serde(default = "one")]
    pub max_changes_per_day: u32,
    /// No change for a gain under this fraction of the value in force.
    #[serde(default = "default_min_change")]
    pub min_change: f64,
    /// The change budgets the replay compares (the configured one is always included).
    #[serde(default = "default_budgets")]
    pub budgets: Vec<u32>,
    /// What reserved capacity costs, to price the change from the current allocation.
    #[serde(default)]
    pub prices: Prices,
    /// A workload is flagged `throttled` when this share of its CFS periods, on average
    /// over the data, were throttled (default 10%).
    #[serde(default)]
    pub throttled_above: Option<Risk>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Forecasts {
    #[default]
    Auto,
    Model,
}

impl Forecasts {
    fn method(self) -> &'static str {
        match self {
            Forecasts::Auto => "auto",
            Forecasts::Model => "model",
        }
    }
}

/// How one resource's lines are sized.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceParams {
    /// The share of time usage may exceed the request: `1%`.
    #[serde(default)]
    pub request_risk: Option<Risk>,
    /// The share of time usage may exceed the limit: `0.01%` (memory's default).
    #[serde(default)]
    pub limit_risk: Option<Risk>,
    /// Instead of a risk: the request from this forecast (`p90`, `point`) × (1 + `margin`),
    /// uncalibrated.
    #[serde(default)]
    pub source: Option<QuantileSource>,
    /// With `source`: headroom on top of it, as a fraction (0.1 = +10 %).
    #[serde(default)]
    pub margin: f64,
    /// The smallest value: CPU as `10m` or cores (default 10m), memory as `32Mi` or bytes
    /// (default 32Mi).
    #[serde(default)]
    pub min: Option<Quantity>,
    /// Values are rounded up to a multiple of this (default 5m, 4Mi).
    #[serde(default)]
    pub step: Option<Quantity>,
}

fn one() -> u32 {
    1
}
fn default_min_change() -> f64 {
    0.1
}
fn default_budgets() -> Vec<u32> {
    vec![1, 4, 24]
}

const DEFAULT_REQUEST_RISK: &str = "1%";
const DEFAULT_MEMORY_LIMIT_RISK: &str = "0.01%";

impl ResourceParams {
    /// The request line and, where set (or memory's default), the limit line.
    fn lines(&self, name: &'static str, problems: &mut Vec<ParamProblem>) -> Vec<Line> {
        let resource = usize::from(name == "memory");
        let (floor, step) = if resource == 0 { ("10m", "5m") } else { ("32Mi", "4Mi") };
        let q = |v: &Option<Quantity>, d: &str| {
            v.as_ref().map_or_else(|| d.parse::<Quantity>().expect("valid"), Clone::clone).value()
        };
        let (floor, step) = (q(&self.min, floor), q(&self.step, step));
        let default = |r: &str| r.parse::<Risk>().expect("a valid default").fraction();
        let request = match (&self.source, &self.request_risk) {
            (Some(_), Some(_)) => {
                let what = format!("`source` and `request_risk` both size the {name} request");
                problems.push(ParamProblem::new(&[name, "source"], what, "give one of them"));
                Sizing::Risk(default(DEFAULT_REQUEST_RISK))
            }
            (Some(source), None) => {
                if !(self.margin.is_finite() && self.margin >= 0.0) {
                    problems.push(ParamProblem::new(&[name, "margin"], "must be a fraction ≥ 0", "e.g. 0.1 for 10 %"));
                }
                Sizing::Fixed(Rule::Forecast(source.column()), 1.0 + self.margin)
            }
            (None, r) => Sizing::Risk(r.as_ref().map_or_else(|| default(DEFAULT_REQUEST_RISK), Risk::fraction)),
        };
        let names = if resource == 0 { ["cpu_request", "cpu_limit"] } else { ["memory_request", "memory_limit"] };
        let mut lines = vec![Line { name: names[0], resource, sizing: request, floor, step }];
        let limit = match (&self.limit_risk, resource) {
            (Some(r), _) => Some(r.fraction()),
            (None, 1) => Some(default(DEFAULT_MEMORY_LIMIT_RISK)),
            (None, _) => None,
        };
        if let Some(r) = limit {
            lines.push(Line { name: names[1], resource, sizing: Sizing::Risk(r), floor, step });
        }
        lines
    }
}

impl StageParams for PlanParams {
    const KIND: &'static str = "plan.resources";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        let mut lines = self.cpu.lines("cpu", &mut problems);
        lines.extend(self.memory.lines("memory", &mut problems));
        if !(self.min_change.is_finite() && self.min_change >= 0.0) {
            problems.push(ParamProblem::new(&["min_change"], "must be a fraction ≥ 0", "e.g. 0.1 for 10 %"));
        }
        if self.max_changes_per_day == 0 || self.budgets.contains(&0) {
            problems.push(ParamProblem::new(
                &["max_changes_per_day"],
                "change budgets must be at least 1 per day",
                "1 for a daily resize, 24 for hourly in-place resize",
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut budgets = self.budgets.clone();
        budgets.push(self.max_changes_per_day);
        budgets.sort_unstable();
        budgets.dedup();
        Ok(Box::new(Plan { params: self, lines, budgets }))
    }
}

struct Plan {
    params: PlanParams,
    lines: Vec<Line>,
    budgets: Vec<u32>,
}

/// The resources plans are made for, in the order of `[cpu, memory]` arrays.
const RESOURCES: [&str; 2] = [Resource::Cpu.name(), Resource::Memory.name()];

impl Stage for Plan {
    fn reads(&self) -> Vec<String> {
        vec!["forecasts".into(), "resampled".into(), "allocation".into()]
    }

    fn writes(&self) -> Vec<Output> {
        vec![
            Output::table("plan"),
            Output::artifact("plan.csv"),
            Output::artifact("patches.yaml"),
            Output::artifact("vpa.yaml"),
            Output::table("plan_backtest"),
            Output::table("plan_comparison"),
            Output::table("recommendations"),
        ]
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let usage = read_usage(ctx.table_batches("resampled", None, &[])?)?;
        let allocation = read_allocation(&ctx.read_table("allocation")?)?;
        let (forecasts, columns, step_ms) =
            read_forecasts(&ctx.read_table("forecasts")?, self.params.forecasts.method())?;
        self.check_sources(&columns)?;
        let bar = ctx.progress(usage.len() as u64, "series prepared");
        let timelines: Timelines = usage
            .iter()
            .map(|(key, u)| {
                bar.inc(1);
                (key.clone(), timelines(key, &forecasts, u, &columns))
            })
            .collect();
        bar.finish();
        let lines: Vec<&Line> =
            self.lines.iter().filter(|l| planned_in(&timelines, "test", Some(l.resource))).collect();
        if lines.is_empty() {
            return Err(EvaluateError::NoActuals.into());
        }
        if lines.iter().any(|l| l.risk().is_some()) && !planned_in(&timelines, "validation", None) {
            return Err(EvaluateError::NoValidation.into());
        }

        let outcomes = self.outcomes(ctx, &lines, &timelines, &allocation, &columns, step_ms);
        let (schema, batch) = backtest_table(&lines, &outcomes)?;
        ctx.write_table("plan_backtest", schema, &[batch])?;
        let comparisons = comparisons(&lines, &outcomes);
        let (schema, batch) = comparison_table(&lines, &comparisons)?;
        ctx.write_table("plan_comparison", schema, &[batch])?;

        let configured: Vec<&Outcome> =
            outcomes.iter().filter(|o| o.budget == self.params.max_changes_per_day).collect();
        let plan =
            forward_plan(&timelines, &lines, &configured, self.params.max_changes_per_day, self.params.min_change);
        let (schema, batch) = plan_table(&plan, &lines)?;
        ctx.write_artifact("plan.csv", applearner_train::predict::to_csv(&batch)?)?;
        ctx.write_table("plan", schema, &[batch])?;
        // What to set now: each workload's first stretch.
        let now: Vec<&WorkloadPlan> =
            plan.iter().enumerate().filter(|(i, w)| *i == 0 || plan[i - 1].key != w.key).map(|(_, w)| w).collect();
        // Nodes and VMs are planned, not patched.
        let containers: Vec<&WorkloadPlan> = now.iter().copied().filter(|w| !is_node(&w.key)).collect();
        ctx.write_artifact("patches.yaml", patches(&containers, &lines, &configured))?;
        ctx.write_artifact("vpa.yaml", vpa_objects(&containers, &lines))?;
        let throttled = self.params.throttled_above.as_ref().map_or(0.1, Risk::fraction);
        let recs = recommendations(&now, &lines, &allocation, &usage, &self.params.prices, throttled);
        let (schema, batch) = recommendations_table(&recs, &self.params.prices)?;
        ctx.write_table("recommendations", schema, &[batch])?;
        let mut summary = self.summary(now.len(), plan.len(), &lines, &configured, &comparisons);
        summary.extend(self.savings(&recs, &allocation));
        Ok(summary)
    }
}

impl Plan {
    /// Every line on every change budget: calibrated, compared and replayed.
    fn outcomes(
        &self,
        ctx: &StageContext,
        lines: &[&Line],
        timelines: &Timelines,
        allocation: &Allocation,
        columns: &[String],
        step_ms: i64,
    ) -> Vec<Outcome> {
        let jobs: Vec<(usize, &Line, u32)> =
            lines.iter().enumerate().flat_map(|(i, l)| self.budgets.iter().map(move |&b| (i, *l, b))).collect();
        let bar = ctx.progress(jobs.len() as u64, "lines × budgets calibrated and replayed");
        // Each line × budget is independent: one per core.
        let outcomes = jobs
            .par_iter()
            .map(|&(index, line, budget)| {
                let p = &self.params;
                let policy =
                    Policy { floor: line.floor, step: line.step, min_change: p.min_change, changes_per_day: budget };
                let step_hours = step_ms as f64 / 3.6e6;
                let detail = budget == p.max_changes_per_day;
                let outcome = Job { line, index, policy, timelines, allocation, columns, step_hours, detail }.run();
                bar.inc(1);
                outcome
            })
            .collect();
        bar.finish();
        outcomes
    }

    /// A fixed `source` must be a column the model forecasts.
    fn check_sources(&self, columns: &[String]) -> Result<(), BoxError> {
        for l in &self.lines {
            if let Sizing::Fixed(Rule::Forecast(c), _) = &l.sizing
                && !columns.contains(c)
            {
                let forecast = columns.iter().map(|c| if c == "forecast" { "point" } else { c.as_str() });
                return Err(EvaluateError::SourceNotForecast {
                    resource: RESOURCES[l.resource],
                    asked: c.clone(),
                    forecast: forecast.collect::<Vec<_>>().join(", "),
                }
                .into());
            }
        }
        Ok(())
    }

    fn summary(
        &self,
        workloads: usize,
        stretches: usize,
        lines: &[&Line],
        configured: &[&Outcome],
        comparisons: &[Comparison],
    ) -> Summary {
        let mut summary = Summary::new();
        summary.insert("workloads".into(), workloads.into());
        summary.insert("plan_rows".into(), stretches.into());
        summary.insert("max_changes_per_day".into(), self.params.max_changes_per_day.into());
        for c in comparisons.iter().filter(|c| c.budget == self.params.max_changes_per_day) {
            let name = lines[c.line].name;
            summary.insert(format!("{name}_target_pct"), c.target_pct.map(round3).into());
            summary.insert(format!("{name}_risk_pct"), round3(c.model.risk_pct()).into());
            summary.insert(format!("{name}_slack_pct"), round3(c.model.slack_pct()).into());
            summary.insert(format!("{name}_krr_slack_pct"), round3(c.krr.slack_pct()).into());
            summary.insert(format!("{name}_vpa_slack_pct"), round3(c.vpa.slack_pct()).into());
            if let Some(o) = &c.oracle {
                summary.insert(format!("{name}_oracle_slack_pct"), round3(o.slack_pct()).into());
            }
            summary.insert(format!("{name}_gap_closed"), c.gap_closed().map(round3).into());
        }
        for o in configured {
            let name = lines[o.line].name;
            let rule = match lines[o.line].sizing {
                Sizing::Fixed(_, k) => format!("{} (fixed, not calibrated)", o.rule.scaled(&format!("{k}"))),
                Sizing::Risk(_) => o.rule.scaled("k"),
            };
            summary.insert(format!("{name}_rule"), rule.into());
            summary.insert(format!("{name}_uncalibrated_workloads"), o.uncalibrated.into());
            let misses: Vec<String> = o
                .calibrated
                .misses
                .iter()
                .map(|(k, r)| format!("{k}: {r:.3}% on validation even at ×{}", K_RANGE.1))
                .collect();
            summary.insert(format!("{name}_missing_target"), misses.into());
        }
        summary
    }
}

/// Whether any series has decisions in `part`, of `resource` (index into [`RESOURCES`]) or
/// of any resource.
fn planned_in(timelines: &Timelines, part: &str, resource: Option<usize>) -> bool {
    let wanted = |r: &str| resource.is_none_or(|i| RESOURCES[i] == r);
    timelines.values().any(|t| t.iter().any(|((r, p), t)| p == part && wanted(r) && !t.at.is_empty()))
}

impl Plan {
    /// What the plan changes against the current allocation, in total: requests now and
    /// planned (over the workloads that have both), the monthly cost change, the workloads
    /// without allocation, the allocation without a plan, and the flags.
    fn savings(&self, recs: &[Recommendation], allocation: &Allocation) -> Summary {
        let mut s = Summary::new();
        let both = |i: usize| recs.iter().filter_map(move |r| Some((r.current[i]?, r.planned[i]?)));
        let gib = MIB * 1024.0;
        for (i, name, unit) in [(0, "cpu_request_cores", 1.0), (2, "memory_request_gib", gib)] {
            let (current, planned) = both(i).fold((0.0, 0.0), |a, (c, p)| (a.0 + c / unit, a.1 + p / unit));
            s.insert(format!("current_{name}"), round3(current).into());
            s.insert(format!("planned_{name}"), round3(planned).into());
        }
        let cost: f64 = recs.iter().filter_map(|r| r.cost(&self.params.prices)).sum();
        s.insert("cost_change_per_month".into(), round3(cost).into());
        let without: Vec<&str> =
            recs.iter().filter(|r| r.current.iter().all(Option::is_none)).map(|r| r.key.as_str()).collect();
        s.insert("workloads_with_allocation".into(), (recs.len() - without.len()).into());
        s.insert("workloads_without_allocation".into(), without.len().into());
        let planned: std::collections::BTreeSet<&str> = recs.iter().map(|r| r.key.as_str()).collect();
        let unplanned: Vec<&String> = allocation.keys().filter(|k| !planned.contains(k.as_str())).collect();
        s.insert("allocated_workloads_not_planned".into(), unplanned.len().into());
        s.insert(
            "allocated_workloads_not_planned_keys".into(),
            unplanned.iter().take(20).map(|k| k.to_string()).collect::<Vec<_>>().into(),
        );
        for flag in [
            "oom_killed",
            "throttled",
            "cpu_request_below_plan",
            "memory_request_below_plan",
            "cpu_above_limit",
            "memory_above_limit",
        ] {
            let n = recs.iter().filter(|r| r.flags.iter().any(|f| f == flag)).count();
            s.insert(format!("flagged_{flag}"), n.into());
        }
        s
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
