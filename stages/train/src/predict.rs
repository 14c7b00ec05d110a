//! Forecasts from a trained model: the last window of every series in a features table,
//! run through the model and turned back into cores and bytes.

use crate::TrainError;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{DataType, Field, Float32Type, Int64Type, Schema, TimeUnit};

use crate::card::{Saved, Scaler};
use crate::device::Device;
use crate::fit::Build;
use crate::head::Head;
use crate::recurrent::TrainBackend;
use applearner_contracts::tables::features;
use applearner_contracts::{Part, WindowSet};

/// The last `lookback` rows of one series.
struct Tail {
    key: String,
    origin_ms: i64,
    rows: Vec<f32>,
}

/// Forecasts `horizon` steps (at most the model's) past the end of every series in
/// `features`. `scalers` are the input's own (beside the features), else the card's.
/// Returns one row per series, target and step: key, column, step, timestamp, forecast,
/// and `p<NN>` quantile columns for probabilistic models.
pub fn predict<E: Into<BoxError>>(
    model_dir: &Path,
    saved: &Saved,
    features: impl IntoIterator<Item = Result<RecordBatch, E>>,
    scalers: Option<Vec<Scaler>>,
    horizon: Option<usize>,
    device: Device,
) -> Result<RecordBatch, BoxError> {
    let card = &saved.card;
    let b = &card.blueprint;
    let horizon = horizon.unwrap_or(b.shape.horizon);
    if horizon > b.shape.horizon || horizon == 0 {
        return Err(TrainError::Horizon { model: b.shape.horizon, asked: horizon }.into());
    }
    let tails = tails(features, &b.inputs, b.shape.lookback)?;
    let scalers: BTreeMap<(String, String), Scaler> = scalers
        .unwrap_or_else(|| card.scalers.clone())
        .into_iter()
        .map(|s| ((s.key.clone(), s.column.clone()), s))
        .collect();

    let x: Vec<f32> = tails.iter().flat_map(|t| t.rows.iter().copied()).collect();
    let inputs = std::iter::once((x, tails.len()));
    let (point, quantiles) = on_backend!(device, |B, dev| run::<B>(model_dir, saved, inputs, &dev))?;
    let levels = b.loss.quantile_levels();
    let (h, t) = (b.shape.horizon, b.shape.targets);
    let mut out = Predictions { quantiles: vec![Vec::new(); levels.len()], ..Predictions::default() };
    for (w, tail) in tails.iter().enumerate() {
        for (j, column) in b.targets.iter().enumerate() {
            let scaler = scalers
                .get(&(tail.key.clone(), column.clone()))
                .ok_or_else(|| TrainError::NoScaler { key: tail.key.clone(), column: column.clone() })?;
            for step in 0..horizon {
                let cell = (w * h + step) * t + j;
                out.keys.push(tail.key.clone());
                out.columns.push(column.clone());
                out.steps.push(step as u32 + 1);
                out.times.push(tail.origin_ms + (step as i64 + 1) * card.step_ms);
                out.values.push(scaler.unscale(point[cell] as f64));
                for (l, q) in out.quantiles.iter_mut().enumerate() {
                    q.push(scaler.unscale(quantiles[cell * levels.len() + l] as f64));
                }
            }
        }
    }
    out.batch(&levels)
}

/// The predictions' columns, a row per series, target and step.
#[derive(Default)]
struct Predictions {
    keys: Vec<String>,
    columns: Vec<String>,
    steps: Vec<u32>,
    times: Vec<i64>,
    values: Vec<f64>,
    /// Per quantile level.
    quantiles: Vec<Vec<f64>>,
}

impl Predictions {
    fn batch(self, levels: &[f64]) -> Result<RecordBatch, BoxError> {
        let mut fields = vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("column", DataType::Utf8, false),
            Field::new("step", DataType::UInt32, false),
            Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
            Field::new("forecast", DataType::Float64, false),
        ];
        let mut arrays: Vec<Arc<dyn Array>> = vec![
            Arc::new(StringArray::from(self.keys)),
            Arc::new(StringArray::from(self.columns)),
            Arc::new(UInt32Array::from(self.steps)),
            Arc::new(TimestampMillisecondArray::from(self.times).with_timezone("UTC")),
            Arc::new(Float64Array::from(self.values)),
        ];
        for (level, q) in levels.iter().zip(self.quantiles) {
            fields.push(Field::new(format!("p{}", (level * 100.0).round() as u32), DataType::Float64, false));
            arrays.push(Arc::new(Float64Array::from(q)));
        }
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
    }
}

/// Scaled forecasts of the windows `which` of `part`: points `[windows, horizon, targets]`
/// and quantiles `[…, levels]` (empty for point models), flat. For backtests.
pub fn forecast_windows(
    model_dir: &Path,
    saved: &Saved,
    windows: &WindowSet,
    part: Part,
    which: &[usize],
    device: Device,
) -> Result<(Vec<f32>, Vec<f32>), BoxError> {
    let inputs = which.chunks(BATCH).map(|chunk| {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        windows.batch(part, chunk, &mut x, &mut y);
        (x, chunk.len())
    });
    on_backend!(device, |B, dev| run::<B>(model_dir, saved, inputs, &dev))
}

