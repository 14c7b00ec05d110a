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

/// One workload's decisions to replay: its timeline, the rule's values at each decision
/// (scaled by the factor) and the floor they never go under.
#[derive(Clone, Copy)]
pub struct Case<'a> {
    pub key: &'a str,
    pub timeline: &'a Timeline,
    pub base: &'a [f64],
    pub floor: Option<&'a [f64]>,
    /// A limit's cap: never above `multiple` × the highest usage seen then, nor `max`.
    pub cap: Option<(&'a [f64], Cap)>,
}

impl<'a> Case<'a> {
    /// `rule` on `timeline`; `None` where the timeline lacks it.
    pub fn of(key: &'a str, timeline: &'a Timeline, rule: &Rule) -> Option<Case<'a>> {
        let (scaled, floor) = rule.parts();
        let floor = match floor {
            Some(f) => Some(timeline.bases.get(&f)?.as_slice()),
            None => None,
        };
        Some(Case { key, timeline, base: timeline.bases.get(&scaled)?, floor, cap: None })
    }

    /// The case under `line`'s cap, where it has one.
    pub fn capped(self, line: &Line) -> Case<'a> {
        let seen = self.timeline.bases.get(&Rule::Seen).map(Vec::as_slice);
        Case { cap: line.cap.zip(seen).map(|(cap, seen)| (seen, cap)), ..self }
    }

    /// What the case asks for at each decision with factor `k`.
    pub fn wanted(&self, k: f64) -> Vec<f64> {
        let mut wanted: Vec<f64> = match self.floor {
            Some(floor) => self.base.iter().zip(floor).map(|(b, f)| (b * k).max(*f)).collect(),
            None => self.base.iter().map(|b| b * k).collect(),
        };
        if let Some((seen, cap)) = self.cap {
            for (w, s) in wanted.iter_mut().zip(seen) {
                *w = cap.apply(*w, *s);
            }
        }
        wanted
    }

    /// What it asks for at each decision if the value may have to hold for `policy`'s hold:
    /// the largest wanted over the decisions of the same forecast within it. A value set at
    /// one hour of a day-ahead forecast then covers the hours it may be kept for.
    pub fn held(&self, policy: &Policy, k: f64) -> Vec<f64> {
        let (wanted, t) = (self.wanted(k), self.timeline);
        let hold = policy.hold_ms();
        (0..wanted.len())
            .map(|i| {
                let same = (i..wanted.len()).take_while(|&j| t.known[j] == t.known[i] && t.at[j] < t.at[i] + hold);
                same.map(|j| wanted[j]).fold(f64::MIN, f64::max)
            })
            .collect()
    }

    /// The line `policy` makes of `base × k`, replayed against the usage; `unit` is the
    /// reported unit (1 core, 1 GiB), `step_hours` the grid step.
    pub fn replay(&self, policy: &Policy, k: f64, unit: f64, step_hours: f64) -> Replay {
        let (lines, changes) = policy.apply(&self.timeline.at, &self.held(policy, k), &self.timeline.usage);
        let mut out = Replay { changes, ..Default::default() };
        for (line, usage) in lines.iter().zip(&self.timeline.usage) {
            for u in usage {
                out.add(line / unit, u / unit, step_hours);
            }
        }
        out
    }

    /// Only the steps above the line: what calibration searches on.
    pub fn under(&self, policy: &Policy, k: f64) -> usize {
        let (lines, _) = policy.apply(&self.timeline.at, &self.held(policy, k), &self.timeline.usage);
        lines.iter().zip(&self.timeline.usage).map(|(l, usage)| usage.iter().filter(|u| *u > l).count()).sum()
    }
}
