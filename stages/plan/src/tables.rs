//! The plan stage's tables: the plan backtest, the comparison per line and budget, and the
//! plan ahead.

use super::*;
use applearner_contracts::tables::{plan as pt, plan_backtest as pb, plan_comparison as pc};

pub(super) fn backtest_table(lines: &[&Line], outcomes: &[Outcome]) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let rows: Vec<(&Outcome, &Row)> = outcomes.iter().flat_map(|o| o.rows.iter().map(move |r| (o, r))).collect();
    let text = |f: &dyn Fn(&Outcome, &Row) -> String| rows.iter().map(|(o, r)| f(o, r)).collect::<Vec<_>>();
    let num = |f: &dyn Fn(&Replay) -> f64| rows.iter().map(|(_, r)| f(&r.replay)).collect::<Vec<_>>();
    TableBuilder::default()
        .strings(pb::LINE, text(&|o, _| lines[o.line].name.to_string()))
        .u32s(pb::BUDGET, rows.iter().map(|(o, _)| o.budget).collect())
        .strings(pb::METHOD, text(&|_, r| r.method.name().to_string()))
        .strings(pb::VARIANT, text(&|_, r| r.variant.to_string()))
        .strings(pb::SETTING, text(&|_, r| r.setting.clone()))
        .strings(pb::KEY, text(&|_, r| r.key.clone()))
        // NaN for a fixed (uncalibrated) line.
        .floats(
            pb::TARGET_PCT,
            rows.iter().map(|(o, _)| lines[o.line].risk().map_or(f64::NAN, |r| 100.0 * r)).collect(),
        )
        .floats(pb::RISK_PCT, num(&Replay::risk_pct))
        .floats(pb::SLACK_PCT, num(&Replay::slack_pct))
        // Core-hours for CPU, GiB-hours for memory.
        .floats(pb::PROVISIONED_HOURS, num(&|r| r.provisioned))
        .floats(pb::USED_HOURS, num(&|r| r.used))
        .floats(pb::SLACK_HOURS, num(&|r| r.slack))
        .floats(pb::UNDER_STEPS, num(&|r| r.under_steps as f64))
        .floats(pb::STEPS, num(&|r| r.steps as f64))
        .floats(pb::CHANGES, num(&|r| r.changes as f64))
        .floats(pb::CHANGES_PER_DAY, num(&Replay::changes_per_day))
        .finish()
}

/// One line on one budget: every method's totals over the test part.
pub struct Comparison {
    pub line: usize,
    pub budget: u32,
    pub target_pct: Option<f64>,
    pub model: Replay,
    /// What was allocated, where the data holds it.
    pub current: Option<Replay>,
    pub krr: Replay,
    pub vpa: Replay,
    pub krr_tuned: Option<Replay>,
    pub vpa_tuned: Option<Replay>,
    pub oracle: Option<Replay>,
}

