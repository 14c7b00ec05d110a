//! `plan.resources`: container requests and limits per workload, sized from the model's
//! forecasts at a stated risk (calibrated on the validation part), and the plan backtest:
//! the test part's usage replayed against them, against KRR and VPA (at their defaults and
//! tuned to the same risk) and against the oracle, on several change budgets.

mod ahead;
mod calibrate;
mod compare;
mod current;
mod kube;
mod oracle;
mod params;
mod passes;
mod policy;
mod replay;
mod state;
mod tables;
#[cfg(test)]
mod tests;
mod timeline;

// What the backtest shares: usage as the stages read it and the recommenders users run.
mod error;
pub mod recommend;
pub mod series;
pub mod table;
pub mod units;

pub use error::PlanError;

pub fn register(registry: &mut applearner_pipeline::Registry) {
    registry.register::<PlanParams>();
}

use ahead::*;
use calibrate::*;
use compare::*;
use current::*;
use kube::*;
use oracle::*;
pub use params::{Forecasts, PlanParams, ResourceParams};
use passes::*;
use policy::*;
use replay::*;
use state::*;
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

use crate::recommend::MIB;
use crate::table::{TableBuilder, Usage, read_usage};
use applearner_contracts::summaries::PlanSavings;
use applearner_contracts::tables::resampled::{self, is_node};
use applearner_contracts::tables::{
    allocation, forecasts, hpas, namespaces, plan, plan_backtest, plan_comparison, plan_risk, quotas, recommendations,
    workloads,
};
use applearner_contracts::{Method, Part, Resource};
use applearner_pipeline::columns::{floats, ints, strings};

