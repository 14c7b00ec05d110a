//! clean.resample's work on one range of groups, in plain Rust over the range's samples:
//! bin every series on the step grid, combine a group's series, fill short gaps, align the
//! roles, cut segments, trim and filter them, and build the output rows.
//!
//! Every step keeps the arithmetic of the SQL it replaced (sums in input order from 0, the
//! same interpolation), so the output is the same to the bit.

use std::sync::Arc;

use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder, UInt32Builder,
};
use applearner_pipeline::arrow::datatypes::SchemaRef;

use crate::resample::{Aggregate, Combine, Fill, Level, Plan};
use applearner_contracts::summaries::CleanSummary;

/// One finite, non-negative sample of the series in slot `slot` of its range.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub slot: u32,
    pub ts: i64,
    pub value: f64,
}

/// The groups cleaned together: `first..=last` in key order, and the series in them by slot.
pub struct Range {
    pub first: usize,
    pub last: usize,
    /// Per slot: the series' group and role number.
    pub slots: Vec<(usize, usize)>,
}

/// A group's key and the values of its key columns.
pub struct Key {
    pub key: String,
    pub columns: Vec<Option<String>>,
}

/// One point on the grid: step number, value, whether it was filled.
type Point = (i64, f64, bool);

/// Cleans one range: its samples (in input order) → output batches handed to `sink`.
pub fn clean_range(
    plan: &Plan,
    range: &Range,
    keys: &[Key],
    samples: Vec<Sample>,
    counts: &mut CleanSummary,
    out: &mut Output,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    let rates: Vec<bool> = range
        .slots
        .iter()
        .map(|&(_, r)| r.checked_sub(plan.roles.len()).is_some_and(|i| plan.inputs[i].1.level == Level::Rate))
        .collect();
    let mut binned = bin_slots(plan, &rates, samples, counts);
    let (roles, all) = (plan.roles.len(), plan.roles.len() + plan.inputs.len());
    // Per group of the range and role (the usage's, then the inputs'), the slots holding its series.
    let mut members = vec![Vec::new(); (range.last - range.first + 1) * all];
    for (slot, &(k, r)) in range.slots.iter().enumerate() {
        members[(k - range.first) * all + r].push(slot);
    }
    for k in range.first..=range.last {
        let members = &members[(k - range.first) * all..(k - range.first + 1) * all];
        let pods = replicas(&members[..roles], &binned);
        let lines: Vec<Vec<Point>> = (0..all)
            .map(|r| {
                let grid = combine(plan.group.aggregate, &members[r], &mut binned);
                let how = r.checked_sub(roles).map_or(plan.fill, |i| plan.inputs[i].1.fill);
                let line = fill(plan, how, &grid);
                if r < roles {
                    counts.grid_points += grid.len() as u64;
                    counts.filled_points += (line.len() - grid.len()) as u64;
                }
                line
            })
            .collect();
        let mut rows = align(&lines[..roles], &pods);
        rows.add_inputs(&lines[roles..]);
        let segments = segments(plan, &rows, counts);
        if !segments.is_empty() && keep(plan, &rows, &segments, counts) {
            counts.series += 1;
            counts.output_segments += segments.len() as u64;
            let missing: Vec<&String> =
                plan.inputs.iter().zip(&lines[roles..]).filter(|(_, l)| l.is_empty()).map(|(i, _)| &i.0).collect();
            counts.series_without_an_input += u64::from(!missing.is_empty());
            for input in missing {
                *counts.without_input.entry(input.clone()).or_default() += 1;
            }
            for (number, &(from, to)) in segments.iter().enumerate() {
                counts.points += (to - from) as u64;
                out.push(plan, &keys[k], number as u32, &rows, (from, to));
            }
        }
        if out.rows >= BATCH_ROWS {
            sink(out.finish()?)?;
        }
    }
    Ok(())
}

/// Output rows per batch handed on.
const BATCH_ROWS: usize = 64 * 1024;