impl Comparison {
    /// The better of KRR and VPA tuned to the same risk: the one with less slack among those
    /// whose risk on the test part stays within 1.5 × the target (less slack bought with more
    /// risk is no win), else the one with less risk.
    pub fn best_tuned(&self) -> Option<(&'static str, Replay)> {
        let candidates: Vec<(&'static str, Replay)> = [("krr_tuned", self.krr_tuned), ("vpa_tuned", self.vpa_tuned)]
            .into_iter()
            .filter_map(|(n, r)| Some((n, r?)))
            .collect();
        let target = self.target_pct?;
        let within: Vec<_> = candidates.iter().filter(|c| c.1.risk_pct() <= 1.5 * target).collect();
        if within.is_empty() {
            candidates.into_iter().min_by(|a, b| a.1.risk_pct().total_cmp(&b.1.risk_pct()))
        } else {
            within.into_iter().copied().min_by(|a, b| a.1.slack_pct().total_cmp(&b.1.slack_pct()))
        }
    }

    /// The share of the slack between the best tuned recommender and the oracle that the
    /// model's plan removes (1: as good as foresight; 0: no better than the recommender).
    pub fn gap_closed(&self) -> Option<f64> {
        let (_, best) = self.best_tuned()?;
        let oracle = self.oracle?;
        let gap = best.slack_pct() - oracle.slack_pct();
        (gap.abs() > 1e-9).then(|| (best.slack_pct() - self.model.slack_pct()) / gap)
    }

    /// In the order of [`pc::METHODS`].
    fn methods(&self) -> [Option<Replay>; 7] {
        [Some(self.model), self.current, Some(self.krr), self.krr_tuned, Some(self.vpa), self.vpa_tuned, self.oracle]
    }
}

pub(super) fn comparisons(lines: &[&Line], outcomes: &[Outcome]) -> Vec<Comparison> {
    outcomes
        .iter()
        .map(|o| {
            // The first variant listed that the outcome has.
            let total = |method: Method, variants: &[&str]| {
                variants.iter().find_map(|v| {
                    o.rows.iter().find(|r| r.method == method && r.variant == *v && r.key.is_empty()).map(|r| r.replay)
                })
            };
            Comparison {
                line: o.line,
                budget: o.budget,
                target_pct: lines[o.line].risk().map(|r| 100.0 * r),
                model: total(Method::Model, &["adapted", "calibrated", "fixed"]).unwrap_or_default(),
                current: total(Method::Current, &["allocated"]),
                krr: total(Method::Krr, &["default"]).unwrap_or_default(),
                vpa: total(Method::Vpa, &["default"]).unwrap_or_default(),
                krr_tuned: total(Method::Krr, &["tuned"]),
                vpa_tuned: total(Method::Vpa, &["tuned"]),
                oracle: total(Method::Oracle, &["oracle"]),
            }
        })
        .collect()
}

pub(super) fn comparison_table(
    lines: &[&Line],
    comparisons: &[Comparison],
) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let c = comparisons;
    let nan = f64::NAN;
    let mut t = TableBuilder::default()
        .strings(pc::LINE, c.iter().map(|c| lines[c.line].name.to_string()))
        .u32s(pc::BUDGET, c.iter().map(|c| c.budget).collect())
        .floats(pc::TARGET_PCT, c.iter().map(|c| c.target_pct.unwrap_or(nan)).collect());
    for (m, name) in pc::METHODS.iter().enumerate() {
        let get = |f: fn(&Replay) -> f64| c.iter().map(|c| c.methods()[m].as_ref().map_or(nan, f)).collect();
        t = t
            .floats(&format!("{name}{}", pc::RISK_PCT), get(Replay::risk_pct))
            .floats(&format!("{name}{}", pc::SLACK_PCT), get(Replay::slack_pct))
            .floats(&format!("{name}{}", pc::CHANGES_PER_DAY), get(Replay::changes_per_day));
    }
    let ratio = |c: &Comparison, other: Option<Replay>| other.map_or(nan, |o| c.model.slack_pct() / o.slack_pct());
    t.strings(pc::BEST_TUNED, c.iter().map(|c| c.best_tuned().map_or(String::new(), |b| b.0.to_string())))
        .floats(pc::SLACK_VS_BEST_TUNED, c.iter().map(|c| ratio(c, c.best_tuned().map(|b| b.1))).collect())
        .floats(pc::SLACK_VS_ORACLE, c.iter().map(|c| ratio(c, c.oracle)).collect())
        .floats(pc::GAP_CLOSED, c.iter().map(|c| c.gap_closed().unwrap_or(nan)).collect())
        .finish()
}

pub(super) fn plan_table(plan: &[WorkloadPlan], lines: &[&Line]) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let mut t = TableBuilder::default()
        .strings(pt::KEY, plan.iter().map(|w| w.key.clone()))
        .strings(pt::NAMESPACE, plan.iter().map(|w| w.namespace.clone()))
        .strings(pt::WORKLOAD, plan.iter().map(|w| w.workload.clone()))
        .strings(pt::CONTAINER, plan.iter().map(|w| w.container.clone()))
        .times(pt::FROM, plan.iter().map(|w| w.from).collect())
        .times(pt::UNTIL, plan.iter().map(|w| w.until).collect());
    for (i, l) in lines.iter().enumerate() {
        let unit = if l.resource == Resource::Cpu { "cores" } else { "bytes" };
        t = t.floats(&format!("{}_{unit}", l.name), plan.iter().map(|w| w.values[i].unwrap_or(f64::NAN)).collect());
    }
    t.finish()
}