impl StageParams for PlanParams {
    const KIND: &'static str = "plan.resources";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        let mut lines = self.cpu.lines(Resource::Cpu, &mut problems);
        lines.extend(self.memory.lines(Resource::Memory, &mut problems));
        if !(self.min_change.is_finite() && self.min_change >= 0.0) {
            problems.push(ParamProblem::new(&["min_change"], "must be a fraction ≥ 0", "e.g. 0.1 for 10 %"));
        }
        if !self.hpa_max_target.is_finite() || self.hpa_max_target < 1.0 {
            problems.push(ParamProblem::new(&["hpa_max_target"], "must be at least 1 (%)", "e.g. 100"));
        }
        if self.adapt_rate.is_some_and(|r| !r.is_finite() || r < 0.0) {
            problems.push(ParamProblem::new(&["adapt_rate"], "must be ≥ 0", "e.g. 0.3, or 0 for fixed factors"));
        }
        if self.state.as_ref().is_some_and(|s| s.is_empty() || s.contains(['/', '\\', '.'])) {
            let help = "a plain name such as the pipeline's: the folder state/<name>/ in the store";
            problems.push(ParamProblem::new(&["state"], "must be a name", help));
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

impl Stage for Plan {
    fn reads(&self) -> Vec<String> {
        [forecasts::NAME, resampled::NAME, allocation::NAME, workloads::NAME, quotas::NAME].map(String::from).to_vec()
    }

    fn writes(&self) -> Vec<Output> {
        vec![
            Output::table(plan::NAME),
            Output::artifact("plan.csv"),
            Output::artifact("patches.yaml"),
            Output::artifact("vpa.yaml"),
            Output::table(plan_backtest::NAME),
            Output::table(plan_comparison::NAME),
            Output::table(recommendations::NAME),
            Output::table(hpas::NAME),
            Output::table(namespaces::NAME),
            Output::table(plan_risk::NAME),
        ]
    }

    /// The latest state is an input too: a refresh continues from it.
    fn fingerprint(&self, store: &applearner_pipeline::Store, hasher: &mut blake3::Hasher) -> Result<(), BoxError> {
        if let Some(name) = &self.params.state {
            hasher.update(latest_path(store, name)?.map(|l| l.1).unwrap_or_default().as_bytes());
        }
        Ok(())
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let allocation = read_allocation(&ctx.read_table(allocation::NAME)?)?;
        let workloads = read_workloads(&ctx.read_table(workloads::NAME)?)?;
        let quotas = read_quotas(&ctx.read_table(quotas::NAME)?)?;
        let method = self.params.forecasts.method();
        let prepared = prepare(ctx, method, &|c| self.check_sources(c), &allocation, &workloads)?;
        let lines: Vec<&Line> = self.lines.iter().filter(|l| prepared.tested[l.resource.index()]).collect();
        if lines.is_empty() {
            return Err(PlanError::NoActuals.into());
        }
        if lines.iter().any(|l| l.risk().is_some()) && !has_validation(&prepared.timelines) {
            return Err(PlanError::NoValidation.into());
        }

        let stored = match &self.params.state {
            Some(name) => latest(ctx.store(), name)?,
            None => Stored::default(),
        };
        let outcomes = self.outcomes(ctx, &lines, &prepared, (&allocation, &stored.states))?;
        let Prepared { timelines, seen, implausible, step_ms, .. } = prepared;
        let (schema, batch) = backtest_table(&lines, &outcomes)?;
        ctx.write_table(plan_backtest::NAME, schema, &[batch])?;
        let comparisons = comparisons(&lines, &outcomes);
        let (schema, batch) = comparison_table(&lines, &comparisons)?;
        ctx.write_table(plan_comparison::NAME, schema, &[batch])?;

        let configured: Vec<&Outcome> =
            outcomes.iter().filter(|o| o.budget == self.params.max_changes_per_day).collect();
        let mut summary = self.summary(&lines, &configured, &comparisons);
        let known = Beside { seen: &seen, allocation: &allocation, workloads: &workloads, quotas: &quotas };
        summary.extend(self.ahead(ctx, &timelines, &lines, &configured, &known)?);
        summary.extend(crate::units::said(&implausible));
        let warnings: Vec<String> =
            short_validation(&timelines, step_ms, self.params.max_changes_per_day).into_iter().collect();
        warnings.iter().for_each(|w| tracing::warn!("{w}"));
        summary.insert("warnings".into(), warnings.into());
        let (schema, batch) = risk_table(&lines, &configured)?;
        ctx.write_table(plan_risk::NAME, schema, &[batch])?;
        // Last: a state is kept only once everything it stands for is written.
        summary.extend(self.keep_state(ctx, &lines, &configured, stored)?);
        Ok(summary)
    }
}

/// Holds of the change budget a workload's validation part needs for calibrating on its two
/// halves to hold on new data: with fewer, each half sees two or three values held, and
/// the factors chosen on one half say little of the other.
const MIN_HOLDS: f64 = 8.0;

/// A warning where the validation part is too short for the change budget: its median
/// length over the workloads (its steps, wherever the split put them), in holds of 24 h /
/// the budget, is under [`MIN_HOLDS`].
fn short_validation(timelines: &Timelines, step_ms: i64, budget: u32) -> Option<String> {
    let mut days: Vec<f64> = timelines
        .values()
        .flat_map(|t| t.iter().filter(|((_, part), _)| part == Part::Validation.name()).map(|(_, t)| t))
        .map(|t| (t.points() as i64 * step_ms) as f64 / DAY_MS as f64)
        .collect();
    days.sort_by(f64::total_cmp);
    let median = *days.get(days.len() / 2)?;
    let holds = median * f64::from(budget.max(1));
    (holds < MIN_HOLDS).then(|| {
        format!(
            "the validation part holds {median:.1} days per workload (median): {holds:.0} values held at {budget} \
             change(s) a day, too few to calibrate on (at least {MIN_HOLDS}); the realized risk may run well above \
             the target. Give `features.split.validation` at least {:.0} hours, or allow more changes a day",
            (MIN_HOLDS * 24.0 / f64::from(budget.max(1))).ceil()
        )
    })
}

/// What the plan ahead is set beside: what the usage showed, what is allocated now, and what
/// kube-state-metrics says of the workloads and namespaces.
struct Beside<'a> {
    seen: &'a BTreeMap<String, Seen>,
    allocation: &'a Allocation,
    workloads: &'a Workloads,
    quotas: &'a Quotas,
}

impl Plan {
    /// The plan ahead, with each workload's jobs sized from their runs and HPAs' scale points
    /// kept, and what it changes: `plan`, `plan.csv`, `hpas`, `patches.yaml`, `vpa.yaml`,
    /// `recommendations`, `namespaces`.
    fn ahead(
        &self,
        ctx: &StageContext,
        timelines: &Timelines,
        lines: &[&Line],
        configured: &[&Outcome],
        known: &Beside,
    ) -> Result<Summary, BoxError> {
        let mut plan = forward_plan(timelines, lines, configured, self.params.max_changes_per_day, known.workloads);
        let jobs = size_jobs(&mut plan, lines, known.seen);
        let max_target = self.params.hpa_max_target;
        let hpas = keep_scale_points(&mut plan, lines, known.allocation, known.workloads, known.seen, max_target);
        for w in &mut plan {
            limits_at_least_requests(lines, &mut w.values);
        }
        let (schema, batch) = hpas_table(&hpas)?;
        ctx.write_table(hpas::NAME, schema, &[batch])?;
        let (schema, batch) = plan_table(&plan, lines)?;
        ctx.write_artifact("plan.csv", applearner_pipeline::encode::to_csv(&batch)?)?;
        ctx.write_table(plan::NAME, schema, &[batch])?;
        // What to set now: each workload's first stretch.
        let now: Vec<&WorkloadPlan> =
            plan.iter().enumerate().filter(|(i, w)| *i == 0 || plan[i - 1].key != w.key).map(|(_, w)| w).collect();
        // Nodes and VMs are planned, not patched.
        let containers: Vec<&WorkloadPlan> = now.iter().copied().filter(|w| !is_node(&w.key)).collect();
        let patched = patches(&containers, lines, configured) + &hpa_patches(&containers, &hpas);
        ctx.write_artifact("patches.yaml", patched)?;
        ctx.write_artifact("vpa.yaml", vpa_objects(&containers, lines))?;
        let throttled = self.params.throttled_above.as_ref().map_or(0.1, Risk::fraction);
        let recs = recommendations(&now, lines, known.allocation, known.seen, &self.params.prices, throttled);
        let (schema, batch) = recommendations_table(&recs, &self.params.prices)?;
        ctx.write_table(recommendations::NAME, schema, &[batch])?;
        let (schema, batch) = namespaces_table(&recs, known.quotas)?;
        ctx.write_table(namespaces::NAME, schema, &[batch])?;
        let mut summary = self.savings(&recs, known.allocation)?;
        summary.insert("workloads".into(), now.len().into());
        summary.insert("plan_rows".into(), plan.len().into());
        summary.insert("jobs_sized_from_runs_peaks".into(), jobs.into());
        summary.insert("hpas".into(), hpas.len().into());
        let kept = hpas.iter().filter(|d| d.planned_target == d.target).map(|d| format!("{}: {}", d.key, d.action));
        summary.insert("hpa_requests_kept".into(), kept.collect::<Vec<_>>().into());
        summary.insert("namespaces_over_quota".into(), over_quota(&recs, known.quotas).into());
        Ok(summary)
    }

