//! Reads the `features` and `windows` tables back as training batches.
//!
//! Feature values are held once, row-major, read from the features table a batch at a time
//! (the decoded table is never held whole); a batch copies the rows of the windows it is
//! asked for, so memory grows with the points, not with lookback × windows. A window names
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

/// Windows of each part over the feature values.
pub struct WindowSet {
    inputs: Vec<f32>,
    targets: Vec<f32>,
    /// Each row's time (ms).
    times: Vec<i64>,
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
        let (mut inputs_flat, mut targets_flat, mut times) = (Vec::new(), Vec::new(), Vec::new());
        for batch in features {
            let b = batch.map_err(|e| ContractError::Read(e.to_string()))?;
            gather(&b, &input_names, &mut inputs_flat);
            gather(&b, targets, &mut targets_flat);
            let ts = b.column_by_name(feature_table::TIMESTAMP).and_then(|c| cast(c, &DataType::Int64).ok());
            match ts {
                Some(ts) => times.extend(ts.as_primitive::<Int64Type>().values().iter()),
                None => times.extend(std::iter::repeat_n(i64::MIN, b.num_rows())),
            }
        }
        let mut set = WindowSet {
            inputs: inputs_flat,
            targets: targets_flat,
            times,
            input_names,
            target_names: targets.to_vec(),
            lookback,
            horizon,
            parts: Part::ALL.iter().map(|p| (*p, Vec::new())).collect(),
        };
        set.read_windows(windows, parts)?;
        Ok(set)
    }

    /// Adds the windows of the `windows` table, each checked: inside the features table and
    /// touching no missing value.
    fn read_windows<E: std::fmt::Display>(
        &mut self,
        windows: impl Iterator<Item = Result<RecordBatch, E>>,
        parts: &[Part],
    ) -> Result<(), ContractError> {
        let missing = Missing::of(self);
        let rows = self.times.len();
        let mut keys: BTreeMap<String, Arc<str>> = BTreeMap::new();
        for b in windows {
            let b = b.map_err(|e| ContractError::Read(e.to_string()))?;
            let column = |name: &'static str, to: &DataType| {
                let c = b.column_by_name(name).ok_or(ContractError::Metadata(name))?;
                cast(c, to).map_err(|_| ContractError::Metadata(name))
            };
            let (split, key) =
                (column(window_table::SPLIT, &DataType::Utf8)?, column(window_table::KEY, &DataType::Utf8)?);
            let (split, key) = (split.as_string::<i32>(), key.as_string::<i32>());
            let start = column(window_table::START, &DataType::UInt64)?;
            let start = start.as_primitive::<UInt64Type>();
            let origin = column(window_table::ORIGIN, &DataType::Int64)?;
            let origin = origin.as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let part = Part::parse(split.value(i))
                    .ok_or_else(|| ContractError::UnknownPart(split.value(i).to_string()))?;
                if !parts.contains(&part) {
                    continue;
                }
                let s = start.value(i) as usize;
                if s + self.lookback + self.horizon > rows {
                    return Err(ContractError::OutOfRange { row: start.value(i), rows });
                }
                if let Some((r, column)) = missing.within(self, s) {
                    let key = key.value(i).to_string();
                    return Err(ContractError::NotFinite { key, column, time: row_time(&self.times, r) });
                }
                let shared = match keys.get(key.value(i)) {
                    Some(k) => k.clone(),
                    None => keys.entry(key.value(i).to_string()).or_insert_with(|| key.value(i).into()).clone(),
                };
                let window = Window { key: shared, start: s, origin_ms: origin.value(i) };
                self.parts.get_mut(&part).expect("every part has a list").push(window);
            }
        }
        Ok(())
    }

    /// The grid step: the shortest time between the first two rows of a window (`None`
    /// without windows).
    pub fn step_ms(&self) -> Option<i64> {
        let steps = self.parts.values().flatten().map(|w| self.times[w.start + 1] - self.times[w.start]);
        steps.filter(|d| *d > 0).min()
    }

    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }

    pub fn target_names(&self) -> &[String] {
        &self.target_names
    }

    /// The windows of a part (`train`, `validation`, `test`; none of another name).
    pub fn part(&self, part: &str) -> &[Window] {
        Part::parse(part).and_then(|p| self.parts.get(&p)).map_or(&[], Vec::as_slice)
    }

    /// Per series, every `stride`-th window of `part` in time order (the latest
    /// `max_origins` of them; 0: all): non-overlapping windows when `stride` is the horizon.
    pub fn every(&self, part: &str, stride: usize, max_origins: usize) -> Vec<usize> {
        let windows = self.part(part);
        let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, w) in windows.iter().enumerate() {
            by_key.entry(&w.key).or_default().push(i);
        }
        let mut chosen = Vec::new();
        for list in by_key.values_mut() {
            list.sort_by_key(|&i| windows[i].origin_ms);
            let mut picked: Vec<usize> = list.iter().copied().step_by(stride.max(1)).collect();
            if max_origins > 0 && picked.len() > max_origins {
                picked.drain(..picked.len() - max_origins);
            }
            chosen.extend(picked);
        }
        chosen
    }

    /// The last observed value of each target in the windows `which` of `part` (at their
    /// origin), `[batch, targets]`: what the last-value forecast repeats.
    pub fn last_values(&self, part: &str, which: &[usize], out: &mut Vec<f32>) {
        let windows = self.part(part);
        let nt = self.target_names.len();
        out.clear();
        for &w in which {
            let origin = windows[w].start + self.lookback - 1;
            out.extend_from_slice(&self.targets[origin * nt..(origin + 1) * nt]);
        }
    }

    /// Copies the windows `which` of `part` into `x` (`[batch, lookback, inputs]`) and `y`
    /// (`[batch, horizon, targets]`), row-major, replacing their contents.
    pub fn batch(&self, part: &str, which: &[usize], x: &mut Vec<f32>, y: &mut Vec<f32>) {
        let windows = self.part(part);
        let (ni, nt) = (self.input_names.len(), self.target_names.len());
        x.clear();
        y.clear();
        for &w in which {
            let s = windows[w].start;
            x.extend_from_slice(&self.inputs[s * ni..(s + self.lookback) * ni]);
            let t = s + self.lookback;
            y.extend_from_slice(&self.targets[t * nt..(t + self.horizon) * nt]);
        }
    }
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
