//! One line (a request or a limit) on one change budget: the model's plan calibrated on the
//! validation part, KRR and VPA at their defaults and tuned there to the same risk, and the
//! oracle, all replayed over the test part.

use super::*;

/// A line the plan sets: which resource, request or limit, how it is sized, floor and step.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: &'static str,
    pub resource: Resource,
    pub sizing: Sizing,
    pub floor: f64,
    pub step: f64,
    /// Limits only: how far above the highest usage seen the line may go.
    pub cap: Option<Cap>,
}

/// A limit's cap: `multiple` × the highest usage seen, and never above `max` (the largest
/// node's allocatable, where given), rounded down to the line's `step` so that rounding the
/// value up to it never crosses the cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cap {
    pub multiple: f64,
    pub max: f64,
    pub step: f64,
}

impl Cap {
    /// `wanted` under the cap; a decision that has seen no usage yet is capped by `max` only.
    pub fn apply(&self, wanted: f64, seen: f64) -> f64 {
        let by_usage = if seen.is_finite() && seen > 0.0 { self.multiple * seen } else { f64::INFINITY };
        let cap = by_usage.min(self.max);
        let cap = if self.step > 0.0 && cap.is_finite() { (cap / self.step + 1e-9).floor() * self.step } else { cap };
        wanted.min(cap)
    }
}

/// A stated risk (calibrated), or a fixed rule × multiplier.
#[derive(Debug, Clone)]
pub enum Sizing {
    Risk(f64),
    Fixed(Rule, f64),
}

impl Line {
    pub fn risk(&self) -> Option<f64> {
        match self.sizing {
            Sizing::Risk(r) => Some(r),
            Sizing::Fixed(..) => None,
        }
    }

    /// The reported unit: cores, GiB.
    pub fn unit(&self) -> f64 {
        if self.resource == Resource::Cpu { 1.0 } else { MIB * 1024.0 }
    }

    /// KRR's and VPA's value for this line: their rule and default multiplier.
    fn recommenders(&self) -> [(Method, Rule, f64); 2] {
        let krr = if self.resource == Resource::Cpu { (Rule::Krr(950), 1.0) } else { (Rule::Krr(1000), 1.15) };
        [(Method::Krr, krr.0, krr.1), (Method::Vpa, Rule::Vpa(900), 1.15)]
    }
}

/// One aggregate or per-series result.
#[derive(Debug, Clone)]
pub struct Row {
    pub method: Method,
    /// `calibrated`/`fixed` (the model), `default`, `tuned`, `oracle`, `sweep`.
    pub variant: &'static str,
    pub setting: String,
    /// Empty: every workload together.
    pub key: String,
    pub replay: Replay,
}

/// What one line and budget gave.
pub struct Outcome {
    pub line: usize,
    pub budget: u32,
    pub rows: Vec<Row>,
    /// The model's rule and calibration, for the plan ahead.
    pub rule: Rule,
    pub calibrated: Calibrated,
    /// Workloads with test data but no validation data: given the fleet's multiplier.
    pub uncalibrated: usize,
    /// The configured budget only: each workload's loop over the test part and ahead.
    pub walks: BTreeMap<String, Walked>,
}

/// What one line and budget take from the validation part (see [`Job::fit`]).
pub struct Fitted {
    rule: Rule,
    calibrated: Calibrated,
    /// `calibrated`, or `fixed` for a fixed sizing.
    variant: &'static str,
    setting: String,
    /// The configured budget only: how fast factors adapt.
    rate: Option<f64>,
    recommenders: Vec<Recommender>,
}

/// KRR or VPA on a line: its rule and multiplier by default, and tuned to the line's risk.
struct Recommender {
    method: Method,
    rule: Rule,
    k: f64,
    tuned: Option<(Rule, f64)>,
}

