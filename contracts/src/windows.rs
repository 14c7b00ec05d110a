//! Reads the `features` and `windows` tables back as training batches.
//!
//! Feature values are held once, row-major, read from the features table a batch at a time
//! (the decoded table is never held whole), and only for the rows some window of the parts
//! asked for reads; a batch copies the rows of the windows it is asked for, so memory grows
//! with the points, not with lookback × windows. A window names
//! its series by a shared key, not a copy of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Int64Type, UInt64Type};

use crate::tables::{features as feature_table, windows as window_table};
use crate::{ContractError, Part};

/// One window: its series and where it starts in the features table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub key: Arc<str>,
    pub start: usize,
    /// Time of the last input point (ms), where the forecast starts from.
    pub origin_ms: i64,
}

/// A window of the `windows` table, as a reader is asked whether to hold it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub part: Part,
    /// Its place among its part's windows in the table.
    pub index: usize,
    /// Its place in its run, and the origin of the run's first window (ms): the run's
    /// windows are `stride` steps apart.
    pub in_run: usize,
    pub run_origin_ms: i64,
}

/// Windows of each part over the feature values of the rows they read.
pub struct WindowSet {
    /// The rows held (those some window reads), row-major.
    inputs: Vec<f32>,
    targets: Vec<f32>,
    /// Each held row's time (ms).
    times: Vec<i64>,
    /// The runs of consecutive table rows held: (first table row, its index among the held
    /// rows), ascending.
    runs: Vec<(usize, usize)>,
    input_names: Vec<String>,
    target_names: Vec<String>,
    pub lookback: usize,
    pub horizon: usize,
    parts: BTreeMap<Part, Vec<Window>>,
}

impl WindowSet {
    /// [`WindowSet::new`] over a features table already in memory.
    pub fn from_batches(
        features: &[RecordBatch],
        windows: &[RecordBatch],
        inputs: &[String],
        targets: &[String],
    ) -> Result<WindowSet, ContractError> {
        let batches = |t: &[RecordBatch]| t.iter().cloned().map(Ok::<_, std::convert::Infallible>).collect::<Vec<_>>();
        WindowSet::new(batches(features), batches(windows), inputs, targets)
    }

    /// `inputs`: the feature columns a model sees (empty: every float feature);
    /// `targets`: the columns it forecasts. `features` and then `windows` are read once, in
    /// order, a batch at a time.
    pub fn new<E: std::fmt::Display>(
        features: impl IntoIterator<Item = Result<RecordBatch, E>>,
        windows: impl IntoIterator<Item = Result<RecordBatch, E>>,
        inputs: &[String],
        targets: &[String],
    ) -> Result<WindowSet, ContractError> {
        WindowSet::of_parts(features, windows, inputs, targets, &Part::ALL)
    }

    /// [`WindowSet::new`] holding only the windows of `parts` (the backtest needs no
    /// training window: most of them).
    pub fn of_parts<E: std::fmt::Display>(
        features: impl IntoIterator<Item = Result<RecordBatch, E>>,
        windows: impl IntoIterator<Item = Result<RecordBatch, E>>,
        inputs: &[String],
        targets: &[String],
        parts: &[Part],
    ) -> Result<WindowSet, ContractError> {
        WindowSet::of_windows(features, windows, inputs, targets, &|c| parts.contains(&c.part))
    }

