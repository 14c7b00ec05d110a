//! Scoring the backtest's tracks: the MASE scale of each series, every metric per series
//! and across series, over all steps, per horizon bucket and per step, and the tables.

use applearner_contracts::Method;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use crate::backtest::{Track, Tracks};
use crate::forecasts::level_name;
use crate::metrics;
use applearner_contracts::tables::{choices, scores};
use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::arrow::datatypes::SchemaRef;
use applearner_plan::table::{TableBuilder, Usage};

/// The horizon buckets: steps up to 1 hour ahead, then to 6 hours, a day, and beyond;
/// only those the horizon reaches. Each as its label and its 0-based steps.
pub fn buckets(horizon: usize, step_ms: i64) -> Vec<(&'static str, Range<usize>)> {
    const EDGES: [(&str, i64); 4] = [("1h", 3_600_000), ("6h", 21_600_000), ("1d", 86_400_000), ("more", i64::MAX)];
    let mut out = Vec::new();
    let mut from = 0;
    for (label, edge) in EDGES {
        let to = (0..horizon).take_while(|h| (*h as i64 + 1).saturating_mul(step_ms) <= edge).count().max(from);
        if to > from {
            out.push((label, from..to));
        }
        from = to;
    }
    out
}

/// Per series and target, the MASE scale in sample: the seasonal-naive error over every
/// point outside the test part (of every segment, so a season can reach back into an
/// earlier day); where that is 0 or undefined, the last-value error, counted.
pub fn mase_scale(
    test: &Tracks,
    usage: &BTreeMap<String, Usage>,
    step: i64,
    horizon: usize,
    season_ms: i64,
) -> (BTreeMap<(String, String), f64>, usize) {
    let mut scales = BTreeMap::new();
    let mut naive = 0;
    for ((_, key, column), t) in test.iter().filter(|(k, _)| k.0 == Method::Model) {
        let s = usage[key].column(column).expect("model tracks exist only for known columns");
        let tested: HashSet<i64> =
            t.origins.iter().flat_map(|&o| (1..=horizon as i64).map(move |h| o + h * step)).collect();
        let in_sample = |lag: i64| {
            let tested = &tested;
            move |i: usize| {
                let t = s.times[i];
                if tested.contains(&t) { None } else { s.at(t - lag) }
            }
        };
        let scale = metrics::seasonal_scale(&s.values, in_sample(season_ms));
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            naive += 1;
            metrics::seasonal_scale(&s.values, in_sample(step))
        };
        scales.insert((key.clone(), column.clone()), scale);
    }
    (scales, naive)
}

/// One row of `scores`. Its names are shared, not copied: a large backtest has millions of
/// rows.
pub struct Score {
    pub part: &'static str,
    pub method: Arc<str>,
    pub resource: Arc<str>,
    /// `series`, `mean` or `median` (of the per-series values).
    pub scope: &'static str,
    /// The series for `series` rows; empty for aggregates.
    pub key: Arc<str>,
    /// `all` (every step), a horizon bucket (`1h`, `6h`, `1d`, `more`), or empty for the
    /// rows of one step.
    pub bucket: &'static str,
    /// 1-based horizon step; 0 for all the steps of the bucket.
    pub step: u32,
    pub metric: Arc<str>,
    pub value: f64,
}