/// One line and budget's replays of the test part as groups of series add to them.
#[derive(Default)]
pub struct Replays {
    heads: Vec<Head>,
    walks: BTreeMap<String, Walked>,
    uncalibrated: usize,
}

/// One method and setting's replay: the total and, where kept, each series'.
struct Head {
    method: Method,
    variant: &'static str,
    setting: String,
    total: Replay,
    each: Vec<(String, Replay)>,
    cases: usize,
}

impl Head {
    fn add(&mut self, key: &str, replay: Replay, each: bool) {
        self.total.merge(&replay);
        self.cases += 1;
        if each {
            self.each.push((key.to_string(), replay));
        }
    }
}

/// Each case's replay (`None`: none for it) into `head`: made a case per core, added in the
/// cases' order, so the sums are those of one replay after another.
fn add_each(head: &mut Head, cases: &[Case], each: bool, replay: impl Fn(usize, &Case) -> Option<Replay> + Sync) {
    let replays: Vec<Option<Replay>> = cases.par_iter().enumerate().map(|(i, c)| replay(i, c)).collect();
    for (c, r) in cases.iter().zip(replays) {
        if let Some(r) = r {
            head.add(c.key, r, each);
        }
    }
}

/// The heads of a job's rows in their order, each made when a group first reaches it.
struct Cursor<'a> {
    heads: &'a mut Vec<Head>,
    n: usize,
}

impl Cursor<'_> {
    fn next(&mut self, method: Method, variant: &'static str, setting: impl FnOnce() -> String) -> &mut Head {
        if self.heads.len() == self.n {
            let (total, each) = (Replay::default(), Vec::new());
            self.heads.push(Head { method, variant, setting: setting(), total, each, cases: 0 });
        }
        self.n += 1;
        &mut self.heads[self.n - 1]
    }
}

/// One workload's loop over the test part and on into the plan ahead.
pub struct Walked {
    /// Per decision ahead, the value in force.
    pub ahead: Vec<f64>,
    /// The loop after the first decision ahead (or the last one made): what the next
    /// refresh continues from.
    pub state: Option<Loop>,
    /// Per UTC day of the test part: steps, steps above the line, and the factor at its end.
    pub days: Vec<(i64, usize, usize, f64)>,
}

/// Per UTC day of the walked decisions: steps, steps above the line, the factor at the day's
/// last decision.
fn per_day(case: &Case, walk: &[Option<Loop>]) -> Vec<(i64, usize, usize, f64)> {
    let mut days: Vec<(i64, usize, usize, f64)> = Vec::new();
    for (i, l) in walk.iter().enumerate() {
        let Some(l) = l else { continue };
        let day = l.at - l.at.rem_euclid(DAY_MS);
        if days.last().is_none_or(|d| d.0 != day) {
            days.push((day, 0, 0, 0.0));
        }
        let d = days.last_mut().expect("pushed");
        let usage = &case.timeline.usage[i];
        d.1 += usage.len();
        d.2 += usage.iter().filter(|&&u| u > l.held.value).count();
        d.3 = l.k;
    }
    days
}

/// The adaptation rates tried on validation.
pub const ADAPT_RATES: [f64; 4] = [0.0, 0.03, 0.1, 0.3];

pub type Timelines = BTreeMap<String, BTreeMap<(String, String), Timeline>>;

pub struct Job<'a> {
    pub line: &'a Line,
    pub index: usize,
    pub policy: Policy,
    /// Every series' validation part and plan ahead; the test part comes a group of series
    /// at a time ([`Job::add`]).
    pub timelines: &'a Timelines,
    /// What each workload had allocated (empty where the data holds none).
    pub allocation: &'a Allocation,
    pub columns: &'a [String],
    pub step_hours: f64,
    /// Per-series rows and the trade-off curves (the configured budget only).
    pub detail: bool,
    /// How fast each workload's factor adapts online (0: fixed factors; `None`: chosen on
    /// validation).
    pub adapt_rate: Option<f64>,
    /// Where the last refresh left each workload's loop.
    pub state: &'a States,
}