    /// [`WindowSet::new`] holding only the windows `keep` accepts (training's seeded
    /// subsample, and the windows it scores: the rows no kept window reads are never held).
    pub fn of_windows<E: std::fmt::Display>(
        features: impl IntoIterator<Item = Result<RecordBatch, E>>,
        windows: impl IntoIterator<Item = Result<RecordBatch, E>>,
        inputs: &[String],
        targets: &[String],
        keep: &dyn Fn(&Candidate) -> bool,
    ) -> Result<WindowSet, ContractError> {
        let mut features = features.into_iter().peekable();
        let schema = match features.peek() {
            Some(Ok(b)) => Some(b.schema()),
            _ => None,
        };
        let available: Vec<String> = schema
            .as_ref()
            .map(|s| {
                s.fields().iter().filter(|f| f.data_type() == &DataType::Float32).map(|f| f.name().clone()).collect()
            })
            .unwrap_or_default();
        let input_names = if inputs.is_empty() { available.clone() } else { inputs.to_vec() };
        for c in input_names.iter().chain(targets) {
            if !available.contains(c) {
                return Err(ContractError::UnknownColumn { column: c.clone(), available: available.join(", ") });
            }
        }
        let mut windows = windows.into_iter().peekable();
        let first = match windows.peek() {
            Some(Ok(b)) => Some(b.schema()),
            _ => None,
        };
        let meta = |key: &'static str| -> Result<usize, ContractError> {
            first
                .as_ref()
                .and_then(|s| s.metadata().get(key).and_then(|v| v.parse().ok()))
                .ok_or(ContractError::Metadata(key))
        };
        let (lookback, horizon) = (meta(window_table::LOOKBACK_KEY)?, meta(window_table::HORIZON_KEY)?);
        let stride = meta(window_table::STRIDE_KEY)?;
        let mut set = WindowSet {
            inputs: Vec::new(),
            targets: Vec::new(),
            times: Vec::new(),
            runs: Vec::new(),
            input_names,
            target_names: targets.to_vec(),
            lookback,
            horizon,
            parts: Part::ALL.iter().map(|p| (*p, Vec::new())).collect(),
        };
        // The windows first: they say which rows of the features table to hold.
        let starts = set.read_windows(windows, stride, keep)?;
        let rows = set.hold_rows(features, &starts)?;
        set.check_windows(rows)?;
        set.set_origins();
        Ok(set)
    }

    /// Adds the windows `keep` accepts from the `windows` table (each run's windows, `stride`
    /// rows apart); returns, per table row, whether a window starts there. Their origins are
    /// set once the rows are held ([`WindowSet::set_origins`]).
    fn read_windows<E: std::fmt::Display>(
        &mut self,
        windows: impl Iterator<Item = Result<RecordBatch, E>>,
        stride: usize,
        keep: &dyn Fn(&Candidate) -> bool,
    ) -> Result<Vec<bool>, ContractError> {
        let mut starts = Vec::new();
        let mut seen: BTreeMap<Part, usize> = BTreeMap::new();
        let mut keys: BTreeMap<String, Arc<str>> = BTreeMap::new();
        for b in windows {
            let b = b.map_err(|e| ContractError::Read(e.to_string()))?;
            let column = |name, to: &DataType| crate::cast_column(&b, "windows", name, to);
            let (split, key) =
                (column(window_table::SPLIT, &DataType::Utf8)?, column(window_table::KEY, &DataType::Utf8)?);
            let (split, key) = (split.as_string::<i32>(), key.as_string::<i32>());
            let (start, count) =
                (column(window_table::START, &DataType::UInt64)?, column(window_table::WINDOWS, &DataType::UInt64)?);
            let (start, count) = (start.as_primitive::<UInt64Type>(), count.as_primitive::<UInt64Type>());
            let origin = column(window_table::ORIGIN, &DataType::Int64)?;
            let origin = origin.as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let part = Part::parse(split.value(i))
                    .ok_or_else(|| ContractError::UnknownPart(split.value(i).to_string()))?;
                let shared = match keys.get(key.value(i)) {
                    Some(k) => k.clone(),
                    None => keys.entry(key.value(i).to_string()).or_insert_with(|| key.value(i).into()).clone(),
                };
                let n = seen.entry(part).or_default();
                for w in 0..count.value(i) as usize {
                    *n += 1;
                    let candidate = Candidate { part, index: *n - 1, in_run: w, run_origin_ms: origin.value(i) };
                    if !keep(&candidate) {
                        continue;
                    }
                    let s = start.value(i) as usize + w * stride;
                    if s >= starts.len() {
                        starts.resize(s + 1, false);
                    }
                    starts[s] = true;
                    let window = Window { key: shared.clone(), start: s, origin_ms: i64::MIN };
                    self.parts.get_mut(&part).expect("every part has a list").push(window);
                }
            }
        }
        Ok(starts)
    }

    /// Each window's origin: the time of its last input row.
    fn set_origins(&mut self) {
        let mut parts = std::mem::take(&mut self.parts);
        for w in parts.values_mut().flatten() {
            w.origin_ms = self.times[self.held(w.start + self.lookback - 1)];
        }
        self.parts = parts;
    }

    /// Reads the features table a batch at a time, holding the rows that a window starting
    /// at a row of `starts` reads; returns the table's row count.
    fn hold_rows<E: std::fmt::Display>(
        &mut self,
        features: impl Iterator<Item = Result<RecordBatch, E>>,
        starts: &[bool],
    ) -> Result<usize, ContractError> {
        let span = self.lookback + self.horizon;
        let (mut row, mut reach) = (0, 0);
        for batch in features {
            let b = batch.map_err(|e| ContractError::Read(e.to_string()))?;
            // The first row of the batch's current run of rows some window reads.
            let mut from = None;
            for j in 0..b.num_rows() {
                if starts.get(row + j) == Some(&true) {
                    reach = reach.max(row + j + span);
                }
                match (row + j < reach, from) {
                    (true, None) => from = Some(j),
                    (false, Some(i)) => {
                        self.hold(&b.slice(i, j - i), row + i);
                        from = None;
                    }
                    _ => {}
                }
            }
            if let Some(i) = from {
                self.hold(&b.slice(i, b.num_rows() - i), row + i);
            }
            row += b.num_rows();
        }
        Ok(row)
    }

    /// Appends the rows of `b`, which start at row `first` of the features table.
    fn hold(&mut self, b: &RecordBatch, first: usize) {
        match self.runs.last() {
            Some(&(r, held)) if r + (self.times.len() - held) == first => {}
            _ => self.runs.push((first, self.times.len())),
        }
        gather(b, &self.input_names, &mut self.inputs);
        gather(b, &self.target_names, &mut self.targets);
        let ts = b.column_by_name(feature_table::TIMESTAMP).and_then(|c| cast(c, &DataType::Int64).ok());
        match ts {
            Some(ts) => self.times.extend(ts.as_primitive::<Int64Type>().values().iter()),
            None => self.times.extend(std::iter::repeat_n(i64::MIN, b.num_rows())),
        }
    }

    /// Where table row `row` is among the held rows (a row some window reads).
    fn held(&self, row: usize) -> usize {
        let run = self.runs[self.runs.partition_point(|r| r.0 <= row) - 1];
        run.1 + row - run.0
    }

    /// Checks each window: inside the features table (`rows` long) and touching no missing
    /// value.
    fn check_windows(&self, rows: usize) -> Result<(), ContractError> {
        let missing = Missing::of(self);
        for w in self.parts.values().flatten() {
            if w.start + self.lookback + self.horizon > rows {
                return Err(ContractError::OutOfRange { row: w.start as u64, rows });
            }
            if let Some((r, column)) = missing.within(self, self.held(w.start)) {
                let key = w.key.to_string();
                return Err(ContractError::NotFinite { key, column, time: row_time(&self.times, r) });
            }
        }
        Ok(())
    }

    /// The grid step: the shortest time between the first two rows of a window (`None`
    /// without windows).
    pub fn step_ms(&self) -> Option<i64> {
        let steps =
            self.parts.values().flatten().map(|w| self.held(w.start)).map(|r| self.times[r + 1] - self.times[r]);
        steps.filter(|d| *d > 0).min()
    }

    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }

    pub fn target_names(&self) -> &[String] {
        &self.target_names
    }

    /// The windows of a part.
    pub fn part(&self, part: Part) -> &[Window] {
        self.parts.get(&part).map_or(&[], Vec::as_slice)
    }

    /// Per series, the windows of `part` whose origin is on the clock's grid of `stride`
    /// steps (multiples since the Unix epoch: whole hours for 12 × 5 minutes); the latest
    /// `max_origins` of them (0: all). Origins then sit at the same times whatever data a run
    /// holds and wherever a gap ends, so an hourly refresh's forecast is the one a later
    /// replay makes at that hour.
    pub fn every(&self, part: Part, stride: usize, max_origins: usize) -> Vec<usize> {
        let windows = self.part(part);
        let grid = self.step_ms().unwrap_or(1) * stride.max(1) as i64;
        let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, w) in windows.iter().enumerate().filter(|(_, w)| w.origin_ms.rem_euclid(grid) == 0) {
            by_key.entry(&w.key).or_default().push(i);
        }
        let mut chosen = Vec::new();
        for list in by_key.values_mut() {
            list.sort_by_key(|&i| windows[i].origin_ms);
            if max_origins > 0 && list.len() > max_origins {
                list.drain(..list.len() - max_origins);
            }
            chosen.extend_from_slice(list);
        }
        chosen
    }

    /// The last observed value of each target in the windows `which` of `part` (at their
    /// origin), `[batch, targets]`: what the last-value forecast repeats.
    pub fn last_values(&self, part: Part, which: &[usize], out: &mut Vec<f32>) {
        let windows = self.part(part);
        let nt = self.target_names.len();
        out.clear();
        for &w in which {
            let origin = self.held(windows[w].start) + self.lookback - 1;
            out.extend_from_slice(&self.targets[origin * nt..(origin + 1) * nt]);
        }
    }

    /// Copies the windows `which` of `part` into `x` (`[batch, lookback, inputs]`) and `y`
    /// (`[batch, horizon, targets]`), row-major, replacing their contents.
    pub fn batch(&self, part: Part, which: &[usize], x: &mut Vec<f32>, y: &mut Vec<f32>) {
        let windows = self.part(part);
        let (ni, nt) = (self.input_names.len(), self.target_names.len());
        x.clear();
        y.clear();
        for &w in which {
            let s = self.held(windows[w].start);
            x.extend_from_slice(&self.inputs[s * ni..(s + self.lookback) * ni]);
            let t = s + self.lookback;
            y.extend_from_slice(&self.targets[t * nt..(t + self.horizon) * nt]);
        }
    }
}