/// Every metric of one track over the origins and the steps `steps` (0-based), on the
/// points with an actual value (filled-in points have none).
fn measure(t: &Track, scale: f64, levels: &[f64], steps: Range<usize>) -> Vec<(String, f64)> {
    let (mut last, mut actual, mut forecast) = (Vec::new(), Vec::new(), Vec::new());
    let mut qs: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
    for n in 0..t.origins.len() {
        let (actuals, forecasts) = (t.actual(n), t.forecast(n));
        for h in steps.clone().filter(|&h| actuals[h].is_finite()) {
            last.push(t.last[n]);
            actual.push(actuals[h]);
            forecast.push(forecasts[h]);
            for (l, q) in qs.iter_mut().enumerate() {
                q.extend(t.quantile(n, h, l));
            }
        }
    }
    let mae = metrics::mae(&actual, &forecast);
    let (precision, recall, f1) = metrics::direction(&last, &actual, &forecast);
    let mut out = vec![
        ("mae".to_string(), mae),
        ("rmse".into(), metrics::rmse(&actual, &forecast)),
        ("mape".into(), metrics::mape(&actual, &forecast)),
        ("smape".into(), metrics::smape(&actual, &forecast)),
        ("mase".into(), if scale > 0.0 { mae / scale } else { f64::NAN }),
        ("direction_precision".into(), precision),
        ("direction_recall".into(), recall),
        ("direction_f1".into(), f1),
    ];
    if qs.first().is_some_and(|q| !q.is_empty() && q.iter().all(|v| v.is_finite())) {
        let pinball = metrics::mean(levels.iter().zip(&qs).map(|(l, q)| metrics::pinball(&actual, q, *l)));
        out.push(("pinball".into(), pinball));
        for (l, q) in levels.iter().zip(&qs) {
            out.push((format!("coverage_{}", level_name(*l)), metrics::coverage(&actual, q)));
        }
    }
    out
}

/// (resource, bucket, step, metric) → the values of every series.
type Across = BTreeMap<(Arc<str>, &'static str, u32, Arc<str>), Vec<f64>>;

/// One part's rows, a group of series at a time: per series over all steps and per bucket
/// as each group comes; the mean and median across series of those, and of each step, once
/// every group is in.
pub struct Scorer {
    part: &'static str,
    methods: Vec<Method>,
    levels: Vec<f64>,
    /// All steps, each bucket, then each step: (bucket, 1-based step or 0, 0-based steps).
    ranges: Vec<(&'static str, u32, Range<usize>)>,
    names: BTreeMap<String, Arc<str>>,
    /// Per method: its per-series rows and what is aggregated across series.
    rows: Vec<Vec<Score>>,
    across: Vec<Across>,
}

impl Scorer {
    pub fn new(part: &'static str, methods: &[Method], levels: &[f64], horizon: usize, step_ms: i64) -> Scorer {
        let ranges = std::iter::once(("all", 0, 0..horizon))
            .chain(buckets(horizon, step_ms).into_iter().map(|(b, r)| (b, 0, r)))
            .chain((0..horizon).map(|h| ("", h as u32 + 1, h..h + 1)))
            .collect();
        Scorer {
            part,
            methods: methods.to_vec(),
            levels: levels.to_vec(),
            ranges,
            names: BTreeMap::new(),
            rows: methods.iter().map(|_| Vec::new()).collect(),
            across: methods.iter().map(|_| Across::new()).collect(),
        }
    }

    /// Scores a group of series' tracks (of the methods scored; groups in key order).
    pub fn add(&mut self, tracks: &Tracks, scales: &BTreeMap<(String, String), f64>) {
        let Scorer { part, methods, levels, ranges, names, rows, across } = self;
        for ((m, rows), across) in methods.iter().zip(rows).zip(across) {
            let method = name(names, m.name());
            for ((_, key, column), t) in tracks.iter().filter(|((mm, _, _), _)| mm == m) {
                let scale = scales.get(&(key.clone(), column.clone())).copied().unwrap_or(f64::NAN);
                let (key, resource) = (name(names, key), name(names, column));
                for (bucket, step, steps) in ranges.iter() {
                    for (metric, value) in measure(t, scale, levels, steps.clone()) {
                        let metric = name(names, &metric);
                        across.entry((resource.clone(), bucket, *step, metric.clone())).or_default().push(value);
                        // One step of one series is noise: per-series rows are kept per bucket.
                        if *step == 0 {
                            let (method, resource, key) = (method.clone(), resource.clone(), key.clone());
                            let (part, bucket) = (*part, *bucket);
                            let row =
                                Score { part, method, resource, scope: "series", key, bucket, step: 0, metric, value };
                            rows.push(row);
                        }
                    }
                }
            }
        }
    }

    /// Every row: per method, its per-series rows, then the mean and median across series.
    pub fn finish(self) -> Vec<Score> {
        let Scorer { part, methods, mut names, rows, across, .. } = self;
        let empty = name(&mut names, "");
        let mut out = Vec::new();
        for ((m, rows), across) in methods.iter().zip(rows).zip(across) {
            out.extend(rows);
            out.extend(across_series(part, &name(&mut names, m.name()), &empty, across));
        }
        out
    }
}

/// `s` as the name every row that has it shares.
fn name(names: &mut BTreeMap<String, Arc<str>>, s: &str) -> Arc<str> {
    names.entry(s.to_string()).or_insert_with(|| s.into()).clone()
}

/// The mean and median across series of each (resource, bucket, step, metric): rows with no key.
fn across_series<'a>(
    part: &'static str,
    method: &'a Arc<str>,
    no_key: &'a Arc<str>,
    across: Across,
) -> impl Iterator<Item = Score> + 'a {
    across.into_iter().flat_map(move |((resource, bucket, step, metric), values)| {
        let mean = metrics::mean(values.iter().copied().filter(|v| v.is_finite()));
        let median = metrics::median(values.into_iter());
        [("mean", mean), ("median", median)].map(|(scope, value)| Score {
            part,
            method: method.clone(),
            resource: resource.clone(),
            scope,
            key: no_key.clone(),
            bucket,
            step,
            metric: metric.clone(),
            value,
        })
    })
}