impl<'a> Job<'a> {
    /// The cases of `rule` in `part` of `timelines`: the validation part and the plan ahead
    /// are the job's own, the test part comes a group of series at a time.
    pub fn cases<'t>(&self, timelines: &'t Timelines, part: &str, rule: &Rule) -> Vec<Case<'t>> {
        let slot = (self.line.resource.name().to_string(), part.to_string());
        timelines
            .iter()
            .filter_map(|(key, tl)| {
                let t = tl.get(&slot).filter(|t| !t.at.is_empty())?;
                Case::of(key, t, rule)
            })
            .collect()
    }

    /// The model's cases: those of `rule` under the line's cap.
    pub fn model_cases<'t>(&self, timelines: &'t Timelines, part: &str, rule: &Rule) -> Vec<Case<'t>> {
        self.cases(timelines, part, rule).into_iter().map(|c| c.capped(self.line)).collect()
    }

    /// Every case replayed with its multiplier, in total.
    pub fn replay(&self, cases: &[Case], k: &dyn Fn(&str) -> f64) -> Replay {
        let mut total = Replay::default();
        for c in cases {
            total.merge(&c.replay(&self.policy, k(c.key), self.line.unit(), self.step_hours));
        }
        total
    }

    /// The model's rule and calibration for `risk`, by two-fold cross-validation in time:
    /// each rule, with factors per workload or one for the fleet, is calibrated on one half of every workload's validation part and replayed
    /// on the other, scaled there by the one factor that meets the target; the rule with the
    /// least slack at that matched risk (summed over both folds) wins. How far the held-out
    /// halves' risk overshoots before that scaling says how much calibration under-covers new
    /// data: the final calibration, on the whole validation part, aims that much lower (at
    /// most 4×, and only where the halves have enough steps to show the target's rate).
    fn choose(&self, risk: f64) -> (Rule, Calibrated) {
        let halves = self.validation_halves();
        let half = |h: usize, rule: &Rule| self.half(&halves, h, rule);
        let mut best: Option<((bool, f64), Rule, bool, Replay)> = None;
        for (rule, own) in model_rules(self.columns, self.line.name.ends_with("limit"))
            .into_iter()
            .flat_map(|r| [(r.clone(), true), (r, false)])
        {
            let (mut matched, mut unscaled) = (Replay::default(), Replay::default());
            for (fit, check) in [(0, 1), (1, 0)] {
                let calibrated = per_workload(&half(fit, &rule), &self.policy, risk, own);
                let held_out = half(check, &rule);
                unscaled.merge(&self.replay(&held_out, &|k| calibrated.of(k)));
                let s = scale(&held_out, &self.policy, risk, &|k| calibrated.of(k));
                matched.merge(&self.replay(&held_out, &|k| calibrated.of(k) * s));
            }
            // A rule no factor brings to the target (a limit held under its cap) ranks behind
            // every rule that gets there, by its risk: (missed, risk or slack) in tuple order.
            let missed = matched.risk_pct() > 100.0 * risk + 1e-9;
            let rank = (missed, if missed { matched.risk_pct() } else { matched.slack_pct() });
            tracing::debug!(
                "{} {}/day candidate {} (own factors {own}): {:.3} % slack held out at {:.3} % risk",
                self.line.name,
                self.policy.changes_per_day,
                rule.label(),
                matched.slack_pct(),
                matched.risk_pct()
            );
            if best.as_ref().is_none_or(|b| rank < b.0) {
                best = Some((rank, rule, own, unscaled));
            }
        }
        let ((_, slack), rule, own, held_out) = best.expect("at least one rule");
        tracing::debug!(
            "{} {}/day: {} (own factors {own}), {slack:.3} % slack held out",
            self.line.name,
            self.policy.changes_per_day,
            rule.label()
        );
        let tightened = if held_out.steps as f64 * risk >= 10.0 {
            risk * (100.0 * risk / held_out.risk_pct().max(1e-12)).clamp(0.25, 1.0)
        } else {
            risk
        };
        let cases = self.model_cases(self.timelines, "validation", &rule);
        (rule.clone(), per_workload(&cases, &self.policy, tightened, own))
    }

    /// Each workload's validation part with at least two decisions, and where its second
    /// half begins.
    fn validation_halves(&self) -> Vec<(&'a str, &'a Timeline, usize)> {
        let slot = (self.line.resource.name().to_string(), "validation".to_string());
        self.timelines
            .iter()
            .filter_map(|(key, tl)| {
                tl.get(&slot).filter(|t| t.at.len() >= 2).map(|t| (key.as_str(), t, t.at.len() / 2))
            })
            .collect()
    }

    /// Half `h` (0 or 1) of each of `halves`, under `rule`.
    fn half(&self, halves: &[(&'a str, &'a Timeline, usize)], h: usize, rule: &Rule) -> Vec<Case<'a>> {
        let range = |t: &Timeline, mid: usize| if h == 0 { 0..mid } else { mid..t.at.len() };
        halves
            .iter()
            .filter_map(|&(key, t, mid)| Some(Case::within(key, t, rule, range(t, mid))?.capped(self.line)))
            .collect()
    }

    /// How fast factors adapt, unless configured: chosen on validation. Factors calibrated on
    /// the first half of each workload's validation part, then each rate's loop walked over
    /// the second half from them; the rate with the most workloads within 2× the target wins,
    /// the least slack among equals. 0 (fixed factors) is a candidate.
    fn choose_rate(&self, rule: &Rule, calibrated: &Calibrated, risk: f64) -> f64 {
        if let Some(rate) = self.adapt_rate {
            return rate;
        }
        let halves = self.validation_halves();
        let half = |h: usize| self.half(&halves, h, rule);
        let own = calibrated.k.values().any(|k| *k != calibrated.fleet);
        let first = per_workload(&half(0), &self.policy, risk, own);
        let mut best = (f64::MIN, f64::MAX, 0.0);
        for rate in ADAPT_RATES {
            let adapt = (rate > 0.0).then_some(Adapt { rate, risk });
            let (mut within, mut total) = (Vec::new(), Replay::default());
            for c in half(1) {
                let walk = c.walk(&self.policy, first.of(c.key), adapt, None);
                let r = c.replay_walk(&walk, self.line.unit(), self.step_hours);
                within.push(r.risk_pct() <= 200.0 * risk);
                total.merge(&r);
            }
            let share = within.iter().filter(|w| **w).count() as f64 / within.len().max(1) as f64;
            if share > best.0 + 1e-9 || (share > best.0 - 1e-9 && total.slack_pct() < best.1) {
                best = (share, total.slack_pct(), rate);
            }
        }
        best.2
    }

    /// What the line and budget take from the validation part: the model's rule and
    /// calibration, how fast factors adapt (the configured budget only), and the
    /// recommenders at their defaults and tuned.
    pub fn fit(&self) -> Fitted {
        let (rule, calibrated, variant) = match &self.line.sizing {
            Sizing::Fixed(rule, k) => (rule.clone(), Calibrated { fleet: *k, ..Default::default() }, "fixed"),
            Sizing::Risk(r) => {
                let (rule, c) = self.choose(*r);
                (rule, c, "calibrated")
            }
        };
        let setting = if calibrated.k.values().all(|k| *k == calibrated.fleet) {
            format!("{} (one factor for the fleet)", rule.scaled(&format!("{:.3}", calibrated.fleet)))
        } else {
            format!("{} (fleet {:.3})", rule.scaled("a factor per workload"), calibrated.fleet)
        };
        let rate = self.detail.then(|| self.line.risk().map_or(0.0, |risk| self.choose_rate(&rule, &calibrated, risk)));
        let recommenders = self
            .line
            .recommenders()
            .into_iter()
            .map(|(method, rule, k)| {
                let tuned = self.line.risk().map(|risk| self.tune(rule.clone(), risk));
                Recommender { method, rule, k, tuned }
            })
            .collect();
        Fitted { rule, calibrated, variant, setting, rate, recommenders }
    }

    /// Adds a group of series' test part (`group`: every series of the group, with its test
    /// timelines) to `r`: every method and setting, series by series in key order, as one
    /// replay of all the series would.
    pub fn add(&self, f: &Fitted, r: &mut Replays, group: &Timelines) {
        let (unit, hours, detail) = (self.line.unit(), self.step_hours, self.detail);
        let mut heads = Cursor { heads: &mut r.heads, n: 0 };
        let test = self.model_cases(group, "test", &f.rule);
        // A fixed sizing has nothing to calibrate.
        if let Sizing::Risk(_) = self.line.sizing {
            r.uncalibrated += test.iter().filter(|c| !f.calibrated.k.contains_key(c.key)).count();
        }
        if let Some(rate) = f.rate {
            let head =
                heads.next(Method::Model, "adapted", || format!("{}, adapting online at rate {rate}", f.setting));
            self.walk(group, f, rate, head, &mut r.walks);
        }
        let model: Vec<Replay> =
            test.par_iter().map(|c| c.replay(&self.policy, f.calibrated.of(c.key), unit, hours)).collect();
        let head = heads.next(Method::Model, f.variant, || f.setting.clone());
        test.iter().zip(&model).for_each(|(c, m)| head.add(c.key, *m, detail));
        if detail {
            // Per workload, the oracle at the risk the plan ran at on it: the least any plan on
            // this budget reserves for the same time above the line.
            let head = heads.next(Method::Oracle, "matched", || "foresight at the plan's risk on each workload".into());
            add_each(head, &test, detail, |i, c| {
                Some(oracle(c.timeline, &self.policy, model[i].risk_pct() / 100.0, unit, hours))
            });
        }
        // What was allocated at each step, for the workloads that have this line's allocation.
        let head = heads.next(Method::Current, "allocated", || "what was allocated at each step".into());
        add_each(head, &test, detail, |_, c| {
            let points = self.allocation.get(c.key)?.get(self.line.name).filter(|p| !p.is_empty())?;
            Some(replay_allocated(c.timeline, points, unit, hours))
        });
        for Recommender { method, rule, k, tuned } in &f.recommenders {
            let default = heads.next(*method, "default", || factor_label(rule, *k));
            self.add_rule(default, &self.cases(group, "test", rule), &|_| *k, detail);
            if let Some((rule, k)) = tuned {
                let head = heads.next(*method, "tuned", || factor_label(rule, *k));
                self.add_rule(head, &self.cases(group, "test", rule), &|_| *k, detail);
            }
        }
        if let Some(risk) = self.line.risk() {
            let head =
                heads.next(Method::Oracle, "oracle", || format!("foresight, {} per day", self.policy.changes_per_day));
            let cases = self.cases(group, "test", &Rule::Recent(RECENT[0]));
            add_each(head, &cases, detail, |_, c| Some(oracle(c.timeline, &self.policy, risk, unit, hours)));
        }
        if detail {
            self.curves(&mut heads, group, f);
        }
    }

    /// Every case replayed with its multiplier, into `head`.
    fn add_rule(&self, head: &mut Head, cases: &[Case], k: &(dyn Fn(&str) -> f64 + Sync), each: bool) {
        add_each(head, cases, each, |_, c| Some(c.replay(&self.policy, k(c.key), self.line.unit(), self.step_hours)));
    }

    /// The rows of every method and setting, once every group is in.
    pub fn outcome(&self, f: Fitted, r: Replays) -> Outcome {
        let mut rows = Vec::new();
        // Without any workload allocated, there is nothing allocated to replay.
        for h in r.heads.into_iter().filter(|h| h.method != Method::Current || h.cases > 0) {
            let row = |key: String, replay: Replay| Row {
                method: h.method,
                variant: h.variant,
                setting: h.setting.clone(),
                key,
                replay,
            };
            rows.push(row(String::new(), h.total));
            rows.extend(h.each.into_iter().map(|(key, r)| row(key, r)));
        }
        let (line, budget) = (self.index, self.policy.changes_per_day);
        Outcome {
            line,
            budget,
            rows,
            rule: f.rule,
            calibrated: f.calibrated,
            uncalibrated: r.uncalibrated,
            walks: r.walks,
        }
    }

    /// Each workload's loop of a group over the test part and the decisions ahead, from where
    /// the last refresh left it (where that was under the same rule): the test part replayed
    /// into `head` and each workload's walk.
    fn walk(&self, group: &Timelines, f: &Fitted, rate: f64, head: &mut Head, walks: &mut BTreeMap<String, Walked>) {
        let walked: Vec<(&String, Option<(Option<Replay>, Walked)>)> =
            group.par_iter().map(|(key, tl)| (key, self.walk_one(key, tl, f, rate))).collect();
        for (key, (replay, walk)) in walked.into_iter().filter_map(|(k, w)| Some((k, w?))) {
            if let Some(r) = replay {
                head.add(key, r, true);
            }
            walks.insert(key.clone(), walk);
        }
    }

    /// One workload's loop (see [`Job::walk`]): its test part replayed, where it decided
    /// anything there, and its walk; `None` without the rule's values.
    fn walk_one(
        &self,
        key: &str,
        tl: &BTreeMap<(String, String), Timeline>,
        f: &Fitted,
        rate: f64,
    ) -> Option<(Option<Replay>, Walked)> {
        let adapt = self.line.risk().filter(|_| rate > 0.0).map(|risk| Adapt { rate, risk });
        let slot = |part: &str| (self.line.resource.name().to_string(), part.to_string());
        let empty = Timeline::default();
        let ahead = self.timelines.get(key).and_then(|t| t.get(&slot(applearner_contracts::tables::forecasts::AHEAD)));
        let (test, ahead) = (tl.get(&slot("test")).unwrap_or(&empty), ahead.unwrap_or(&empty));
        let joined = test.joined(ahead);
        let case = Case::of(key, &joined, &f.rule)?.capped(self.line);
        let from = self.state.get(&(key.to_string(), self.line.name.to_string())).filter(|s| s.0 == f.rule.label());
        let from = from.map(|s| &s.1);
        let walk = case.walk(&self.policy, f.calibrated.of(key), adapt, from);
        let n = test.at.len();
        let replay = walk[..n]
            .iter()
            .any(Option::is_some)
            .then(|| case.replay_walk(&walk[..n], self.line.unit(), self.step_hours));
        let last = walk[..n].iter().flatten().last().or(from);
        let now = walk[n..].iter().flatten().next().or(last).cloned();
        let held = |l: &Option<Loop>| l.as_ref().or(now.as_ref()).map_or(f64::NAN, |l| l.held.value);
        let days = per_day(&case, &walk[..n]);
        Some((replay, Walked { ahead: walk[n..].iter().map(held).collect(), state: now, days }))
    }

    /// A recommender's knob tuned on validation to `risk`: KRR's CPU percentile (the lowest
    /// of its grid meeting it) or memory buffer; VPA's target percentile and margin (the pair
    /// with the least validation slack).
    pub fn tune(&self, rule: Rule, risk: f64) -> (Rule, f64) {
        if rule == Rule::Krr(1000) {
            return (rule.clone(), fleet(&self.cases(self.timelines, "validation", &rule), &self.policy, risk));
        }
        if let Rule::Vpa(_) = rule {
            let tuned = VPA_PERCENTILES.map(|p| {
                let cases = self.cases(self.timelines, "validation", &Rule::Vpa(p));
                let k = fleet(&cases, &self.policy, risk);
                (self.replay(&cases, &|_| k).slack_pct(), Rule::Vpa(p), k)
            });
            let best = tuned.into_iter().min_by(|a, b| a.0.total_cmp(&b.0)).expect("a grid");
            return (best.1, best.2);
        }
        for p in KRR_PERCENTILES {
            let cases = self.cases(self.timelines, "validation", &Rule::Krr(p));
            let points = cases.iter().map(|c| c.timeline.points()).sum();
            if cases.iter().map(|c| c.under(&self.policy, 1.0)).sum::<usize>() <= allowed(points, risk) {
                return (Rule::Krr(p), 1.0);
            }
        }
        (Rule::Krr(1000), 1.0)
    }

    /// Trade-off curves over the test part: the model's calibrated factors scaled, KRR's
    /// percentiles or buffers, VPA's margins. Drawn only; nothing is chosen from them.
    fn curves(&self, heads: &mut Cursor, group: &Timelines, f: &Fitted) {
        let test = self.model_cases(group, "test", &f.rule);
        let mut point = |method, setting: String, cases: &[Case], k: &(dyn Fn(&str) -> f64 + Sync)| {
            self.add_rule(heads.next(method, "sweep", || setting), cases, k, false);
        };
        for s in [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0] {
            point(Method::Model, format!("calibrated × {s}"), &test, &|k| f.calibrated.of(k) * s);
        }
        if self.line.resource == Resource::Cpu {
            for p in KRR_PERCENTILES {
                let rule = Rule::Krr(p);
                point(Method::Krr, factor_label(&rule, 1.0), &self.cases(group, "test", &rule), &|_| 1.0);
            }
        }
        for k in [1.0, 1.05, 1.15, 1.3, 1.5, 2.0, 3.0] {
            if self.line.resource == Resource::Memory {
                let rule = Rule::Krr(1000);
                point(Method::Krr, factor_label(&rule, k), &self.cases(group, "test", &rule), &|_| k);
            }
            let vpa = Rule::Vpa(900);
            point(Method::Vpa, factor_label(&vpa, k), &self.cases(group, "test", &vpa), &|_| k);
        }
    }
}