/// Windows per forward pass: large enough to keep the kernels busy, small enough to bound memory.
const BATCH: usize = 1024;

/// Point forecasts `[batch, horizon, targets]` and quantiles `[…, levels]`, flat, for batches
/// of inputs `x` (`[batch, lookback, inputs]`, with their size), the model loaded once.
fn run<B: TrainBackend>(
    dir: &Path,
    saved: &Saved,
    inputs: impl Iterator<Item = (Vec<f32>, usize)>,
    device: &B::Device,
) -> Result<(Vec<f32>, Vec<f32>), BoxError> {
    let b = &saved.card.blueprint;
    let model = saved.model::<B::InnerBackend>(dir, device)?;
    let (mut point, mut quantiles) = (Vec::new(), Vec::new());
    for (x, batch) in inputs {
        let decoded = b.run(&model, x, batch, device);
        point.extend(b.loss.point(decoded.clone()).into_data().to_vec::<f32>()?);
        if let Some(q) = b.loss.quantiles(decoded) {
            quantiles.extend(q.into_data().to_vec::<f32>()?);
        }
    }
    Ok((point, quantiles))
}

/// The rows of a series' latest segment; while they come in time order, only the last
/// `lookback` are kept.
struct Latest {
    segment: i64,
    rows: Vec<(i64, Vec<f32>)>,
    in_order: bool,
}

/// The last `lookback` rows of each series' last segment, in `inputs` order.
fn tails<E: Into<BoxError>>(
    features: impl IntoIterator<Item = Result<RecordBatch, E>>,
    inputs: &[String],
    lookback: usize,
) -> Result<Vec<Tail>, BoxError> {
    // Per series: rows of its latest segment, read a batch at a time.
    let mut series: BTreeMap<String, Latest> = BTreeMap::new();
    for batch in features {
        read_latest(&batch.map_err(Into::into)?, inputs, lookback, &mut series)?;
    }
    let mut longest = 0;
    let mut out = Vec::new();
    for (key, Latest { mut rows, .. }) in series {
        rows.sort_by_key(|r| r.0);
        // Count the finite rows at the end: a window must not reach past a missing value.
        let finite = rows.iter().rev().take_while(|r| r.1.iter().all(|v| v.is_finite())).count();
        longest = longest.max(finite);
        if finite < lookback {
            tracing::warn!(series = key, finite, lookback, "too short to forecast; skipped");
            continue;
        }
        let tail = &rows[rows.len() - lookback..];
        out.push(Tail {
            key,
            origin_ms: tail[lookback - 1].0,
            rows: tail.iter().flat_map(|r| r.1.iter().copied()).collect(),
        });
    }
    if out.is_empty() {
        return Err(TrainError::TooShort { lookback, longest }.into());
    }
    Ok(out)
}

/// Adds a batch's rows to the latest segment of their series.
fn read_latest(
    batch: &RecordBatch,
    inputs: &[String],
    lookback: usize,
    series: &mut BTreeMap<String, Latest>,
) -> Result<(), BoxError> {
    let column = |name: &str, to: &DataType| -> Result<Arc<dyn Array>, BoxError> {
        let c = batch
            .column_by_name(name)
            .ok_or_else(|| TrainError::MissingColumn { column: name.to_string(), inputs: inputs.join(", ") })?;
        Ok(cast(c, to)?)
    };
    let key = column(features::KEY, &DataType::Utf8)?;
    let key = key.as_string::<i32>();
    let segment = column(features::SEGMENT, &DataType::Int64)?;
    let ts = column(features::TIMESTAMP, &DataType::Int64)?;
    let (segment, ts) = (segment.as_primitive::<Int64Type>(), ts.as_primitive::<Int64Type>());
    let cols = inputs.iter().map(|name| column(name, &DataType::Float32)).collect::<Result<Vec<_>, BoxError>>()?;
    for i in 0..batch.num_rows() {
        if !series.contains_key(key.value(i)) {
            let first = Latest { segment: i64::MIN, rows: Vec::new(), in_order: true };
            series.insert(key.value(i).to_string(), first);
        }
        let entry = series.get_mut(key.value(i)).expect("inserted");
        if segment.value(i) > entry.segment {
            *entry = Latest { segment: segment.value(i), rows: Vec::new(), in_order: true };
        }
        if segment.value(i) == entry.segment {
            let row = cols
                .iter()
                .map(|c| {
                    let c = c.as_primitive::<Float32Type>();
                    if c.is_null(i) { f32::NAN } else { c.value(i) }
                })
                .collect();
            entry.in_order &= entry.rows.last().is_none_or(|r| r.0 < ts.value(i));
            entry.rows.push((ts.value(i), row));
            if entry.in_order && entry.rows.len() >= 2 * lookback.max(1) {
                entry.rows.drain(..entry.rows.len() - lookback);
            }
        }
    }
    Ok(())
}
