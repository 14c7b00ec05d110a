//! Replaying real usage against a line (a request or a limit): what was reserved, what was
//! used, the slack, the time above the line and the changes.

use super::*;

/// The outcome of replaying usage against a line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Replay {
    /// Σ line × time, Σ used × time, Σ max(line − used, 0) × time (unit-hours).
    pub provisioned: f64,
    pub used: f64,
    pub slack: f64,
    /// Steps with usage above the line, and all steps.
    pub under_steps: usize,
    pub steps: usize,
    pub changes: usize,
    /// Workload-days replayed: what changes per day are counted against.
    pub days: f64,
}

impl Replay {
    pub fn add(&mut self, line: f64, used: f64, hours: f64) {
        self.provisioned += line * hours;
        self.used += used * hours;
        self.slack += (line - used).max(0.0) * hours;
        self.under_steps += usize::from(used > line);
        self.steps += 1;
        self.days += hours / 24.0;
    }

    pub fn merge(&mut self, other: &Replay) {
        self.provisioned += other.provisioned;
        self.used += other.used;
        self.slack += other.slack;
        self.under_steps += other.under_steps;
        self.steps += other.steps;
        self.changes += other.changes;
        self.days += other.days;
    }

    pub fn slack_pct(&self) -> f64 {
        100.0 * self.slack / self.provisioned
    }

    /// The share of steps above the line, in %.
    pub fn risk_pct(&self) -> f64 {
        100.0 * self.under_steps as f64 / self.steps as f64
    }

    pub fn changes_per_day(&self) -> f64 {
        if self.days > 0.0 { self.changes as f64 / self.days } else { 0.0 }
    }
}

/// How a line's factor adapts between recalibrations: adaptive conformal inference (Gibbs &
/// Candès 2021) on the factor's logarithm. After each decision log k moves by `rate` × (the
/// share of the steps that followed above the line − `risk`). While log k stays inside
/// [`K_RANGE`] the sum of those moves is bounded, so over T decisions the share of steps
/// above the line differs from `risk` by at most ln(50 / 0.05) / (rate × T): the long-run
/// rate meets the target whatever the data does, unless a cap or the range's end binds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adapt {
    pub rate: f64,
    pub risk: f64,
}

/// One line's loop for one workload after a decision: when it was made, what it holds, and
/// the factor it was made with (kept as is, so a refresh reading it continues exactly where
/// the replay would). What the `state` table keeps between refreshes.
#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    pub at: i64,
    pub held: Held,
    pub k: f64,
}

/// One workload's decisions to replay: its timeline (or some of its decisions), the rule's
/// values at each decision (scaled by the factor) and the floor they never go under.
#[derive(Clone, Copy)]
pub struct Case<'a> {
    pub key: &'a str,
    pub timeline: View<'a>,
    pub base: &'a [f64],
    pub floor: Option<&'a [f64]>,
    /// A limit's cap: never above `multiple` × the highest usage seen then, nor `max`.
    pub cap: Option<(&'a [f64], Cap)>,
    /// The limit's highest usage seen at each decision, where the timeline has it.
    seen: Option<&'a [f64]>,
}

