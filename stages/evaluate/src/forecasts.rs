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
    Ok(forecasts_batch(&[], levels, step_ms)?.schema())
}

/// A track and where it belongs: its part and its (method, series, target).
type Placed<'a> = (&'a str, &'a (Method, String, String), &'a Track);

/// A group of series' tracks as rows of the `forecasts` table: per series, part, method (in
/// the order of [`Method::BACKTESTED`]), target, origin and step; written a batch of whole
/// tracks at a time. Groups come in key order, so the whole table is sorted by series: the
/// plan reads it a few series at a time.
pub(crate) fn write_forecasts(
    writer: &mut TableWriter,
    parts: &[Tracks; 3],
    levels: &[f64],
    step_ms: i64,
) -> Result<(), BoxError> {
    let method = |m: &Method| Method::BACKTESTED.iter().position(|x| x == m);
    let mut placed: Vec<(usize, usize, Placed)> = Vec::new();
    for (p, tracks) in parts.iter().enumerate() {
        for (at, t) in tracks {
            if let Some(m) = method(&at.0) {
                placed.push((p, m, (PARTS[p], at, t)));
            }
        }
    }
    placed.sort_by(|a, b| (&a.2.1.1, a.0, a.1, &a.2.1.2).cmp(&(&b.2.1.1, b.0, b.1, &b.2.1.2)));
    let placed: Vec<Placed> = placed.into_iter().map(|p| p.2).collect();
    let mut from = 0;
    while from < placed.len() {
        // Whole tracks, about 2^16 rows a batch (at least one track).
        let mut to = from;
        let mut rows = 0;
        while to < placed.len() && (to == from || rows < 1 << 16) {
            rows += placed[to].2.forecast.len();
            to += 1;
        }
        writer.write(&forecasts_batch(&placed[from..to], levels, step_ms)?)?;
        from = to;
    }
    Ok(())
}

/// The rows of some tracks: per track, its origins and steps.
fn forecasts_batch(tracks: &[Placed], levels: &[f64], step_ms: i64) -> Result<RecordBatch, BoxError> {
    let (mut part, mut method) = (Vec::new(), Vec::new());
    let (mut key, mut column, mut origin, mut step) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut time, mut actual, mut forecast) = (Vec::new(), Vec::new(), Vec::new());
    let mut qs: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
    for (p, (m, k, c), t) in tracks {
        for (n, &o) in t.origins.iter().enumerate() {
            for h in 0..t.horizon {
                part.push(*p);
                method.push(m.name());
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
    let mut t = TableBuilder::default()
        .strings(forecasts::PART, part)
        .strings(forecasts::METHOD, method)
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
