//! Forecast against actual for the best, median and worst series.

use super::*;
use applearner_pipeline::columns::column;

/// Forecast against actual for the best, median and worst series.
pub(crate) fn forecasts_section(
    doc: &mut Doc,
    scores: &[Score],
    rank_by: Resource,
    forecasts: impl Iterator<Item = Result<RecordBatch, PipelineError>>,
    resampled: impl Iterator<Item = Result<RecordBatch, PipelineError>>,
    resources: &[String],
) -> Result<(), BoxError> {
    // Forecast vs actual for the best, median and worst series.
    let picks = pick_series(scores, rank_by.name());
    doc.html.section("forecasts", "Forecast against actual", &format!("The series with the best, median and worst model MASE on {}: history, what happened, the model's point forecast and its quantile band over the test part.", rank_by.name()));
    let shown: Vec<&str> = picks.iter().map(|(_, k)| k.as_str()).collect();
    let f = ForecastRows::read(forecasts, &shown)?;
    let usage = Usage::read(resampled, &shown)?;
    for (label, key) in &picks {
        for resource in resources {
            let chart = forecast_chart(&f, &usage, key, resource, label);
            doc.html.chart(&format!("forecast-{label}-{resource}"), &chart, key)?;
        }
    }
    doc.metrics.insert(
        "series_shown".into(),
        json!(picks.iter().map(|(l, k)| json!({"rank": l, "key": k})).collect::<Vec<_>>()),
    );

    Ok(())
}

/// The best, median and worst series by the model's MASE.
fn pick_series(scores: &[Score], resource: &str) -> Vec<(&'static str, String)> {
    let mut ranked: Vec<(f64, &str)> = scores
        .iter()
        .filter(|s| {
            s.method == Method::Model.name()
                && s.resource == resource
                && s.scope == "series"
                && s.bucket == "all"
                && s.metric == "mase"
                && s.value.is_finite()
        })
        .map(|s| (s.value, s.key.as_str()))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    if ranked.is_empty() {
        return Vec::new();
    }
    let mut out = vec![
        ("best", ranked[0].1.to_string()),
        ("median", ranked[ranked.len() / 2].1.to_string()),
        ("worst", ranked[ranked.len() - 1].1.to_string()),
    ];
    out.dedup_by(|b, a| a.1 == b.1);
    out
}

/// Model forecasts with actuals, per (key, resource): (time, actual, point, low, high).
struct ForecastRows {
    rows: BTreeMap<(String, String), Vec<(i64, f64, f64, f64, f64)>>,
    band: String,
}

impl ForecastRows {
    /// The model's test rows of the series `shown`, a batch at a time: the table holds every
    /// method's forecasts from every origin of three parts, far more than the charts draw.
    fn read(
        batches: impl Iterator<Item = Result<RecordBatch, PipelineError>>,
        shown: &[&str],
    ) -> Result<ForecastRows, BoxError> {
        let mut rows: BTreeMap<(String, String), Vec<_>> = BTreeMap::new();
        let mut band = None;
        for batch in batches {
            let batch = batch?;
            let levels: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| n.starts_with('p') && n[1..].parse::<u32>().is_ok())
                .collect();
            let c = Cols { batches: std::slice::from_ref(&batch), table: forecasts::NAME };
            let text = |name| {
                Ok::<_, BoxError>(column(&batch, forecasts::NAME, name, &DataType::Utf8)?.as_string::<i32>().clone())
            };
            let (part, method, key, resource) =
                (text(forecasts::PART)?, text(forecasts::METHOD)?, text(forecasts::KEY)?, text(forecasts::RESOURCE)?);
            let (time, actual, point) =
                (c.ints(forecasts::TIMESTAMP)?, c.floats(forecasts::ACTUAL)?, c.floats(forecasts::FORECAST)?);
            let (lo, hi) = match (levels.first(), levels.last()) {
                (Some(a), Some(b)) => (c.floats(a)?, c.floats(b)?),
                _ => (vec![f64::NAN; batch.num_rows()], vec![f64::NAN; batch.num_rows()]),
            };
            band.get_or_insert_with(|| levels.first().zip(levels.last()).map(|(a, b)| format!("{a}–{b}")));
            for i in 0..batch.num_rows() {
                if part.value(i) == Part::Test.name()
                    && method.value(i) == Method::Model.name()
                    && shown.contains(&key.value(i))
                {
                    rows.entry((key.value(i).to_string(), resource.value(i).to_string()))
                        .or_default()
                        .push((time[i], actual[i], point[i], lo[i], hi[i]));
                }
            }
        }
        Ok(ForecastRows { rows, band: band.flatten().unwrap_or_default() })
    }
}