impl<'a> Case<'a> {
    /// `rule` on `timeline`; `None` where the timeline lacks it.
    pub fn of(key: &'a str, timeline: &'a Timeline, rule: &Rule) -> Option<Case<'a>> {
        Case::within(key, timeline, rule, 0..timeline.at.len())
    }

    /// `rule` on the decisions `r` of `timeline`.
    pub fn within(key: &'a str, t: &'a Timeline, rule: &Rule, r: std::ops::Range<usize>) -> Option<Case<'a>> {
        let (scaled, floor) = rule.parts();
        let values = |rule: &Rule| Some(&t.bases.get(rule)?[r.clone()]);
        let floor = match floor {
            Some(f) => Some(values(&f)?),
            None => None,
        };
        let (base, seen) = (values(&scaled)?, values(&Rule::Seen));
        Some(Case { key, timeline: t.view(r.clone()), base, floor, cap: None, seen })
    }

    /// The case under `line`'s cap, where it has one.
    pub fn capped(self, line: &Line) -> Case<'a> {
        Case { cap: line.cap.zip(self.seen).map(|(cap, seen)| (seen, cap)), ..self }
    }

    /// What the case asks for at decision `i` with factor `k`: the base × k, never below
    /// the floor nor above the cap.
    pub fn wanted_at(&self, i: usize, k: f64) -> f64 {
        let mut w = self.base[i] * k;
        if let Some(floor) = self.floor {
            w = w.max(floor[i]);
        }
        if let Some((seen, cap)) = self.cap {
            w = cap.apply(w, seen[i]);
        }
        w
    }

    /// What it asks for at decision `i` if the value may have to hold for `policy`'s hold:
    /// the largest wanted over the decisions of the same forecast within it. A value set at
    /// one hour of a day-ahead forecast then covers the hours it may be kept for.
    fn held_at(&self, policy: &Policy, i: usize, k: f64) -> f64 {
        let (t, hold) = (self.timeline, policy.hold_ms());
        (i..t.at.len())
            .take_while(|&j| t.known[j] == t.known[i] && t.at[j] < t.at[i] + hold)
            .map(|j| self.wanted_at(j, k))
            .fold(f64::MIN, f64::max)
    }

    /// `held_at` of every decision.
    pub fn held(&self, policy: &Policy, k: f64) -> Vec<f64> {
        (0..self.timeline.at.len()).map(|i| self.held_at(policy, i, k)).collect()
    }

    /// The loop a refresh runs, decision by decision, from `from` (the state the last refresh
    /// left: decisions before its time are `None`, the one at its time is `from` itself, so
    /// the usage that followed it counts in this refresh) or from the start with factor `k`:
    /// learn from the usage that followed the decision in force (a breach lets the next
    /// decision raise the value; `adapt` moves the factor), then decide. Returns the loop
    /// after each decision.
    pub fn walk(&self, policy: &Policy, k: f64, adapt: Option<Adapt>, from: Option<&Loop>) -> Vec<Option<Loop>> {
        let t = self.timeline;
        let mut state = from.cloned();
        // What followed the decision in force: found in this timeline, or unknown (a gap).
        let mut followed: Option<&[f64]> = None;
        let mut out = Vec::with_capacity(t.at.len());
        for i in 0..t.at.len() {
            if let Some(s) = state.as_ref().filter(|s| t.at[i] <= s.at) {
                let in_force = t.at[i] == s.at;
                if in_force {
                    followed = Some(&t.usage[i]);
                }
                out.push(in_force.then(|| s.clone()));
                continue;
            }
            let mut k = state.as_ref().map_or(k, |s| s.k);
            let mut breached = false;
            if let (Some(s), Some(u)) = (&state, followed.filter(|u| !u.is_empty())) {
                let above = u.iter().filter(|&&x| x > s.held.value).count();
                breached = above > 0;
                if let Some(a) = adapt {
                    let moved = k.ln() + a.rate * (above as f64 / u.len() as f64 - a.risk);
                    k = moved.exp().clamp(K_RANGE.0, K_RANGE.1);
                }
            }
            let wanted = self.held_at(policy, i, k);
            let held = policy.decide(state.map(|s| s.held), t.at[i], wanted, breached);
            let next = Loop { at: t.at[i], held, k };
            followed = Some(&t.usage[i]);
            out.push(Some(next.clone()));
            state = Some(next);
        }
        out
    }

    /// The decisions `walk` made, replayed against the usage that followed them.
    pub fn replay_walk(&self, walk: &[Option<Loop>], unit: f64, step_hours: f64) -> Replay {
        let mut out = Replay::default();
        let mut first_changes = None;
        for (l, usage) in walk.iter().zip(self.timeline.usage.iter()) {
            let Some(l) = l else { continue };
            first_changes.get_or_insert(l.held.changes);
            out.changes = l.held.changes - first_changes.unwrap_or(0);
            for u in usage {
                out.add(l.held.value / unit, u / unit, step_hours);
            }
        }
        out
    }

    /// The line `policy` makes of `base × k`, replayed against the usage; `unit` is the
    /// reported unit (1 core, 1 GiB), `step_hours` the grid step.
    pub fn replay(&self, policy: &Policy, k: f64, unit: f64, step_hours: f64) -> Replay {
        let (lines, changes) = policy.apply(&self.timeline.at, &self.held(policy, k), self.timeline.usage);
        let mut out = Replay { changes, ..Default::default() };
        for (line, usage) in lines.iter().zip(self.timeline.usage.iter()) {
            for u in usage {
                out.add(line / unit, u / unit, step_hours);
            }
        }
        out
    }

    /// Only the steps above the line: what calibration searches on.
    pub fn under(&self, policy: &Policy, k: f64) -> usize {
        let (lines, _) = policy.apply(&self.timeline.at, &self.held(policy, k), self.timeline.usage);
        lines.iter().zip(self.timeline.usage.iter()).map(|(l, usage)| usage.iter().filter(|u| *u > l).count()).sum()
    }
}
