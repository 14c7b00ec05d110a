//! How wanted values become the requests (or limits) in force: floor, rounding and a change
//! budget with hysteresis.

pub use crate::recommend::DAY_MS;
use crate::timeline::StepsView;

/// How long a value holds at `changes_per_day`: 24 h / that.
pub fn hold_ms(changes_per_day: u32) -> i64 {
    DAY_MS / i64::from(changes_per_day.max(1))
}

/// Floor, rounding, and how often and how much a value may change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub floor: f64,
    pub step: f64,
    /// No change for a gain (or loss) under this fraction of the value in force.
    pub min_change: f64,
    /// At most this many changes in any 24 hours.
    pub changes_per_day: u32,
}

impl Policy {
    /// At least the floor, rounded up to the step: never below `v`, so a value set at a
    /// sample's level never puts that sample above it.
    pub fn round(&self, v: f64) -> f64 {
        let v = if v.is_finite() { v.max(self.floor) } else { self.floor };
        if self.step > 0.0 { ((v / self.step - 1e-9).ceil() * self.step).max(v) } else { v }
    }

    /// A value holds for a day over the budget; it is lowered no sooner, but raised as soon
    /// as the budget allows: that is when the risk target would otherwise be missed.
    pub fn hold_ms(&self) -> i64 {
        hold_ms(self.changes_per_day)
    }

    /// The values in force from each decision time in `at` for the wanted values, and how
    /// many times they changed (setting the first is not a change). `usage[i]` is what
    /// followed decision `i`: where it went above the value in force, the next decision may
    /// raise it by any amount (min_change keeps small gains from causing changes, not the
    /// risk from being answered); the budget still holds.
    pub fn apply(&self, at: &[i64], wanted: &[f64], usage: StepsView) -> (Vec<f64>, usize) {
        let mut out: Vec<f64> = Vec::with_capacity(wanted.len());
        let mut held: Option<Held> = None;
        for (i, (&t, &w)) in at.iter().zip(wanted).enumerate() {
            let breached =
                held.as_ref().is_some_and(|h| usage.get(i - 1).is_some_and(|u| u.iter().any(|&u| u > h.value)));
            let next = self.decide(held, t, w, breached);
            out.push(next.value);
            held = Some(next);
        }
        (out, held.map_or(0, |h| h.changes))
    }

    /// One decision at `t`: what is held after it, given the value wanted and whether usage
    /// went above the value in force since the last decision.
    pub fn decide(&self, held: Option<Held>, t: i64, wanted: f64, breached: bool) -> Held {
        let w = self.round(wanted);
        let Some(mut h) = held else { return Held { value: w, since: t, last_day: Vec::new(), changes: 0 } };
        h.last_day.retain(|&x| x > t - DAY_MS);
        let worth = (w - h.value).abs() > self.min_change * h.value || (breached && w > h.value);
        let may = h.last_day.len() < self.changes_per_day as usize && (w > h.value || t - h.since >= self.hold_ms());
        if worth && may {
            h.last_day.push(t);
            h.changes += 1;
            (h.value, h.since) = (w, t);
        }
        h
    }
}

/// A line's value in force between decisions, and the change budget it has used.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub value: f64,
    /// When it was set.
    pub since: i64,
    /// When it changed within the last 24 hours: the budget used.
    pub last_day: Vec<i64>,
    /// Changes since the first value was set.
    pub changes: usize,
}