/// Usage per (key, resource): (time, value), in time order.
struct Usage(BTreeMap<(String, String), Vec<(i64, f64)>>);

impl Usage {
    /// The series `shown`, a batch at a time: the charts draw a few series of the table.
    fn read(
        batches: impl Iterator<Item = Result<RecordBatch, PipelineError>>,
        shown: &[&str],
    ) -> Result<Usage, BoxError> {
        let mut out: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
        for b in batches {
            let b = b?;
            let keys = column(&b, table::NAME, table::KEY, &DataType::Utf8)?;
            let (keys, times) = (keys.as_string::<i32>(), columns::ints(&b, table::NAME, table::TIMESTAMP)?);
            for resource in Resource::ALL.map(Resource::name).into_iter().filter(|r| b.column_by_name(r).is_some()) {
                for (i, v) in columns::floats(&b, table::NAME, resource)?.into_iter().enumerate() {
                    if shown.contains(&keys.value(i)) {
                        out.entry((keys.value(i).to_string(), resource.to_string())).or_default().push((times[i], v));
                    }
                }
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|p| p.0);
        }
        Ok(Usage(out))
    }
}

fn forecast_chart(f: &ForecastRows, usage: &Usage, key: &str, resource: &str, label: &str) -> Chart {
    let id = (key.to_string(), resource.to_string());
    let mut rows = f.rows.get(&id).cloned().unwrap_or_default();
    rows.sort_by_key(|r| r.0);
    // The last stretch of the test part without a gap, and as much history before it.
    let step = rows.windows(2).map(|w| w[1].0 - w[0].0).filter(|d| *d > 0).min().unwrap_or(0);
    let cut = rows.windows(2).rposition(|w| w[1].0 - w[0].0 > 2 * step).map_or(0, |i| i + 1);
    rows.drain(..cut);
    let (first, last) = (rows.first().map_or(0, |r| r.0), rows.last().map_or(0, |r| r.0));
    let from = first - (last - first);
    let history: Vec<(f64, f64)> = usage
        .0
        .get(&id)
        .map(|v| v.iter().filter(|p| p.0 >= from && p.0 <= last).map(|p| (p.0 as f64, p.1)).collect())
        .unwrap_or_default();
    let history = with_breaks(history);
    let (unit, y) = if resource == Resource::Memory.name() { (1048576.0, "MiB") } else { (1e-3, "millicores") };
    let scale = |v: Vec<(f64, f64)>| v.into_iter().map(|(x, y)| (x, y / unit)).collect();
    let mut bands = Vec::new();
    if !f.band.is_empty() {
        bands.push(Band {
            name: format!("model {}", f.band),
            color: color(Method::Model.name()),
            points: rows.iter().map(|r| (r.0 as f64, r.3 / unit, r.4 / unit)).collect(),
        });
    }
    Chart {
        title: format!("{label}: {key} — {resource}"),
        x_label: "time (UTC)".into(),
        y_label: y.into(),
        time_x: true,
        log_x: false,
        lines: vec![
            Line {
                name: "actual".into(),
                color: plotters::style::RGBColor(30, 30, 30),
                points: scale(history),
                markers: false,
                bold: false,
            },
            Line {
                name: "model".into(),
                color: color(Method::Model.name()),
                points: scale(rows.iter().map(|r| (r.0 as f64, r.2)).collect()),
                markers: false,
                bold: false,
            },
        ],
        bands,
    }
}

/// Breaks a line where points are further apart than twice the usual step.
fn with_breaks(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut gaps: Vec<f64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_by(f64::total_cmp);
    let step = gaps.get(gaps.len() / 2).copied().unwrap_or(0.0);
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        if out.last().is_some_and(|l: &(f64, f64)| step > 0.0 && p.0 - l.0 > 2.0 * step) {
            out.push((p.0, f64::NAN));
        }
        out.push(p);
    }
    out
}
