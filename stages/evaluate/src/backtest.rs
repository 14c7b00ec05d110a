//! `evaluate.backtest`: the trained model, the baselines and the recommenders forecast from
//! the same origins of the test part; every forecast is kept beside what happened, and
//! scored per series, in aggregate and per horizon step.

use std::collections::BTreeMap;
use std::path::Path;

use crate::table::Usage;
use applearner_contracts::tables::{forecasts, scores};
use applearner_contracts::{Part, WindowSet};
use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::arrow::datatypes::SchemaRef;
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{BoxError, Duration, Output, ParamProblem, Stage, StageContext, StageParams, Summary};
use applearner_train::card::Scaler;
use applearner_train::card::{CARD_FILE, Saved, WEIGHTS_FILE, read_scalers};
use applearner_train::device::Device;
use applearner_train::device::DeviceName;

use crate::EvaluateError;
use applearner_train::predict::{forecast_windows, predict};
use serde::{Deserialize, Serialize};

use crate::baselines::{HoltWinters, Series, moving_average, seasonal_naive};
use crate::metrics;
use crate::recommend::{KrrSettings, Vpa, VpaSettings, krr};
use crate::table::{TableBuilder, read_usage};
use applearner_pipeline::columns::{floats, ints, strings};

/// Rolling-origin backtest over the test part. Reads the model (`model.mpk`, `card.json`),
/// `features`, `windows`, `scalers` and the clean usage (`resampled`). Writes `forecasts`
/// (per method, series, target, origin and step: the actual value, the forecast and the
/// model's quantiles; origin-at-the-end rows with no actual are the forward forecast
/// plans are made from) and `scores` (per method, target and metric: per series, their
/// mean and median, over all steps (step 0) and per step).
///
/// Methods: `model`; `last_value`; `seasonal_naive` (falls back to the last value where the
/// history holds nothing a season back); `moving_average`; `holt_winters` (additive, fitted
/// on the history before the first origin; no season where that history spans less than
/// two); `vpa` and `krr` (their recommendation at the origin, as a flat forecast).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestParams {
    /// Steps between origins; default: the model's horizon, so forecasts tile the test part.
    #[serde(default)]
    pub stride: Option<usize>,
    /// Keep at most this many origins per series, the latest (0: all).
    #[serde(default)]
    pub max_origins: usize,
    /// The season of seasonal naive, Holt-Winters and the MASE scale.
    #[serde(default = "default_season")]
    pub season: Duration,
    /// The window of the moving average.
    #[serde(default = "default_window")]
    pub moving_average: Duration,
    /// Where the model runs: `cpu`, `cuda`, `cuda:N` or `auto`; checked where the stage runs.
    #[serde(default = "default_device")]
    pub device: DeviceName,
}

fn default_season() -> Duration {
    "1d".parse().expect("a valid default")
}

fn default_window() -> Duration {
    "30m".parse().expect("a valid default")
}

fn default_device() -> DeviceName {
    DeviceName::Cpu
}

pub const METHODS: [&str; 7] =
    ["model", "last_value", "seasonal_naive", "moving_average", "holt_winters", "vpa", "krr"];

impl StageParams for BacktestParams {
    const KIND: &'static str = "evaluate.backtest";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        if self.stride == Some(0) {
            return Err(vec![ParamProblem::new(
                &["stride"],
                "must be at least 1",
                "leave it out to tile the test part",
            )]);
        }
        Ok(Box::new(Backtest { params: self }))
    }
}

struct Backtest {
    params: BacktestParams,
}

/// Forecasts of one method for one series and target, origin by origin.
#[derive(Default)]
struct Track {
    origins: Vec<i64>,
    /// Per origin: the last observed value, then `horizon` actuals and forecasts.
    last: Vec<f64>,
    actual: Vec<Vec<f64>>,
    forecast: Vec<Vec<f64>>,
    /// Per origin and step, per quantile level.
    quantiles: Vec<Vec<Vec<f64>>>,
}