/// The grid step of a features table (ms): the shortest time between two consecutive rows
/// of one series' segment, from the first batch that has two; `None` where none has.
pub fn grid_step_ms<E: std::fmt::Display>(
    features: impl IntoIterator<Item = Result<RecordBatch, E>>,
) -> Result<Option<i64>, ContractError> {
    for b in features {
        let b = b.map_err(|e| ContractError::Read(e.to_string()))?;
        let column = |name, to: &DataType| crate::cast_column(&b, "features", name, to);
        let (key, segment) =
            (column(feature_table::KEY, &DataType::Utf8)?, column(feature_table::SEGMENT, &DataType::Int64)?);
        let time = column(feature_table::TIMESTAMP, &DataType::Int64)?;
        let (key, segment, time) =
            (key.as_string::<i32>(), segment.as_primitive::<Int64Type>(), time.as_primitive::<Int64Type>());
        let same = |r: usize| key.value(r) == key.value(r - 1) && segment.value(r) == segment.value(r - 1);
        let steps = (1..b.num_rows()).filter(|&r| same(r)).map(|r| time.value(r) - time.value(r - 1));
        if let Some(step) = steps.filter(|d| *d > 0).min() {
            return Ok(Some(step));
        }
    }
    Ok(None)
}

/// The `windows` table at a glance, read a batch at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCounts {
    /// How many windows each part has, in [`Part::ALL`]'s order.
    pub per_part: [usize; 3],
    /// The steps a window forecasts, and the rows between the starts of a run's windows.
    pub horizon: usize,
    pub stride: usize,
}

