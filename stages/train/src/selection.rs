//! Which windows training holds: the seeded subsample it trains on and the validation and
//! test windows it scores. Only their rows are read, so memory stays bounded as data grows.

use applearner_contracts::{Candidate, WindowCounts};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// A seeded random `limit` of `count` indices in increasing order; `None` (all of them)
/// where `limit` is 0 or not below `count`.
pub fn subsample(count: usize, limit: usize, seed: u64) -> Option<Vec<usize>> {
    if limit == 0 || limit >= count {
        return None;
    }
    // Shuffled as u32: the same order as usize (the shuffle draws by position, not value)
    // in half the memory, which at scale is more than training holds. Past u32, where no
    // shuffle of every index fits in memory, the indices are drawn directly.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen: Vec<usize> = match u32::try_from(count) {
        Ok(n) => {
            let mut all: Vec<u32> = (0..n).collect();
            all.shuffle(&mut rng);
            all[..limit].iter().map(|&i| i as usize).collect()
        }
        Err(_) => rand::seq::index::sample(&mut rng, count, limit).into_vec(),
    };
    chosen.sort_unstable();
    Some(chosen)
}

/// The validation and test windows training scores: those whose origin is on the
/// backtest's clock grid of `horizon` steps (non-overlapping, at the same times for every
/// series), on a coarser grid where a part has more than about `limit` of those (0: no
/// limit), so what training holds stays bounded as the data grows.
pub struct Scored {
    step_ms: i64,
    stride: usize,
    /// Per part, in [`Part::ALL`]'s order: the grid's spacing (ms).
    grid_ms: [i64; 3],
}

impl Scored {
    pub fn of(counts: &WindowCounts, step_ms: i64, limit: usize) -> Scored {
        // About one window in `horizon / stride` has its origin on the grid.
        let on_grid = |n: usize| (n * counts.stride).div_ceil(counts.horizon.max(1));
        let thin = |n: usize| if limit == 0 { 1 } else { on_grid(n).div_ceil(limit).max(1) };
        let grid_ms = counts.per_part.map(|n| step_ms * (counts.horizon * thin(n)) as i64);
        Scored { step_ms, stride: counts.stride, grid_ms }
    }

    pub fn keeps(&self, c: &Candidate) -> bool {
        let origin = c.run_origin_ms + (c.in_run * self.stride) as i64 * self.step_ms;
        origin.rem_euclid(self.grid_ms[c.part as usize]) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use applearner_contracts::Part;

    #[test]
    fn the_subsample_is_seeded_sorted_and_distinct() {
        let a = subsample(1000, 10, 7).unwrap();
        assert_eq!(a, subsample(1000, 10, 7).unwrap());
        assert_ne!(a, subsample(1000, 10, 8).unwrap());
        assert!(a.len() == 10 && a.windows(2).all(|w| w[0] < w[1]) && a[9] < 1000, "{a:?}");
        assert_eq!((subsample(5, 0, 7), subsample(5, 5, 7)), (None, None));
    }

    #[test]
    fn scored_windows_sit_on_the_clock_grid_and_a_coarser_one_past_the_limit() {
        // 5-minute steps, windows a step apart forecasting an hour: origins on whole hours.
        let counts = WindowCounts { per_part: [0, 24, 2400], horizon: 12, stride: 1 };
        let scored = Scored::of(&counts, 300_000, 100);
        // Each run's first origin is 10 minutes before an hour.
        let c = |part, in_run| Candidate { part, index: 0, in_run, run_origin_ms: 3_000_000 };
        assert!(!scored.keeps(&c(Part::Validation, 0)));
        assert!(scored.keeps(&c(Part::Validation, 2)) && scored.keeps(&c(Part::Validation, 14)));
        // 2,400 test windows, 200 of them on the hour, about 100 allowed: every second hour.
        let kept: Vec<usize> = (0..2400).filter(|&w| scored.keeps(&c(Part::Test, w))).collect();
        assert_eq!((kept.len(), kept[0], kept[1]), (100, 14, 38));
    }
}
