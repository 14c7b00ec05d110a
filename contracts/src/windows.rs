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

impl WindowCounts {
    /// How many windows of a run apart two windows must be for their forecasts not to
    /// overlap.
    pub fn apart(&self) -> usize {
        self.horizon.div_ceil(self.stride.max(1)).max(1)
    }
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
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Int64Array, StringArray, UInt32Array, UInt64Array};
    use arrow::datatypes::{Field, Schema};
    use std::collections::HashMap;

    /// 40 rows of one series (cpu = row), in batches of 7; windows of lookback 3 and horizon 2
    /// at every row, the first 20 train, then 10 validation and the rest test.
    fn tables() -> (Vec<RecordBatch>, RecordBatch) {
        let rows = 40;
        let schema = Arc::new(Schema::new(vec![
            Field::new(feature_table::TIMESTAMP, DataType::Int64, false),
            Field::new("cpu", DataType::Float32, true),
        ]));
        let features = (0..rows)
            .step_by(7)
            .map(|from| {
                let r = from..(from + 7).min(rows);
                let times = Int64Array::from_iter_values(r.clone().map(|i| i as i64 * 60_000));
                let cpu = Float32Array::from_iter_values(r.map(|i| i as f32));
                RecordBatch::try_new(schema.clone(), vec![Arc::new(times), Arc::new(cpu)]).unwrap()
            })
            .collect();
        // Runs of windows one row apart: 20 train, 10 validation, 6 test.
        let runs = [("train", 0u64, 20u64), ("validation", 20, 10), ("test", 30, 6)];
        let metadata = HashMap::from([
            (window_table::LOOKBACK_KEY.to_string(), "3".to_string()),
            (window_table::HORIZON_KEY.to_string(), "2".to_string()),
            (window_table::STRIDE_KEY.to_string(), "1".to_string()),
        ]);
        let schema = Schema::new(vec![
            Field::new(window_table::SPLIT, DataType::Utf8, false),
            Field::new(window_table::KEY, DataType::Utf8, false),
            Field::new(window_table::START, DataType::UInt64, false),
            Field::new(window_table::ORIGIN, DataType::Int64, false),
            Field::new(window_table::WINDOWS, DataType::UInt32, false),
        ])
        .with_metadata(metadata);
        let windows = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from_iter_values(runs.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(runs.iter().map(|_| "a"))),
                Arc::new(UInt64Array::from_iter_values(runs.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(runs.iter().map(|r| (r.1 as i64 + 2) * 60_000))),
                Arc::new(UInt32Array::from_iter_values(runs.iter().map(|r| r.2 as u32))),
            ],
        )
        .unwrap();
        (features, windows)
    }

    fn set(parts: &[Part]) -> WindowSet {
        let (features, windows) = tables();
        let ok = |b: RecordBatch| Ok::<_, std::convert::Infallible>(b);
        let cpu = ["cpu".to_string()];
        WindowSet::of_parts(features.into_iter().map(ok), [ok(windows)], &cpu, &cpu, parts).unwrap()
    }

    #[test]
    fn a_set_of_some_parts_holds_only_their_rows_and_reads_the_same_windows() {
        let (all, held) = (set(&Part::ALL), set(&[Part::Validation, Part::Test]));
        // Validation windows start at row 20 and read rows 20..25 on; test ends at row 40.
        assert_eq!((all.times.len(), held.times.len()), (40, 20));
        assert_eq!(held.runs, [(20, 0)]);
        assert!(held.part(Part::Train).is_empty());
        for part in [Part::Validation, Part::Test] {
            let which: Vec<usize> = (0..all.part(part).len()).collect();
            assert_eq!(held.part(part), all.part(part));
            let (mut x, mut y, mut x2, mut y2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            all.batch(part, &which, &mut x, &mut y);
            held.batch(part, &which, &mut x2, &mut y2);
            assert_eq!((&x, &y), (&x2, &y2));
            // The window at row s reads cpu s, s+1, s+2 and forecasts s+3, s+4.
            let s = all.part(part)[0].start as f32;
            // Its origin is the time of its last input row (60 s a row).
            assert!(all.part(part).iter().all(|w| w.origin_ms == (w.start as i64 + 2) * 60_000));
            assert_eq!((&x[..3], &y[..2]), (&[s, s + 1.0, s + 2.0][..], &[s + 3.0, s + 4.0][..]));
            held.last_values(part, &which, &mut x2);
            all.last_values(part, &which, &mut x);
            assert_eq!(x, x2);
        }
        assert_eq!(held.step_ms(), Some(60_000));
    }

    #[test]
    fn origins_are_picked_on_the_clock_not_from_the_first_window() {
        let all = set(&Part::ALL);
        let origins = |part: Part, stride: usize| -> Vec<i64> {
            all.every(part, stride, 0).iter().map(|&i| all.part(part)[i].origin_ms / 60_000).collect()
        };
        // Test origins are minutes 32..=37, validation 22..=31 (a row a minute).
        assert_eq!(origins(Part::Test, 2), [32, 34, 36]);
        assert_eq!(origins(Part::Test, 5), [35]);
        assert_eq!(origins(Part::Test, 7), [35]);
        assert_eq!(origins(Part::Validation, 5), [25, 30]);
        assert_eq!(origins(Part::Validation, 4), [24, 28]);
        let latest: Vec<usize> = all.every(Part::Validation, 4, 1);
        assert_eq!(all.part(Part::Validation)[latest[0]].origin_ms / 60_000, 28);
    }

    #[test]
    fn a_subsample_of_training_windows_holds_only_the_rows_they_read() {
        let (features, windows) = tables();
        let counts = windows_per_part([Ok::<_, std::convert::Infallible>(windows.clone())]).unwrap();
        assert_eq!(counts.per_part, [20, 10, 6]);
        let ok = |b: RecordBatch| Ok::<_, std::convert::Infallible>(b);
        let cpu = ["cpu".to_string()];
        let keep = |c: &Candidate| c.part != Part::Train || c.index == 0 || c.index == 10;
        let set = WindowSet::of_windows(features.into_iter().map(ok), [ok(windows)], &cpu, &cpu, &keep).unwrap();
        // Training windows 0 and 10 read rows 0..5 and 10..15; validation and test 20..40.
        assert_eq!(set.runs, [(0, 0), (10, 5), (20, 10)]);
        let starts: Vec<usize> = set.part(Part::Train).iter().map(|w| w.start).collect();
        assert_eq!(starts, [0, 10]);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        set.batch(Part::Train, &[0, 1], &mut x, &mut y);
        assert_eq!((x, y), (vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0], vec![3.0, 4.0, 13.0, 14.0]));
        assert_eq!((set.part(Part::Validation).len(), set.part(Part::Test).len()), (10, 6));
    }

    #[test]
    fn the_grid_step_is_read_within_a_segment_not_across_series_or_gaps() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(feature_table::KEY, DataType::Utf8, false),
            Field::new(feature_table::SEGMENT, DataType::UInt32, false),
            Field::new(feature_table::TIMESTAMP, DataType::Int64, false),
        ]));
        // a's segments 0 and 1 are 1 min apart across the gap; b starts 30 s after a ends.
        let key = StringArray::from(vec!["a", "a", "a", "a", "b", "b"]);
        let segment = UInt32Array::from(vec![0, 0, 1, 1, 0, 0]);
        let time = Int64Array::from(vec![0, 300_000, 360_000, 660_000, 690_000, 990_000]);
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(key), Arc::new(segment), Arc::new(time)]).unwrap();
        let ok = |b: RecordBatch| Ok::<_, std::convert::Infallible>(b);
        assert_eq!(grid_step_ms([ok(b.slice(0, 1)), ok(b)]).unwrap(), Some(300_000));
        assert_eq!(grid_step_ms([ok(RecordBatch::new_empty(schema))]).unwrap(), None);
    }

    #[test]
    fn windows_a_horizon_apart_in_their_run_do_not_overlap() {
        let (features, windows) = tables();
        let counts = windows_per_part([Ok::<_, std::convert::Infallible>(windows.clone())]).unwrap();
        assert_eq!((counts.horizon, counts.stride, counts.apart()), (2, 1, 2));
        let ok = |b: RecordBatch| Ok::<_, std::convert::Infallible>(b);
        let cpu = ["cpu".to_string()];
        let keep = |c: &Candidate| c.part == Part::Validation && c.in_run % counts.apart() == 0;
        let set = WindowSet::of_windows(features.into_iter().map(ok), [ok(windows)], &cpu, &cpu, &keep).unwrap();
        let starts: Vec<usize> = set.part(Part::Validation).iter().map(|w| w.start).collect();
        assert_eq!(starts, [20, 22, 24, 26, 28]);
        assert!(set.part(Part::Train).is_empty() && set.part(Part::Test).is_empty());
    }
}