impl Stage for Backtest {
    fn reads(&self) -> Vec<String> {
        ["features", "windows", "scalers", "resampled", WEIGHTS_FILE, CARD_FILE].map(String::from).to_vec()
    }

    fn writes(&self) -> Vec<Output> {
        vec![Output::table("forecasts"), Output::table("scores")]
    }

    fn host_warnings(&self) -> Vec<String> {
        self.params.device.host_warnings()
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let model_path = ctx.input(WEIGHTS_FILE)?.path.clone();
        let model_dir = Path::new(&model_path).parent().unwrap_or(Path::new(".")).to_path_buf();
        let saved =
            Saved::from_bytes(&model_dir, &ctx.read_artifact(CARD_FILE)?, ctx.read_artifact(WEIGHTS_FILE)?.to_vec())?;
        let card = &saved.card;
        let (horizon, step) = (card.blueprint.shape.horizon, card.step_ms);
        let targets = card.blueprint.targets.clone();
        let levels = card.blueprint.loss.quantile_levels();
        let features = ctx.read_table("features")?;
        let windows = WindowSet::new(&features, &ctx.read_table("windows")?, &card.blueprint.inputs, &targets)?;
        let scalers: BTreeMap<(String, String), _> = read_scalers(&ctx.read_table("scalers")?, &targets)?
            .into_iter()
            .map(|s| ((s.key.clone(), s.column.clone()), s))
            .collect();
        let usage = read_usage(&ctx.read_table("resampled")?)?;
        let device = self.params.device.resolve()?;

        let stride = self.params.stride.unwrap_or(horizon);
        let chosen = windows.every("test", stride, self.params.max_origins);
        if chosen.is_empty() {
            return Err(EvaluateError::NoTestWindows.into());
        }
        let model =
            ModelRun { dir: &model_dir, saved: &saved, windows: &windows, scalers: &scalers, usage: &usage, device };
        let mut tracks = model.tracks("test", &chosen)?;
        // The validation part's forecasts: what plans are calibrated on, never scored here.
        let calibration = model.tracks("validation", &windows.every("validation", stride, 0))?;

        let mut fallbacks = 0usize;
        let mut naive_scaled = 0usize;
        let mut scales: BTreeMap<(String, String), f64> = BTreeMap::new();
        let model_keys: Vec<(String, String)> = tracks.keys().map(|(_, k, c)| (k.clone(), c.clone())).collect();
        let bar = ctx.progress(model_keys.len() as u64, "baselines per series");
        for (key, column) in &model_keys {
            bar.inc(1);
            let series = &usage[key];
            let s = series.column(column).expect("model tracks exist only for known columns");
            let model = &tracks[&("model", key.clone(), column.clone())];
            let (origins, model_actuals) = (model.origins.clone(), model.actual.clone());
            let positions: Vec<usize> = origins.iter().map(|&o| s.position(o).expect("origins are observed")).collect();
            let first = positions[0];
            // The MASE scale, in sample: over every point outside the test part (of every
            // segment, so a season can reach back into an earlier day).
            let tested: std::collections::HashSet<i64> =
                origins.iter().flat_map(|&o| (1..=horizon as i64).map(move |h| o + h * step)).collect();
            let tested = &tested;
            let in_sample = |lag: i64| {
                move |i: usize| {
                    let t = s.times[i];
                    if tested.contains(&t) { None } else { s.at(t - lag) }
                }
            };
            let scale = metrics::seasonal_scale(&s.values, in_sample(self.params.season.ms()));
            let scale = if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                naive_scaled += 1;
                metrics::seasonal_scale(&s.values, in_sample(step))
            };
            scales.insert((key.clone(), column.clone()), scale);

            let hw = HoltWinters::fit(s, first, step, (self.params.season.ms() / step.max(1)) as usize);
            let hw_forecasts = hw.forecast(s, step, &positions, horizon);
            let window = (self.params.moving_average.ms() / step.max(1)).max(1) as usize;
            let samples = series.samples();
            let mut vpa = Vpa::new(VpaSettings::default());
            let mut fed = 0;
            for (n, (&origin, &pos)) in origins.iter().zip(&positions).enumerate() {
                let actual = model_actuals[n].clone();
                let last = s.values[pos];
                let times = (1..=horizon as i64).map(|h| origin + h * step);
                let seasonal: Vec<f64> = times
                    .map(|t| {
                        seasonal_naive(s, origin, t, self.params.season.ms()).unwrap_or_else(|| {
                            fallbacks += 1;
                            last
                        })
                    })
                    .collect();
                while fed < samples.len() && samples[fed].0 <= origin {
                    vpa.add(samples[fed].0, samples[fed].1, samples[fed].2);
                    fed += 1;
                }
                let pick = |r: Option<(f64, f64)>| r.map_or(f64::NAN, |(c, m)| if column == "cpu" { c } else { m });
                let flat = |v: f64| vec![v; horizon];
                let methods: [(&'static str, Vec<f64>); 6] = [
                    ("last_value", flat(last)),
                    ("seasonal_naive", seasonal),
                    ("moving_average", flat(moving_average(&s.values, pos, window))),
                    ("holt_winters", hw_forecasts[n].clone()),
                    ("vpa", flat(pick(vpa.target()))),
                    ("krr", flat(pick(krr(&KrrSettings::default(), &samples, origin)))),
                ];
                for (method, forecast) in methods {
                    let track = tracks.entry((method, key.clone(), column.clone())).or_default();
                    track.origins.push(origin);
                    track.last.push(last);
                    track.actual.push(actual.clone());
                    track.forecast.push(forecast);
                    track.quantiles.push(Vec::new());
                }
            }
        }

        bar.finish();
        let forward = predict(&model_dir, &saved, &features, Some(scalers.values().cloned().collect()), None, device)?;
        let (schema, batch) = forecasts_table(&tracks, &calibration, &levels, &forward, horizon, step)?;
        ctx.write_table("forecasts", schema, &[batch])?;
        let scores = score(&tracks, &scales, &levels, horizon);
        let model_mase: BTreeMap<String, f64> = targets
            .iter()
            .map(|c| {
                let v = scores.iter().find(|r| {
                    r.method == "model" && &r.resource == c && r.scope == "mean" && r.step == 0 && r.metric == "mase"
                });
                (c.clone(), v.map_or(f64::NAN, |r| r.value))
            })
            .collect();
        let (schema, batch) = scores_table(scores)?;
        ctx.write_table("scores", schema, &[batch])?;

        let mut summary = Summary::new();
        summary.insert("series".into(), model_keys.len().into());
        summary.insert("origins".into(), chosen.len().into());
        summary
            .insert("validation_origins".into(), calibration.values().map(|t| t.origins.len()).sum::<usize>().into());
        summary.insert("horizon_steps".into(), horizon.into());
        for (c, v) in model_mase {
            summary.insert(format!("model_mase_{c}"), ((v * 1e4).round() / 1e4).into());
        }
        summary.insert("mase_scaled_by_last_value".into(), naive_scaled.into());
        summary.insert("seasonal_naive_fell_back".into(), fallbacks.into());
        Ok(summary)
    }
}