    /// Every line on every change budget: calibrated on the validation part (a line ×
    /// budget per core), then replayed over the test part a group of series at a time.
    fn outcomes(
        &self,
        ctx: &StageContext,
        lines: &[&Line],
        prepared: &Prepared,
        (allocation, state): (&Allocation, &States),
    ) -> Result<Vec<Outcome>, BoxError> {
        // A refresh continuing a loop needs its budget only: the others are for comparing.
        let budgets = if state.is_empty() { self.budgets.clone() } else { vec![self.params.max_changes_per_day] };
        let p = &self.params;
        let (timelines, columns) = (&prepared.timelines, prepared.columns.as_slice());
        let step_hours = prepared.step_ms as f64 / 3.6e6;
        let jobs: Vec<Job> = lines
            .iter()
            .enumerate()
            .flat_map(|(i, l)| budgets.iter().map(move |&b| (i, *l, b)))
            .map(|(index, line, budget)| {
                let (floor, step, min_change) = (line.floor, line.step, p.min_change);
                let policy = Policy { floor, step, min_change, changes_per_day: budget };
                let (detail, adapt_rate) = (budget == p.max_changes_per_day, p.adapt_rate);
                Job { line, index, policy, timelines, allocation, columns, step_hours, detail, adapt_rate, state }
            })
            .collect();
        let bar = ctx.progress(jobs.len() as u64, "lines × budgets calibrated");
        let fitted: Vec<Fitted> = jobs
            .par_iter()
            .map(|j| {
                let f = j.fit();
                bar.inc(1);
                f
            })
            .collect();
        bar.finish();
        let mut replays: Vec<Replays> = jobs.iter().map(|_| Replays::default()).collect();
        by_group(ctx, p.forecasts.method(), "forecast rows replayed over the test part", |group| {
            let test = test_timelines(group, &prepared.implausible, &prepared.columns);
            let each = jobs.par_iter().zip(fitted.par_iter()).zip(replays.par_iter_mut());
            each.for_each(|((job, f), r)| job.add(f, r, &test));
            Ok(())
        })?;
        Ok(jobs.iter().zip(fitted).zip(replays).map(|((job, f), r)| job.outcome(f, r)).collect())
    }

