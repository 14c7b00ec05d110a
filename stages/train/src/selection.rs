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
    // Shuffled as u32 where they fit: the same order (the shuffle draws by position, not
    // value) in half the memory, which at scale is more than training holds.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen: Vec<usize> = match u32::try_from(count) {
        Ok(n) => {
            let mut all: Vec<u32> = (0..n).collect();
            all.shuffle(&mut rng);
            all[..limit].iter().map(|&i| i as usize).collect()
        }
        Err(_) => {
            let mut all: Vec<usize> = (0..count).collect();
            all.shuffle(&mut rng);
            all.truncate(limit);
            all
        }
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
        let thin = |n: usize| if limit == 0 { 1 } else { n.div_ceil(counts.apart()).div_ceil(limit).max(1) };
        let grid_ms = counts.per_part.map(|n| step_ms * (counts.horizon * thin(n)) as i64);
        Scored { step_ms, stride: counts.stride, grid_ms }
    }

    pub fn keeps(&self, c: &Candidate) -> bool {
        let origin = c.run_origin_ms + (c.in_run * self.stride) as i64 * self.step_ms;
        origin.rem_euclid(self.grid_ms[c.part as usize]) == 0
    }
}