/// Counts the windows of each part in the `windows` table.
pub fn windows_per_part<E: std::fmt::Display>(
    windows: impl IntoIterator<Item = Result<RecordBatch, E>>,
) -> Result<WindowCounts, ContractError> {
    let mut counts = WindowCounts { per_part: [0; 3], horizon: 1, stride: 1 };
    for b in windows {
        let b = b.map_err(|e| ContractError::Read(e.to_string()))?;
        let meta = |key: &'static str| b.schema().metadata().get(key).and_then(|v| v.parse().ok());
        counts.horizon = meta(window_table::HORIZON_KEY).ok_or(ContractError::Metadata(window_table::HORIZON_KEY))?;
        counts.stride = meta(window_table::STRIDE_KEY).ok_or(ContractError::Metadata(window_table::STRIDE_KEY))?;
        let column = |name, to: &DataType| crate::cast_column(&b, "windows", name, to);
        let (split, windows) =
            (column(window_table::SPLIT, &DataType::Utf8)?, column(window_table::WINDOWS, &DataType::UInt64)?);
        let windows = windows.as_primitive::<UInt64Type>().values();
        for (name, n) in split.as_string::<i32>().iter().map(Option::unwrap_or_default).zip(windows) {
            let part = Part::parse(name).ok_or_else(|| ContractError::UnknownPart(name.to_string()))?;
            counts.per_part[Part::ALL.iter().position(|p| *p == part).expect("every part is in ALL")] += *n as usize;
        }
    }
    Ok(counts)
}