/// Every slot's samples binned on the grid: per slot, (step number, value) in step order;
/// the slots marked in `rates` hold counters, binned as their per-second rates.
fn bin_slots(plan: &Plan, rates: &[bool], samples: Vec<Sample>, counts: &mut CleanSummary) -> Vec<Vec<(i64, f64)>> {
    let slots = rates.len();
    // A counting sort by slot, keeping each series' samples in input order.
    let mut start = vec![0usize; slots + 1];
    for s in &samples {
        start[s.slot as usize + 1] += 1;
    }
    for i in 0..slots {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut points = vec![(0i64, 0f64); samples.len()];
    for s in samples {
        let at = &mut next[s.slot as usize];
        points[*at] = (s.ts, s.value);
        *at += 1;
    }
    (0..slots)
        .map(|slot| {
            let points = &mut points[start[slot]..start[slot + 1]];
            if !rates[slot] {
                return bin(plan, points);
            }
            let (mut rates, resets) = per_second(points);
            counts.covariate_counter_resets += resets;
            bin(plan, &mut rates)
        })
        .collect()
}

/// A counter's samples (sorted here by time) → its rate per second over each interval
/// between samples, at the interval's end, and how many times it was reset: as in PromQL, a
/// lower value is a reset and all of it counts as the increase.
fn per_second(points: &mut [(i64, f64)]) -> (Vec<(i64, f64)>, u64) {
    points.sort_by_key(|p| p.0);
    let mut resets = 0;
    let rates = points
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| {
            let reset = w[1].1 < w[0].1;
            resets += u64::from(reset);
            let increase = if reset { w[1].1 } else { w[1].1 - w[0].1 };
            (w[1].0, increase * 1000.0 / (w[1].0 - w[0].0) as f64)
        })
        .collect();
    (rates, resets)
}

/// One series' samples → one value per step holding any: the step's aggregate.
fn bin(plan: &Plan, points: &mut [(i64, f64)]) -> Vec<(i64, f64)> {
    let step = plan.step_ms;
    // Ingest writes each series in time order; any other order is sorted, stably, so that
    // the samples of one step are still added up in input order.
    if !points.windows(2).all(|w| w[0].0 <= w[1].0) {
        points.sort_by_key(|p| p.0.div_euclid(step));
    }
    let mut out = Vec::new();
    let mut values = Vec::new();
    for run in points.chunk_by(|a, b| a.0.div_euclid(step) == b.0.div_euclid(step)) {
        let n = run[0].0.div_euclid(step);
        let value = match plan.aggregate {
            Aggregate::Mean => run.iter().fold(0.0, |sum, p| sum + p.1) / run.len() as f64,
            Aggregate::Sum => run.iter().fold(0.0, |sum, p| sum + p.1),
            Aggregate::Max => run.iter().map(|p| p.1).fold(f64::MIN, f64::max),
            Aggregate::Min => run.iter().map(|p| p.1).fold(f64::MAX, f64::min),
            // The latest sample; of several at one time, the last read.
            Aggregate::Last => run.iter().fold(run[0], |last, p| if p.0 >= last.0 { *p } else { last }).1,
            Aggregate::Percentile(q) => {
                values.clear();
                values.extend(run.iter().map(|p| p.1));
                percentile_cont(&mut values, q)
            }
        };
        out.push((n, value));
    }
    out
}

/// SQL's `percentile_cont(q)` as DataFusion computes it: linear between the closest ranks,
/// the weight rounded down to a millionth.
fn percentile_cont(values: &mut [f64], q: f64) -> f64 {
    let index = q * (values.len() - 1) as f64;
    let (lower, upper) = (index.floor() as usize, index.ceil() as usize);
    let low = *values.select_nth_unstable_by(lower, f64::total_cmp).1;
    if lower == upper {
        return low;
    }
    let high = *values.select_nth_unstable_by(upper, f64::total_cmp).1;
    let weight = ((index - lower as f64) * 1e6) as usize as f64 / 1e6;
    low + (high - low) * weight
}

/// The series of one group and role combined per step (`sum` or `max`, in slot order);
/// their bins are taken (each slot belongs to one group and role).
fn combine(how: Combine, slots: &[usize], binned: &mut [Vec<(i64, f64)>]) -> Vec<(i64, f64)> {
    match slots {
        [] => Vec::new(),
        [one] => std::mem::take(&mut binned[*one]),
        many => {
            let mut all: Vec<(i64, f64)> = many.iter().flat_map(|&s| binned[s].iter().copied()).collect();
            all.sort_by_key(|p| p.0);
            all.chunk_by(|a, b| a.0 == b.0)
                .map(|run| {
                    let value = match how {
                        Combine::Sum => run.iter().fold(0.0, |sum, p| sum + p.1),
                        Combine::Max => run.iter().map(|p| p.1).fold(f64::MIN, f64::max),
                    };
                    (run[0].0, value)
                })
                .collect()
        }
    }
}

