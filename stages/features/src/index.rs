//! The windows table: where every window starts, per series, segment and part.

use std::sync::Arc;

use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{
    RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use applearner_pipeline::columns::as_dictionaries;

use applearner_contracts::tables::windows as window_table;

use super::*;
use crate::FeaturesError;

/// Per part: windows, series without any, and windows dropped for a history shorter than
/// the lookback (and warm-up) at the start of a segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub per_part: [u64; 3],
    pub without: [u64; 3],
    pub short_history: [u64; 3],
}

/// The index of every window, built a range of series at a time: inputs
/// `[start, start + lookback)`, targets the next `horizon` rows, all in one segment, targets
/// all in one part, no input before the features' warm-up.
pub(super) struct WindowIndex<'a> {
    spec: &'a WindowSpec,
    warmup: u32,
    per_part: [u64; 3],
    longest_part: [u64; 3],
    series_with: [u64; 3],
    short_history: [u64; 3],
    longest_segment: (usize, String),
}

/// The windows table's columns being built.
struct WindowColumns {
    /// Per run of windows, its part's index in [`PARTS`] and its series' in the rows'.
    part: Vec<u8>,
    key: Vec<u32>,
    segment: Vec<u32>,
    start: Vec<u64>,
    origin: Vec<i64>,
    count: Vec<u32>,
}

/// The features rows the index reads: the series in row order (key and rows), then per
/// row its segment, part and time.
pub(super) struct Rows<'a> {
    pub(super) series: &'a [(String, usize)],
    pub(super) segments: &'a [u32],
    pub(super) parts: &'a [u8],
    pub(super) times: &'a [i64],
}

impl<'a> WindowIndex<'a> {
    pub(super) fn new(spec: &'a WindowSpec, warmup: u32) -> Self {
        WindowIndex {
            spec,
            warmup,
            per_part: [0; 3],
            longest_part: [0; 3],
            series_with: [0; 3],
            short_history: [0; 3],
            longest_segment: (0, String::new()),
        }
    }

    /// The windows of the range of series in `rows`, whose first row is row `offset` of the
    /// whole features table.
    pub(super) fn add(&mut self, rows: &Rows, offset: u64) -> Result<RecordBatch, BoxError> {
        let mut out =
            WindowColumns { part: vec![], key: vec![], segment: vec![], start: vec![], origin: vec![], count: vec![] };
        let mut begin = 0;
        for (s, (key, len)) in rows.series.iter().enumerate() {
            let (end_of_series, mut with) = (begin + len, [false; 3]);
            while begin < end_of_series {
                let segment = rows.segments[begin];
                let end = (begin..end_of_series).find(|&i| rows.segments[i] != segment).unwrap_or(end_of_series);
                if end - begin > self.longest_segment.0 {
                    self.longest_segment = (end - begin, key.clone());
                }
                self.segment(rows, s as u32, begin..end, offset, &mut with, &mut out);
                begin = end;
            }
            for (p, with) in with.iter().enumerate() {
                self.series_with[p] += u64::from(*with);
            }
        }
        let keys = StringArray::from_iter_values(rows.series.iter().map(|(key, _)| key));
        Ok(RecordBatch::try_new(
            as_dictionaries(&windows_schema(self.spec, self.warmup), &[window_table::SPLIT, window_table::KEY]),
            vec![
                part_names(&out.part),
                strings(out.key, keys),
                Arc::new(UInt32Array::from(out.segment)),
                Arc::new(UInt64Array::from(out.start)),
                Arc::new(TimestampMillisecondArray::from(out.origin).with_timezone("UTC")),
                Arc::new(UInt32Array::from(out.count)),
            ],
        )?)
    }

    /// The windows of the segment at `rows` (of the rows' series `series`); `with` marks the
    /// parts it has windows in.
    fn segment(
        &mut self,
        rows: &Rows,
        series: u32,
        segment: std::ops::Range<usize>,
        offset: u64,
        with: &mut [bool; 3],
        out: &mut WindowColumns,
    ) {
        let (lookback, horizon, stride) =
            (self.spec.lookback as usize, self.spec.horizon as usize, self.spec.stride as usize);
        let (begin, end) = (segment.start, segment.end);
        // Each part's windows are strided from its first possible target.
        let mut run_start = begin;
        for r in begin..=end {
            if r < end && rows.parts[r] == rows.parts[run_start] {
                continue;
            }
            let p = rows.parts[run_start] as usize;
            self.longest_part[p] = self.longest_part[p].max((r - run_start) as u64);
            // Targets whose window would reach before the segment's start (or into the
            // warm-up) are dropped, not padded: counted.
            let first = begin + self.warmup as usize + lookback;
            self.short_history[p] +=
                (run_start..first.min(r.saturating_sub(horizon - 1))).step_by(stride).count() as u64;
            let target = run_start.max(first);
            // One row for the part's windows: targets from `target`, `stride` apart.
            let count = if target + horizon <= r { (r - horizon - target) / stride + 1 } else { 0 };
            if count > 0 {
                with[p] = true;
                self.per_part[p] += count as u64;
                out.part.push(p as u8);
                out.key.push(series);
                out.segment.push(rows.segments[begin]);
                out.start.push(offset + (target - lookback) as u64);
                out.origin.push(rows.times[target - 1]);
                out.count.push(count as u32);
            }
            run_start = r;
        }
    }

    /// The counts over every range of `series` series; no part without windows and some
    /// segment long enough for one, or the error that says what to change.
    pub(super) fn finish(self, series: u64) -> Result<Counts, BoxError> {
        let spec = self.spec;
        let need = spec.lookback + spec.horizon;
        if self.longest_segment.0 < (need + self.warmup) as usize {
            let (n, key) = &self.longest_segment;
            return Err(too_short(spec, self.warmup, (*n, key)).into());
        }
        if let Some(p) = (0..3).find(|p| self.per_part[*p] == 0) {
            let warmup = match self.warmup {
                0 => String::new(),
                w => format!(" + {w} warm-up steps for lags/rolling"),
            };
            return Err(FeaturesError::EmptyPart {
                part: PARTS[p],
                series,
                need: need + self.warmup,
                lookback: spec.lookback,
                horizon: spec.horizon,
                warmup,
                longest: self.longest_part[p],
            }
            .into());
        }
        let without = [0, 1, 2].map(|p| series - self.series_with[p]);
        Ok(Counts { per_part: self.per_part, without, short_history: self.short_history })
    }
}

/// No segment holds one window: the error names the longest segment and the settings to
/// lower, by how much of a window each takes, largest first.
fn too_short(spec: &WindowSpec, warmup: u32, (longest, key): (usize, &str)) -> FeaturesError {
    let mut settings = [
        (spec.lookback, "windows.lookback"),
        (spec.horizon, "windows.horizon"),
        (warmup, "season_lags/lags/rolling (warm-up)"),
    ];
    settings.sort_by_key(|s| std::cmp::Reverse(s.0));
    FeaturesError::SegmentsTooShort {
        need: spec.lookback + spec.horizon + warmup,
        lookback: spec.lookback,
        horizon: spec.horizon,
        warmup,
        longest: longest as u64,
        key: key.to_string(),
        settings: settings
            .iter()
            .filter(|s| s.0 > 0)
            .map(|s| format!("`{}` ({})", s.1, s.0))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