/// The actual values `horizon` steps after `origin`, if every one was observed.
fn actuals(s: &Series, origin: i64, step: i64, horizon: usize) -> Option<Vec<f64>> {
    (1..=horizon as i64).map(|h| s.at(origin + h * step)).collect()
}

/// The trained model and what its forecasts are read against.
struct ModelRun<'a> {
    dir: &'a Path,
    saved: &'a Saved,
    windows: &'a WindowSet,
    scalers: &'a BTreeMap<(String, String), Scaler>,
    usage: &'a BTreeMap<String, Usage>,
    device: Device,
}

impl ModelRun<'_> {
    /// The model's forecasts from the windows `chosen` of `part`, per series and target,
    /// beside the actuals (origins whose horizon is not fully observed are left out).
    fn tracks(
        &self,
        part: &str,
        chosen: &[usize],
    ) -> Result<BTreeMap<(&'static str, String, String), Track>, BoxError> {
        let mut tracks = BTreeMap::new();
        if chosen.is_empty() {
            return Ok(tracks);
        }
        let card = &self.saved.card;
        let (horizon, step) = (card.blueprint.shape.horizon, card.step_ms);
        let (targets, nl) = (&card.blueprint.targets, card.blueprint.loss.quantile_levels().len());
        let (point, quantiles) = forecast_windows(self.dir, self.saved, self.windows, part, chosen, self.device)?;
        for (n, &w) in chosen.iter().enumerate() {
            let window = &self.windows.part(part)[w];
            let Some(series) = self.usage.get(&window.key) else { continue };
            for (j, column) in targets.iter().enumerate() {
                let (Some(s), Some(scaler)) =
                    (series.column(column), self.scalers.get(&(window.key.clone(), column.clone())))
                else {
                    continue;
                };
                let Some(actual) = actuals(s, window.origin_ms, step, horizon) else { continue };
                let track: &mut Track = tracks.entry(("model", window.key.clone(), column.clone())).or_default();
                track.origins.push(window.origin_ms);
                track.last.push(s.at(window.origin_ms).unwrap_or(f64::NAN));
                track.actual.push(actual);
                let cell = |h: usize| (n * horizon + h) * targets.len() + j;
                track.forecast.push((0..horizon).map(|h| scaler.unscale(point[cell(h)] as f64)).collect());
                track.quantiles.push(
                    (0..horizon)
                        .map(|h| (0..nl).map(|l| scaler.unscale(quantiles[cell(h) * nl + l] as f64)).collect())
                        .collect(),
                );
            }
        }
        Ok(tracks)
    }
}

