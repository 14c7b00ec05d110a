//! What the backtest's groups of series add up to: the scores, `auto`'s choices, the MASE
//! scales and the counts the summary reports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use applearner_contracts::{Method, Part, Resource};
use applearner_pipeline::Summary;

use crate::backtest::{Track, Tracks};
use crate::fallback;
use crate::forecasts::level_name;
use crate::scoring::{Score, Scorer};

/// (series, target) → the method `auto` forecasts with, and every forecaster's validation MAE.
pub(crate) type Choices = BTreeMap<(String, String), (Method, Vec<f64>)>;

/// The sums over groups.
pub(crate) struct Tally {
    validation: Scorer,
    test: Scorer,
    /// Per method of the external forecasts.
    external: BTreeMap<String, Scorer>,
    levels: Vec<f64>,
    horizon: usize,
    step_ms: i64,
    pub choice: Choices,
    pub scales: BTreeMap<(String, String), f64>,
    /// Series whose values cannot be cores or bytes: no KRR or VPA track.
    pub implausible: BTreeSet<(String, Resource)>,
    pub series: usize,
    pub validation_origins: usize,
    pub test_origins: usize,
    pub filled: usize,
    /// Series scaled by the last value's error, seasonal-naive fallbacks.
    pub naive_scaled: usize,
    pub fallbacks: usize,
    /// Test origins where `auto` fell back, and the series it forecasts ahead by a baseline.
    switched: usize,
    falls_back_ahead: Vec<String>,
}

impl Tally {
    pub(crate) fn new(levels: &[f64], horizon: usize, step_ms: i64) -> Tally {
        // `auto` is chosen on validation: scored on test only.
        let validation: Vec<Method> = Method::BACKTESTED.into_iter().filter(|m| *m != Method::Auto).collect();
        Tally {
            validation: Scorer::new(Part::Validation.name(), &validation, levels, horizon, step_ms),
            test: Scorer::new(Part::Test.name(), &Method::BACKTESTED, levels, horizon, step_ms),
            external: BTreeMap::new(),
            levels: levels.to_vec(),
            horizon,
            step_ms,
            choice: Choices::new(),
            scales: BTreeMap::new(),
            implausible: BTreeSet::new(),
            series: 0,
            validation_origins: 0,
            test_origins: 0,
            filled: 0,
            naive_scaled: 0,
            fallbacks: 0,
            switched: 0,
            falls_back_ahead: Vec::new(),
        }
    }

    /// A group's validation and test tracks, scored, and the external forecasts from its
    /// test origins (per method), scored as the model's tracks are and renamed at the end.
    pub(crate) fn score(&mut self, parts: &[Tracks; 3], external: BTreeMap<String, Tracks>) {
        self.validation.add(&parts[0], &self.scales);
        self.test.add(&parts[1], &self.scales);
        for (method, tracks) in external {
            let (levels, horizon, step_ms) = (&self.levels, self.horizon, self.step_ms);
            let scorer = self
                .external
                .entry(method)
                .or_insert_with(|| Scorer::new(Part::Test.name(), &[Method::Model], levels, horizon, step_ms));
            scorer.add(&tracks, &self.scales);
        }
        self.series += model(&parts[1]).len();
        self.validation_origins += model(&parts[0]).iter().map(|t| t.origins.len()).sum::<usize>();
        self.filled += model(&parts[1]).iter().map(|t| t.actual.iter().filter(|a| a.is_nan()).count()).sum::<usize>();
    }

    /// Where a group's `auto` fell back: in the test part and ahead.
    pub(crate) fn fell_back(&mut self, switches: &[fallback::Switches; 2]) {
        self.switched += switches[0].values().map(Vec::len).sum::<usize>();
        self.falls_back_ahead.extend(switches[1].keys().map(|(k, c)| format!("{k} {c}")));
    }