/// How many of a group's series (its replicas) hold a sample at each step, the most over
/// its roles, in step order.
fn replicas(members: &[Vec<usize>], binned: &[Vec<(i64, f64)>]) -> Vec<(i64, u32)> {
    let mut steps: Vec<(i64, usize)> = members
        .iter()
        .enumerate()
        .flat_map(|(r, slots)| slots.iter().flat_map(move |&s| binned[s].iter().map(move |p| (p.0, r))))
        .collect();
    steps.sort_unstable();
    let mut out: Vec<(i64, u32)> = Vec::new();
    for run in steps.chunk_by(|a, b| a.0 == b.0) {
        let most = run.chunk_by(|a, b| a.1 == b.1).map(|role| role.len() as u32).max().unwrap_or(0);
        out.push((run[0].0, most));
    }
    out
}

/// The grid points with the gaps of up to `max_gap` filled (flagged) as `how` says; longer
/// gaps stay.
fn fill(plan: &Plan, how: Fill, grid: &[(i64, f64)]) -> Vec<Point> {
    let max_steps = plan.max_gap_ms / plan.step_ms;
    let mut line = Vec::with_capacity(grid.len());
    for (i, &(n, value)) in grid.iter().enumerate() {
        if let Some(&(prev, before)) = i.checked_sub(1).map(|j| &grid[j])
            && n - prev - 1 <= max_steps
        {
            for t in prev + 1..n {
                let filled = match how {
                    Fill::Linear => before + (value - before) * (t - prev) as f64 / (n - prev) as f64,
                    Fill::Ffill => before,
                    Fill::Zero => 0.0,
                };
                line.push((t, filled, true));
            }
        }
        line.push((n, value, false));
    }
    line
}

/// A group's rows: the steps where every role has a point, with each role's value and flag,
/// and each model input's (0 and flagged filled where it has none).
struct Rows {
    steps: Vec<i64>,
    /// Replicas present at each step (at a filled step, those of the last step with samples).
    replicas: Vec<u32>,
    /// `[row][role]`.
    values: Vec<f64>,
    filled: Vec<bool>,
    /// `[row][input]`.
    inputs: Vec<(f64, bool)>,
}

impl Rows {
    /// Each input's line at the rows' steps.
    fn add_inputs(&mut self, lines: &[Vec<Point>]) {
        let mut at = vec![0usize; lines.len()];
        for &n in &self.steps {
            for (line, i) in lines.iter().zip(&mut at) {
                *i += line[*i..].partition_point(|p| p.0 < n);
                let point = line.get(*i).filter(|p| p.0 == n);
                self.inputs.push(point.map_or((0.0, true), |p| (p.1, p.2)));
            }
        }
    }
}

/// The steps every role's line holds (a row needs all of them), with the replicas present.
fn align(lines: &[Vec<Point>], pods: &[(i64, u32)]) -> Rows {
    let mut rows =
        Rows { steps: Vec::new(), replicas: Vec::new(), values: Vec::new(), filled: Vec::new(), inputs: Vec::new() };
    let mut at = vec![0usize; lines.len()];
    for first in 0..lines[0].len() {
        let n = lines[0][first].0;
        at[0] = first;
        let mut everywhere = true;
        for (line, i) in lines.iter().zip(&mut at).skip(1) {
            while *i < line.len() && line[*i].0 < n {
                *i += 1;
            }
            everywhere &= *i < line.len() && line[*i].0 == n;
        }
        if everywhere {
            rows.steps.push(n);
            let last = pods.partition_point(|p| p.0 <= n);
            rows.replicas.push(last.checked_sub(1).map_or(1, |i| pods[i].1));
            for (line, &i) in lines.iter().zip(&at) {
                rows.values.push(line[i].1);
                rows.filled.push(line[i].2);
            }
        }
    }
    rows
}

/// The group's segments (runs of consecutive steps), trimmed; those still long enough, as
/// row ranges `from..to`.
fn segments(plan: &Plan, rows: &Rows, counts: &mut CleanSummary) -> Vec<(usize, usize)> {
    let (trim, len) = (plan.trim as usize, rows.steps.len());
    let mut kept = Vec::new();
    let mut from = 0;
    for end in 1..=len {
        if end < len && rows.steps[end] == rows.steps[end - 1] + 1 {
            continue;
        }
        let n = end - from;
        counts.segments += 1;
        counts.trimmed_points += n.min(2 * trim) as u64;
        if n as i64 - 2 * trim as i64 >= i64::from(plan.min_points) {
            kept.push((from + trim, end - trim));
        } else {
            counts.short_segments_dropped += 1;
        }
        from = end;
    }
    kept
}

