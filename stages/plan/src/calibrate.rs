//! Calibration on the validation part: the multiplier on a rule's value that keeps a line's
//! time above it within the stated risk, per workload (shrunk toward the fleet's where a
//! workload has few points), and the recommenders' knobs tuned to the same risk.

use super::*;

/// Multipliers are searched in this range (geometrically).
pub const K_RANGE: (f64, f64) = (0.05, 50.0);
/// Bisection steps: the factor to within 7e-6 of itself, finer than the rounding of any
/// value it scales (1 MiB in 40 GiB is 2.4e-5); 40 steps cost the plan a quarter more time
/// and moved no summary figure.
const ITERATIONS: usize = 20;

/// How many of `points` may lie above the line at `risk` so that the rate on new data is at
/// most `risk` (the split-conformal rank: n − ⌈(n + 1)(1 − risk)⌉).
pub fn allowed(points: usize, risk: f64) -> usize {
    let rank = ((points as f64 + 1.0) * (1.0 - risk) - 1e-9).ceil() as usize;
    points.saturating_sub(rank)
}

/// The smallest multiplier in [`K_RANGE`] with at most `allowed` steps above the line:
/// `Ok(k)`, or `Err(above)` with the steps above at the largest when even it misses.
pub fn smallest(under: impl Fn(f64) -> usize, allowed: usize) -> Result<f64, usize> {
    let (mut lo, mut hi) = (K_RANGE.0.ln(), K_RANGE.1.ln());
    let at_hi = under(hi.exp());
    if at_hi > allowed {
        return Err(at_hi);
    }
    if under(lo.exp()) <= allowed {
        return Ok(lo.exp());
    }
    for _ in 0..ITERATIONS {
        let mid = 0.5 * (lo + hi);
        if under(mid.exp()) <= allowed { hi = mid } else { lo = mid }
    }
    Ok(hi.exp())
}

/// One factor on top of each workload's own (`k`): the smallest that meets `risk` over all
/// their points together (the largest of [`K_RANGE`] when none does).
pub fn scale(cases: &[Case], policy: &Policy, risk: f64, k: &dyn Fn(&str) -> f64) -> f64 {
    let points = cases.iter().map(|c| c.timeline.points()).sum();
    let under = |s: f64| cases.iter().map(|c| c.under(policy, k(c.key) * s)).sum();
    smallest(under, allowed(points, risk)).unwrap_or(K_RANGE.1)
}

/// One multiplier for every workload: the smallest meeting `risk` over all their points.
pub fn fleet(cases: &[Case], policy: &Policy, risk: f64) -> f64 {
    scale(cases, policy, risk, &|_| 1.0)
}

/// A line's calibration: per workload its multiplier, and what could not be calibrated.
#[derive(Debug, Clone, Default)]
pub struct Calibrated {
    pub k: BTreeMap<String, f64>,
    /// For workloads without validation data.
    pub fleet: f64,
    /// Workloads whose risk on validation stays above the target even at the largest
    /// multiplier: (key, its risk there in %).
    pub misses: Vec<(String, f64)>,
}

impl Calibrated {
    pub fn of(&self, key: &str) -> f64 {
        self.k.get(key).copied().unwrap_or(self.fleet)
    }
}

/// Per workload: its own multiplier for `risk`, shrunk toward the fleet's by how many points
/// it has (a workload needs about 10 / risk points to see 10 steps above the line), then one
/// correction for all so that the fleet's validation risk meets the target. With `own`
/// false every workload gets the fleet's multiplier.
pub fn per_workload(cases: &[Case], policy: &Policy, risk: f64, own: bool) -> Calibrated {
    let fleet_k = fleet(cases, policy, risk);
    if !own {
        let k = cases.iter().map(|c| (c.key.to_string(), fleet_k)).collect();
        return Calibrated { k, fleet: fleet_k, misses: Vec::new() };
    }
    let mut misses = Vec::new();
    let prior = 10.0 / risk;
    let shrunk: BTreeMap<String, f64> = cases
        .iter()
        .map(|c| {
            let n = c.timeline.points();
            // Unreachable: a miss where even the largest factor leaves more than the risk
            // above the line (too few points for the conformal rank is not one); the fleet's
            // factor stands in.
            let own = smallest(|k| c.under(policy, k), allowed(n, risk)).unwrap_or_else(|above| {
                let share = above as f64 / n.max(1) as f64;
                if share > risk {
                    misses.push((c.key.to_string(), 100.0 * share));
                }
                fleet_k
            });
            let weight = n as f64 / (n as f64 + prior);
            (c.key.to_string(), (weight * own.ln() + (1.0 - weight) * fleet_k.ln()).exp())
        })
        .collect();
    // Shrinking moves the fleet's risk a little: one correction brings it back.
    let correction = scale(cases, policy, risk, &|key| shrunk[key]);
    let k = shrunk.into_iter().map(|(key, k)| (key, k * correction)).collect();
    Calibrated { k, fleet: fleet_k, misses }
}