/// The rules the model's plan chooses from. Requests: each forecast column's peak, the most
/// cautious one with a recent quantile as its floor, and the recent quantiles alone. Limits (throttling, OOM kills) are never below a recent
/// peak: each forecast column's peak with a recent peak as its floor, or a recent peak
/// scaled (KRR's kind of limit).
fn model_rules(columns: &[String], limit: bool) -> Vec<Rule> {
    if limit {
        let peaks = RECENT.into_iter().filter(|r| r.tenths == 1000);
        let mut rules: Vec<Rule> =
            peaks.clone().flat_map(|r| columns.iter().map(move |c| Rule::ForecastOrRecent(c.clone(), r))).collect();
        rules.extend(peaks.map(Rule::Recent));
        return rules;
    }
    let mut rules: Vec<Rule> = columns.iter().map(|c| Rule::Forecast(c.clone())).collect();
    if let Some(top) = columns.last() {
        rules.extend(RECENT.map(|r| Rule::ForecastOrRecent(top.clone(), r)));
    }
    rules.extend(RECENT.map(Rule::Recent));
    rules
}

/// `history p95`, `history max + 15 %`, `VPA p90 + 32 %`.
pub fn factor_label(rule: &Rule, k: f64) -> String {
    let pct = ((k - 1.0) * 100.0).round();
    if pct == 0.0 {
        rule.label()
    } else {
        format!("{} {} {}%", rule.label(), if pct > 0.0 { "+" } else { "−" }, pct.abs())
    }
}