    /// A fixed `source` must be a column the model forecasts.
    fn check_sources(&self, columns: &[String]) -> Result<(), BoxError> {
        for l in &self.lines {
            if let Sizing::Fixed(Rule::Forecast(c), _) = &l.sizing
                && !columns.contains(c)
            {
                let forecast = columns.iter().map(|c| if c == "forecast" { "point" } else { c.as_str() });
                return Err(PlanError::SourceNotForecast {
                    resource: l.resource.name(),
                    asked: c.clone(),
                    forecast: forecast.collect::<Vec<_>>().join(", "),
                }
                .into());
            }
        }
        Ok(())
    }

    fn summary(&self, lines: &[&Line], configured: &[&Outcome], comparisons: &[Comparison]) -> Summary {
        let mut summary = Summary::new();
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
            if let Some(cap) = lines[o.line].cap {
                let by_usage = if cap.multiple.is_finite() {
                    format!("{} × highest usage seen", cap.multiple)
                } else {
                    "none".into()
                };
                let max = if cap.max.is_finite() { format!(", at most {}", cap.max) } else { String::new() };
                summary.insert(format!("{name}_cap"), format!("{by_usage}{max}").into());
            }
            summary.insert(format!("{name}_uncalibrated_workloads"), o.uncalibrated.into());
            if let Some(target) = lines[o.line].risk().map(|r| 100.0 * r) {
                for (variant, prefix) in [("adapted", ""), ("calibrated", "fixed_")] {
                    let Some((within, worst)) = spread(o, variant, target) else { continue };
                    summary.insert(format!("{name}_{prefix}workloads_within_2x_target_pct"), round3(within).into());
                    summary.insert(format!("{name}_{prefix}worst_workload_risk_pct"), round3(worst).into());
                }
                let fixed =
                    o.rows.iter().find(|r| r.method == Method::Model && r.variant == "calibrated" && r.key.is_empty());
                if let Some(f) = fixed {
                    summary.insert(format!("{name}_fixed_risk_pct"), round3(f.replay.risk_pct()).into());
                    summary.insert(format!("{name}_fixed_slack_pct"), round3(f.replay.slack_pct()).into());
                }
            }
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

impl Plan {
    /// Writes the loop's new state, where the plan keeps one and something was decided
    /// since the last: every workload walked, and those without new data as they were.
    fn keep_state(
        &self,
        ctx: &StageContext,
        lines: &[&Line],
        configured: &[&Outcome],
        stored: Stored,
    ) -> Result<Summary, BoxError> {
        let mut summary = Summary::new();
        let Some(name) = &self.params.state else { return Ok(summary) };
        let mut states = stored.states.clone();
        for o in configured {
            for (key, w) in &o.walks {
                if let Some(l) = &w.state {
                    states.insert((key.clone(), lines[o.line].name.to_string()), (o.rule.label(), l.clone()));
                }
            }
        }
        let newest = states.values().map(|s| s.1.at).max().unwrap_or(i64::MIN);
        let mut behind: Vec<String> = states.iter().filter(|s| s.1.1.at < newest).map(|s| s.0.0.clone()).collect();
        behind.dedup();
        if !behind.is_empty() {
            tracing::warn!(
                "{} workloads have no data up to the latest decision: their values in force hold",
                behind.len()
            );
        }
        summary.insert("workloads_without_recent_data".into(), behind.into());
        let said = if states == stored.states {
            let at = stored.path.as_deref().unwrap_or("none");
            tracing::warn!("no new data since the last refresh ({at}): nothing changed");
            format!("unchanged: no decision is due after the last refresh ({at})")
        } else {
            write_next(ctx.store(), name, stored.number, &states)?
        };
        summary.insert("state".into(), said.into());
        Ok(summary)
    }
}

/// Per workload, line and UTC day of the test part, as the loop ran: steps, steps above the
/// line, that share beside the target, and the factor at the day's end.
fn risk_table(lines: &[&Line], configured: &[&Outcome]) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let rows: Vec<(&Outcome, &String, &(i64, usize, usize, f64))> = configured
        .iter()
        .flat_map(|o| o.walks.iter().flat_map(move |(k, w)| w.days.iter().map(move |d| (*o, k, d))))
        .collect();
    TableBuilder::default()
        .strings(plan_risk::LINE, rows.iter().map(|r| lines[r.0.line].name))
        .strings(plan_risk::KEY, rows.iter().map(|r| r.1))
        .times(plan_risk::DAY, rows.iter().map(|r| r.2.0).collect())
        .u32s(plan_risk::STEPS, rows.iter().map(|r| r.2.1 as u32).collect())
        .u32s(plan_risk::ABOVE, rows.iter().map(|r| r.2.2 as u32).collect())
        .floats(plan_risk::RISK_PCT, rows.iter().map(|r| 100.0 * r.2.2 as f64 / r.2.1.max(1) as f64).collect())
        .floats(
            plan_risk::TARGET_PCT,
            rows.iter().map(|r| lines[r.0.line].risk().map_or(f64::NAN, |x| 100.0 * x)).collect(),
        )
        .floats(plan_risk::FACTOR, rows.iter().map(|r| r.2.3).collect())
        .finish()
}

/// How evenly a line's risk falls on the workloads, for one variant of the model's plan: the
/// share within 2× the target and the worst, in %.
fn spread(outcome: &Outcome, variant: &str, target_pct: f64) -> Option<(f64, f64)> {
    let risks: Vec<f64> = outcome
        .rows
        .iter()
        .filter(|r| r.method == Method::Model && r.variant == variant && !r.key.is_empty() && r.replay.steps > 0)
        .map(|r| r.replay.risk_pct())
        .collect();
    let within = risks.iter().filter(|&&r| r <= 2.0 * target_pct).count() as f64 / risks.len().max(1) as f64;
    (!risks.is_empty()).then(|| (100.0 * within, risks.iter().copied().fold(0.0, f64::max)))
}

/// A table whose replicas were summed holds workload totals: patched onto pods, every
/// replica would reserve the whole workload's usage. Nodes and VMs have no replicas.
fn refuse_summed_replicas<V>(combined: Option<&str>, series: &BTreeMap<String, V>) -> Result<(), PlanError> {
    let workloads = series.keys().filter(|k| !is_node(k)).count();
    if combined == Some("sum") && workloads > 0 {
        return Err(PlanError::SummedReplicas { workloads });
    }
    Ok(())
}

/// Whether any series has decisions in its validation part.
fn has_validation(timelines: &Timelines) -> bool {
    timelines.values().any(|t| t.iter().any(|((_, p), t)| p == Part::Validation.name() && !t.at.is_empty()))
}

impl Plan {
    /// What the plan changes against the current allocation, in total: requests now and
    /// planned (over the workloads that have both), the monthly cost change, the workloads
    /// without allocation, the allocation without a plan, the flags and the limits' evidence.
    fn savings(&self, recs: &[Recommendation], allocation: &Allocation) -> Result<Summary, BoxError> {
        // Workload totals: one pod's requests × its replicas.
        let total = |i: usize, unit: f64| {
            let both = recs.iter().filter_map(|r| Some((r.current[i]?, r.planned[i]?, f64::from(r.replicas))));
            let (current, planned) = both.fold((0.0, 0.0), |a, (c, p, n)| (a.0 + c * n / unit, a.1 + p * n / unit));
            (round3(current), round3(planned))
        };
        let ((current_cpu, planned_cpu), (current_memory, planned_memory)) = (total(0, 1.0), total(2, MIB * 1024.0));
        let without: Vec<&str> =
            recs.iter().filter(|r| r.current.iter().all(Option::is_none)).map(|r| r.key.as_str()).collect();
        let planned: std::collections::BTreeSet<&str> = recs.iter().map(|r| r.key.as_str()).collect();
        let unplanned: Vec<&String> = allocation.keys().filter(|k| !planned.contains(k.as_str())).collect();
        let flagged = |flag: &str| recs.iter().filter(|r| r.flags.iter().any(|f| f == flag)).count() as u64;
        let savings = PlanSavings {
            workloads_with_allocation: (recs.len() - without.len()) as u64,
            workloads_without_allocation: without.len() as u64,
            allocated_workloads_not_planned: unplanned.len() as u64,
            current_cpu_request_cores: current_cpu,
            planned_cpu_request_cores: planned_cpu,
            current_memory_request_gib: current_memory,
            planned_memory_request_gib: planned_memory,
            cost_change_per_month: round3(recs.iter().filter_map(|r| r.cost(&self.params.prices)).sum()),
            flagged_oom_killed: flagged("oom_killed"),
            flagged_throttled: flagged("throttled"),
            flagged_cpu_request_below_plan: flagged("cpu_request_below_plan"),
            flagged_memory_request_below_plan: flagged("memory_request_below_plan"),
            flagged_cpu_above_limit: flagged("cpu_above_limit"),
            flagged_memory_above_limit: flagged("memory_above_limit"),
            flagged_owner_unknown: flagged("owner_unknown"),
            flagged_job: flagged("job"),
            flagged_hpa: flagged("hpa"),
        };
        let serde_json::Value::Object(mut s) = serde_json::to_value(savings)? else {
            unreachable!("a struct serialises as an object")
        };
        s.insert(
            "allocated_workloads_not_planned_keys".into(),
            unplanned.iter().take(20).map(|k| k.to_string()).collect::<Vec<_>>().into(),
        );
        s.insert("replicated_workloads".into(), recs.iter().filter(|r| r.replicas > 1).count().into());
        s.extend(limit_evidence(recs));
        Ok(s)
    }
}

/// How far the planned limits sit above the highest usage seen: per resource with a limit,
/// the median and largest ratio, and how many are above 2×.
fn limit_evidence(recs: &[Recommendation]) -> Summary {
    let mut s = Summary::new();
    for limit in [applearner_contracts::Line::CpuLimit, applearner_contracts::Line::MemoryLimit] {
        let (line, res, name) = (limit.index(), limit.resource().index(), limit.name());
        let mut ratios: Vec<f64> =
            recs.iter().filter_map(|r| Some(r.planned[line]? / r.max_seen[res]?)).filter(|x| x.is_finite()).collect();
        if ratios.is_empty() {
            continue;
        }
        ratios.sort_by(f64::total_cmp);
        s.insert(format!("{name}_over_max_seen_median"), round3(ratios[ratios.len() / 2]).into());
        s.insert(format!("{name}_over_max_seen_max"), round3(ratios[ratios.len() - 1]).into());
        s.insert(format!("{name}_above_2x_max_seen"), ratios.iter().filter(|&&x| x > 2.0 + 1e-6).count().into());
    }
    s
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