/// Rows with a missing value, as prefix counts: whether a window touches one is then one
/// subtraction. Inputs are checked over the lookback, targets over the horizon.
struct Missing {
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

impl Missing {
    fn of(set: &WindowSet) -> Missing {
        let rows = set.times.len();
        let prefix = |values: &[f32], width: usize| {
            let mut before = vec![0u32; rows + 1];
            for r in 0..rows {
                let bad = values[r * width..(r + 1) * width].iter().any(|v| !v.is_finite());
                before[r + 1] = before[r] + bad as u32;
            }
            before
        };
        Missing {
            inputs: prefix(&set.inputs, set.input_names.len()),
            targets: prefix(&set.targets, set.target_names.len()),
        }
    }

    /// The first row and column with a missing value in the window starting at row `s`.
    fn within(&self, set: &WindowSet, s: usize) -> Option<(usize, String)> {
        let (t0, t1) = (s + set.lookback, s + set.lookback + set.horizon);
        let first =
            |before: &[u32], rows: std::ops::Range<usize>| rows.into_iter().find(|&r| before[r + 1] != before[r]);
        let (r, names, values) = if self.inputs[t0] != self.inputs[s] {
            (first(&self.inputs, s..t0)?, &set.input_names, &set.inputs)
        } else if self.targets[t1] != self.targets[t0] {
            (first(&self.targets, t0..t1)?, &set.target_names, &set.targets)
        } else {
            return None;
        };
        let width = names.len();
        let j = (0..width).find(|&j| !values[r * width + j].is_finite()).unwrap_or(0);
        Some((r, names[j].clone()))
    }
}

/// Appends the columns `names` of `b` row-major to `out` (a null as NaN).
fn gather(b: &RecordBatch, names: &[String], out: &mut Vec<f32>) {
    let start = out.len();
    out.resize(start + b.num_rows() * names.len(), 0.0);
    for (j, name) in names.iter().enumerate() {
        let col = b.column_by_name(name).expect("checked before reading");
        let col = col.as_primitive::<Float32Type>();
        for i in 0..b.num_rows() {
            out[start + i * names.len() + j] = if col.is_null(i) { f32::NAN } else { col.value(i) };
        }
    }
}

/// The timestamp of a features row, for messages.
fn row_time(times: &[i64], row: usize) -> String {
    times
        .get(row)
        .and_then(|&t| chrono::DateTime::from_timestamp_millis(t))
        .map_or_else(|| format!("row {row}"), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests;