    /// Every score row: every method on validation (but `auto`) and on test, then the
    /// external forecasts on test; and the stage's summary.
    pub(crate) fn finish(self, targets: &[String], degradation: f64) -> (Vec<Score>, Summary) {
        let mut rows = self.validation.finish();
        rows.extend(self.test.finish());
        for (method, scorer) in self.external {
            let method: Arc<str> = method.as_str().into();
            rows.extend(scorer.finish().into_iter().map(|r| Score { method: method.clone(), ..r }));
        }
        let mut summary = Summary::new();
        summary.insert("series".into(), self.series.into());
        summary.insert("validation_origins".into(), self.validation_origins.into());
        summary.insert("horizon_steps".into(), self.horizon.into());
        summary.extend(headlines(&rows, targets, &self.levels));
        let mut picked: BTreeMap<String, usize> = BTreeMap::new();
        for (m, _) in self.choice.values() {
            *picked.entry(format!("auto_chose_{}", m.name())).or_default() += 1;
        }
        let counts = [
            ("origins", self.test_origins),
            ("mase_scaled_by_last_value", self.naive_scaled),
            ("seasonal_naive_fell_back", self.fallbacks),
        ];
        for (k, n) in picked.into_iter().chain(counts.iter().map(|(k, n)| (k.to_string(), *n))) {
            summary.insert(k, n.into());
        }
        summary.insert("filled_actuals_not_scored".into(), self.filled.into());
        summary.extend(model_health(&rows, targets, degradation, self.switched, self.falls_back_ahead));
        summary.extend(applearner_plan::units::said(&self.implausible));
        (rows, summary)
    }
}

/// The model's tracks of a part.
fn model(part: &Tracks) -> Vec<&Track> {
    part.iter().filter(|(k, _)| k.0 == Method::Model).map(|(_, t)| t).collect()
}

/// The headline test scores: the model's and `auto`'s MASE, and `auto`'s p90 coverage.
fn headlines(rows: &[Score], targets: &[String], levels: &[f64]) -> Summary {
    let headline = |method: &str, column: &str, metric: &str| {
        test_mean(rows, method, column, metric).map_or(f64::NAN, |v| (v * 1e4).round() / 1e4)
    };
    let mut summary = Summary::new();
    for c in targets {
        for m in [Method::Model.name(), Method::Auto.name()] {
            summary.insert(format!("{m}_mase_{c}"), headline(m, c, "mase").into());
        }
        if let Some(l) = levels.iter().find(|l| (**l - 0.9).abs() < 1e-9) {
            let coverage = headline(Method::Auto.name(), c, &format!("coverage_{}", level_name(*l)));
            summary.insert(format!("auto_coverage_p90_{c}"), coverage.into());
        }
    }
    summary
}

/// A method's `metric` on the test part, the mean over series of one target, every step.
fn test_mean(rows: &[Score], method: &str, column: &str, metric: &str) -> Option<f64> {
    let row = rows.iter().find(|r| {
        r.part == "test"
            && &*r.method == method
            && &*r.resource == column
            && r.scope == "mean"
            && r.bucket == "all"
            && &*r.metric == metric
    });
    row.map(|r| r.value)
}

/// Where `auto` fell back (`switched` test origins; `ahead`: the series it forecasts by a
/// baseline now) and whether the model is due for retraining, as summary entries.
fn model_health(rows: &[Score], targets: &[String], degradation: f64, switched: usize, ahead: Vec<String>) -> Summary {
    let mut summary = Summary::new();
    // A few series falling back is what `auto` is for; the fleet's score decides a retrain.
    if !ahead.is_empty() {
        tracing::info!("{} series are forecast by a baseline for now: the model trails it there", ahead.len());
    }
    summary.insert("auto_fell_back_at_test_origins".into(), (switched as u64).into());
    summary.insert("auto_falls_back_ahead".into(), ahead.into());
    let reasons = due_for_retraining(rows, targets, degradation);
    for r in &reasons {
        tracing::warn!("retrain the model: {r}");
    }
    summary.insert("retrain".into(), (!reasons.is_empty()).into());
    summary.insert("retrain_reasons".into(), reasons.into());
    summary
}

/// Why the model should be retrained: per target where its mean test MASE is more than
/// `degradation` worse than the best baseline's.
fn due_for_retraining(rows: &[Score], targets: &[String], degradation: f64) -> Vec<String> {
    let mean = |method: &str, column: &str| test_mean(rows, method, column, "mase").filter(|v| v.is_finite());
    let mut out = Vec::new();
    for c in targets {
        let Some(model) = mean(Method::Model.name(), c) else { continue };
        let best = Method::BASELINES
            .iter()
            .filter_map(|m| Some((m.name(), mean(m.name(), c)?)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((name, b)) = best.filter(|b| model > (1.0 + degradation) * b.1) {
            out.push(format!(
                "{c}: the model's MASE {model:.3} is above {name}'s {b:.3} by more than {:.0} %",
                100.0 * degradation
            ));
        }
    }
    out
}
