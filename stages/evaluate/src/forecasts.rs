//! The `forecasts` table: every part's tracks, a group of series and a batch of whole
//! tracks at a time.

use applearner_contracts::Method;
use applearner_contracts::tables::forecasts;
use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::arrow::datatypes::SchemaRef;
use applearner_pipeline::context::TableWriter;
use applearner_plan::table::TableBuilder;

use crate::backtest::{PARTS, Track, Tracks};

/// A quantile level's column name: `p90` for 0.9.
pub fn level_name(level: f64) -> String {
    format!("p{}", (level * 100.0).round() as u32)
}

/// The `forecasts` table's schema.
pub(crate) fn forecasts_schema(levels: &[f64], step_ms: i64) -> Result<SchemaRef, BoxError> {
    Ok(forecasts_batch(PARTS[0], Method::BACKTESTED[0], &[], levels, step_ms)?.schema())
}

/// A group of series' tracks as rows of the `forecasts` table: per part, method (in the
/// order of [`Method::BACKTESTED`]), series, target, origin and step; written a batch of
/// whole tracks at a time.
pub(crate) fn write_forecasts(
    writer: &mut TableWriter,
    parts: &[Tracks; 3],
    levels: &[f64],
    step_ms: i64,
) -> Result<(), BoxError> {
    for (p, tracks) in PARTS.iter().zip(parts) {
        for m in Method::BACKTESTED {
            let of_method: Vec<_> = tracks.iter().filter(|((mm, _, _), _)| *mm == m).collect();
            let mut from = 0;
            while from < of_method.len() {
                // Whole tracks, about 2^16 rows a batch (at least one track).
                let mut to = from;
                let mut rows = 0;
                while to < of_method.len() && (to == from || rows < 1 << 16) {
                    rows += of_method[to].1.forecast.len();
                    to += 1;
                }
                let batch = forecasts_batch(p, m, &of_method[from..to], levels, step_ms)?;
                writer.write(&batch)?;
                from = to;
            }
        }
    }
    Ok(())
}

/// The rows of some tracks of one part and method: per series, target, origin and step.
fn forecasts_batch(
    p: &str,
    m: Method,
    tracks: &[(&(Method, String, String), &Track)],
    levels: &[f64],
    step_ms: i64,
) -> Result<RecordBatch, BoxError> {
    let (mut key, mut column, mut origin, mut step) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut time, mut actual, mut forecast) = (Vec::new(), Vec::new(), Vec::new());
    let mut qs: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
    for ((_, k, c), t) in tracks {
        for (n, &o) in t.origins.iter().enumerate() {
            for h in 0..t.horizon {
                key.push(k.as_str());
                column.push(c.as_str());
                origin.push(o);
                step.push(h as u32 + 1);
                time.push(o + (h as i64 + 1) * step_ms);
                actual.push(t.actual(n)[h]);
                forecast.push(t.forecast(n)[h]);
                for (l, q) in qs.iter_mut().enumerate() {
                    q.push(t.quantile(n, h, l).unwrap_or(f64::NAN));
                }
            }
        }
    }
    let rows = key.len();
    let mut t = TableBuilder::default()
        .strings(forecasts::PART, std::iter::repeat_n(p, rows))
        .strings(forecasts::METHOD, std::iter::repeat_n(m.name(), rows))
        .strings(forecasts::KEY, key)
        .strings(forecasts::RESOURCE, column)
        .times(forecasts::ORIGIN, origin)
        .u32s(forecasts::STEP, step)
        .times(forecasts::TIMESTAMP, time)
        .floats(forecasts::ACTUAL, actual)
        .floats(forecasts::FORECAST, forecast);
    for (l, q) in levels.iter().zip(qs) {
        t = t.floats(&level_name(*l), q);
    }
    Ok(t.finish()?.1)
}
