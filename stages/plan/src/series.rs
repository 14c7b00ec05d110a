//! One series of usage on its grid, as the backtest's baselines and the plan read it.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

/// One series on its grid, every segment in time order: gaps between segments are kept
/// as gaps, so "a season earlier" is looked up by time (a binary search), never by
/// position.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Shared by a series' CPU and memory where both have every point.
    pub times: Arc<Vec<i64>>,
    pub values: Vec<f64>,
    /// Per position, whether clean.resample filled the value in: history for forecasts,
    /// never an actual. Empty when none was.
    filled: Vec<bool>,
}

impl Series {
    /// `points` in any order; a repeated time keeps the last value.
    pub fn new(points: Vec<(i64, f64)>) -> Series {
        Series::with_filled(points, &HashSet::new())
    }

    /// As [`Series::new`], with the times that were filled in rather than observed.
    pub fn with_filled(mut points: Vec<(i64, f64)>, filled: &HashSet<i64>) -> Series {
        points.sort_by_key(|p| p.0);
        points.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 = b.1;
            }
            same
        });
        let filled = match filled.is_empty() {
            true => Vec::new(),
            false => points.iter().map(|p| filled.contains(&p.0)).collect(),
        };
        let (times, values) = points.into_iter().unzip();
        Series { times: Arc::new(times), values, filled }
    }

    /// A series from its points as they are: `times` strictly ascending, a value (finite)
    /// and whether it was filled in at each.
    pub fn sorted(times: Arc<Vec<i64>>, values: Vec<f64>, filled: Vec<bool>) -> Series {
        let filled = if filled.contains(&true) { filled } else { Vec::new() };
        Series { times, values, filled }
    }

    /// The observed value at `time`: `NaN` where it was filled in, `None` off the grid.
    pub fn actual(&self, time: i64) -> Option<f64> {
        let i = self.position(time)?;
        Some(if self.filled.get(i) == Some(&true) { f64::NAN } else { self.values[i] })
    }

    /// The positions of the segment holding position `i`: the run of points `step` apart.
    pub fn segment(&self, i: usize, step: i64) -> Range<usize> {
        let t = &self.times;
        let mut start = i;
        while start > 0 && t[start] - t[start - 1] == step {
            start -= 1;
        }
        let mut end = i + 1;
        while end < t.len() && t[end] - t[end - 1] == step {
            end += 1;
        }
        start..end
    }

    pub fn position(&self, time: i64) -> Option<usize> {
        self.times.binary_search(&time).ok()
    }

    pub fn at(&self, time: i64) -> Option<f64> {
        self.position(time).map(|i| self.values[i])
    }
}