pub fn scores_table(rows: &[Score]) -> Result<(SchemaRef, RecordBatch), BoxError> {
    TableBuilder::default()
        .strings(scores::PART, rows.iter().map(|r| r.part))
        .strings(scores::METHOD, rows.iter().map(|r| &*r.method))
        .strings(scores::RESOURCE, rows.iter().map(|r| &*r.resource))
        .strings(scores::SCOPE, rows.iter().map(|r| r.scope))
        .strings(scores::KEY, rows.iter().map(|r| &*r.key))
        .strings(scores::BUCKET, rows.iter().map(|r| r.bucket))
        .u32s(scores::STEP, rows.iter().map(|r| r.step).collect())
        .strings(scores::METRIC, rows.iter().map(|r| &*r.metric))
        .floats(scores::VALUE, rows.iter().map(|r| r.value).collect())
        .finish()
}

/// `choices`: per series and target, the method `auto` forecasts with and each
/// forecaster's validation MASE.
pub fn choices_table(
    choice: &BTreeMap<(String, String), (Method, Vec<f64>)>,
    scales: &BTreeMap<(String, String), f64>,
) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let (mut key, mut resource, mut method) = (Vec::new(), Vec::new(), Vec::new());
    let mut mase: Vec<Vec<f64>> = vec![Vec::new(); Method::FORECASTERS.len()];
    for ((k, c), (m, maes)) in choice {
        let scale = scales.get(&(k.clone(), c.clone())).copied().unwrap_or(f64::NAN);
        key.push(k.clone());
        resource.push(c.clone());
        method.push(m.name().to_string());
        for (out, mae) in mase.iter_mut().zip(maes) {
            out.push(mae / scale);
        }
    }
    let mut t = TableBuilder::default()
        .strings(choices::KEY, key)
        .strings(choices::RESOURCE, resource)
        .strings(choices::METHOD, method);
    for (m, values) in Method::FORECASTERS.iter().zip(mase) {
        t = t.floats(&format!("{}{}", choices::VALIDATION_MASE_PREFIX, m.name()), values);
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::buckets;

    #[test]
    fn buckets_cut_the_horizon_by_lead_time() {
        // 5-minute steps, a day ahead: 12 steps to 1 h, 60 more to 6 h, 216 more to 1 d.
        assert_eq!(buckets(288, 300_000), vec![("1h", 0..12), ("6h", 12..72), ("1d", 72..288)]);
        // An hour at 5 minutes is one bucket; a minute grid over 2 h reaches the second.
        assert_eq!(buckets(12, 300_000), vec![("1h", 0..12)]);
        assert_eq!(buckets(90, 60_000), vec![("1h", 0..60), ("6h", 60..90)]);
    }
}