/// Whether the group's kept points pass the filters: no role all zero (`drop_zero`), no
/// role constant (`drop_constant`; an all-zero role counts as zero, not constant).
fn keep(plan: &Plan, rows: &Rows, segments: &[(usize, usize)], counts: &mut CleanSummary) -> bool {
    let roles = plan.roles.len();
    let (mut zero, mut constant) = (false, false);
    for r in 0..roles {
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for &(from, to) in segments {
            for row in from..to {
                let v = rows.values[row * roles + r];
                (low, high) = (low.min(v), high.max(v));
            }
        }
        zero |= low == 0.0 && high == 0.0;
        constant |= low == high;
    }
    let mut keep = true;
    if plan.drop_zero {
        counts.zero_series_dropped += u64::from(zero);
        keep &= !zero;
    }
    if plan.drop_constant {
        counts.constant_series_dropped += u64::from(constant && !zero);
        keep &= zero || !constant;
    }
    keep
}

/// The `resampled` rows being gathered.
pub struct Output {
    schema: SchemaRef,
    key: StringBuilder,
    columns: Vec<StringBuilder>,
    segment: UInt32Builder,
    timestamp: TimestampMillisecondBuilder,
    replicas: UInt32Builder,
    values: Vec<Float64Builder>,
    filled: Vec<BooleanBuilder>,
    pub rows: usize,
}

impl Output {
    pub fn new(schema: SchemaRef, columns: usize, roles: usize) -> Output {
        Output {
            schema,
            key: StringBuilder::new(),
            columns: (0..columns).map(|_| StringBuilder::new()).collect(),
            segment: UInt32Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            replicas: UInt32Builder::new(),
            values: (0..roles).map(|_| Float64Builder::new()).collect(),
            filled: (0..roles).map(|_| BooleanBuilder::new()).collect(),
            rows: 0,
        }
    }

    fn push(&mut self, plan: &Plan, key: &Key, number: u32, rows: &Rows, (from, to): (usize, usize)) {
        let (roles, inputs) = (plan.roles.len(), plan.inputs.len());
        for row in from..to {
            self.key.append_value(&key.key);
            for (builder, value) in self.columns.iter_mut().zip(&key.columns) {
                builder.append_option(value.as_deref());
            }
            self.segment.append_value(number);
            self.timestamp.append_value(rows.steps[row] * plan.step_ms);
            self.replicas.append_value(rows.replicas[row]);
            for r in 0..roles {
                self.values[r].append_value(rows.values[row * roles + r]);
                self.filled[r].append_value(rows.filled[row * roles + r]);
            }
            for i in 0..inputs {
                let (value, filled) = rows.inputs[row * inputs + i];
                self.values[roles + i].append_value(value);
                self.filled[roles + i].append_value(filled);
            }
        }
        self.rows += to - from;
    }

    /// The rows gathered so far, as a batch of the output schema.
    pub fn finish(&mut self) -> Result<RecordBatch, BoxError> {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(self.key.finish())];
        arrays.extend(self.columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        arrays.push(Arc::new(self.segment.finish()));
        arrays.push(Arc::new(self.timestamp.finish()));
        arrays.push(Arc::new(self.replicas.finish()));
        for (value, filled) in self.values.iter_mut().zip(&mut self.filled) {
            arrays.push(Arc::new(value.finish()));
            arrays.push(Arc::new(filled.finish()));
        }
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(aggregate: &str) -> Plan {
        let yaml = format!("step: 1m\naggregate: {aggregate}\n");
        serde_saphyr::from_str::<crate::resample::ResampleParams>(&yaml).unwrap().plan().unwrap()
    }

    /// Samples out of time order bin as sorted ones do; percentiles interpolate as
    /// DataFusion's `percentile_cont` does (its weight rounded down to a millionth).
    #[test]
    fn steps_aggregate_whatever_the_sample_order() {
        let minute = |m: i64, s: i64| m * 60_000 + s * 1000;
        let sorted = [(minute(0, 0), 1.0), (minute(0, 20), 2.0), (minute(0, 40), 4.0), (minute(2, 0), 8.0)];
        let mut shuffled = [sorted[3], sorted[1], sorted[0], sorted[2]];
        assert_eq!(bin(&plan("mean"), &mut sorted.clone()), [(0, 7.0 / 3.0), (2, 8.0)]);
        assert_eq!(bin(&plan("mean"), &mut shuffled.clone()), [(0, 7.0 / 3.0), (2, 8.0)]);
        assert_eq!(bin(&plan("last"), &mut shuffled.clone()), [(0, 4.0), (2, 8.0)]);
        assert_eq!(bin(&plan("p50"), &mut shuffled), [(0, 2.0), (2, 8.0)]);
        let mut ten: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(percentile_cont(&mut ten, 0.9), 8.099999);
        assert_eq!(percentile_cont(&mut [4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
    }
}