fn level_name(level: f64) -> String {
    format!("p{}", (level * 100.0).round() as u32)
}

fn forecasts_table(
    tracks: &BTreeMap<(&str, String, String), Track>,
    calibration: &BTreeMap<(&str, String, String), Track>,
    levels: &[f64],
    forward: &RecordBatch,
    horizon: usize,
    step_ms: i64,
) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let (mut method, mut key, mut column, mut origin, mut step) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut time, mut actual, mut forecast, mut part) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut qs: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
    // The validation part's, then the test part's in the order of METHODS (model first).
    let parts = std::iter::once(("model", Part::Validation, calibration))
        .chain(METHODS.into_iter().map(|m| (m, Part::Test, tracks)));
    for (m, p, tracks) in parts {
        for ((_, k, c), t) in tracks.iter().filter(|((mm, _, _), _)| *mm == m) {
            for (n, &o) in t.origins.iter().enumerate() {
                for h in 0..horizon {
                    part.push(p.name().to_string());
                    method.push(m.to_string());
                    key.push(k.clone());
                    column.push(c.clone());
                    origin.push(o);
                    step.push(h as u32 + 1);
                    time.push(o + (h as i64 + 1) * step_ms);
                    actual.push(t.actual[n][h]);
                    forecast.push(t.forecast[n][h]);
                    for (l, q) in qs.iter_mut().enumerate() {
                        q.push(t.quantiles[n].get(h).map_or(f64::NAN, |v| v[l]));
                    }
                }
            }
        }
    }
    // The forward forecast: from the end of each series, nothing to compare with yet.
    let b = forward;
    let steps = ints(b, "forecast", "step")?;
    let times = ints(b, "forecast", "timestamp")?;
    let fq: Vec<Vec<f64>> = levels.iter().map(|l| floats(b, "forecast", &level_name(*l))).collect::<Result<_, _>>()?;
    key.extend(strings(b, "forecast", "key")?);
    column.extend(strings(b, "forecast", "column")?);
    forecast.extend(floats(b, "forecast", "forecast")?);
    for i in 0..b.num_rows() {
        part.push(forecasts::AHEAD.to_string());
        method.push("model".into());
        origin.push(times[i] - steps[i] * step_ms);
        step.push(steps[i] as u32);
        time.push(times[i]);
        actual.push(f64::NAN);
        for (l, q) in qs.iter_mut().enumerate() {
            q.push(fq[l][i]);
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
    t.finish()
}

/// One row of `scores`.
struct Score {
    method: String,
    resource: String,
    /// `series`, `mean` or `median` (of the per-series values).
    scope: &'static str,
    /// The series for `series` rows; empty for aggregates.
    key: String,
    /// 1-based horizon step; 0 for all steps together.
    step: u32,
    metric: String,
    value: f64,
}

/// Every metric of one track over the origins and the steps `steps` (0-based).
fn measure(t: &Track, scale: f64, levels: &[f64], steps: &[usize]) -> Vec<(String, f64)> {
    let (mut last, mut actual, mut forecast) = (Vec::new(), Vec::new(), Vec::new());
    let mut qs: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
    for n in 0..t.origins.len() {
        for &h in steps {
            last.push(t.last[n]);
            actual.push(t.actual[n][h]);
            forecast.push(t.forecast[n][h]);
            if let Some(q) = t.quantiles[n].get(h) {
                for (l, v) in qs.iter_mut().zip(q) {
                    l.push(*v);
                }
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
    if qs.first().is_some_and(|q| !q.is_empty()) {
        let pinball = metrics::mean(levels.iter().zip(&qs).map(|(l, q)| metrics::pinball(&actual, q, *l)));
        out.push(("pinball".into(), pinball));
        for (l, q) in levels.iter().zip(&qs) {
            out.push((format!("coverage_{}", level_name(*l)), metrics::coverage(&actual, q)));
        }
    }
    out
}

/// Per series, then mean and median across series, over all steps and per step.
fn score(
    tracks: &BTreeMap<(&str, String, String), Track>,
    scales: &BTreeMap<(String, String), f64>,
    levels: &[f64],
    horizon: usize,
) -> Vec<Score> {
    let mut rows = Vec::new();
    for m in METHODS {
        // (column, step, metric) → per-series values
        let mut across: BTreeMap<(String, u32, String), Vec<f64>> = BTreeMap::new();
        for ((_, key, column), t) in tracks.iter().filter(|((mm, _, _), _)| *mm == m) {
            let scale = scales.get(&(key.clone(), column.clone())).copied().unwrap_or(f64::NAN);
            let all: Vec<usize> = (0..horizon).collect();
            for step in 0..=horizon {
                let steps = if step == 0 { all.clone() } else { vec![step - 1] };
                for (metric, value) in measure(t, scale, levels, &steps) {
                    across.entry((column.clone(), step as u32, metric.clone())).or_default().push(value);
                    rows.push(Score {
                        method: m.into(),
                        resource: column.clone(),
                        scope: "series",
                        key: key.clone(),
                        step: step as u32,
                        metric,
                        value,
                    });
                }
            }
        }
        for ((column, step, metric), values) in across {
            let mean = metrics::mean(values.iter().copied().filter(|v| v.is_finite()));
            let median = metrics::median(values.into_iter());
            for (scope, value) in [("mean", mean), ("median", median)] {
                rows.push(Score {
                    method: m.into(),
                    resource: column.clone(),
                    scope,
                    key: String::new(),
                    step,
                    metric: metric.clone(),
                    value,
                });
            }
        }
    }
    rows
}

fn scores_table(rows: Vec<Score>) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let mut b = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        b.0.push(r.method);
        b.1.push(r.resource);
        b.2.push(r.scope.to_string());
        b.3.push(r.key);
        b.4.push(r.step);
        b.5.push(r.metric);
        b.6.push(r.value);
    }
    TableBuilder::default()
        .strings(scores::METHOD, b.0)
        .strings(scores::RESOURCE, b.1)
        .strings(scores::SCOPE, b.2)
        .strings(scores::KEY, b.3)
        .u32s(scores::STEP, b.4)
        .strings(scores::METRIC, b.5)
        .floats(scores::VALUE, b.6)
        .finish()
}
