//! `evaluate.backtest`: the trained model, the baselines and the recommenders forecast from
//! the same origins of the validation and test parts; every forecast is kept beside what
//! happened, and scored per series, in aggregate, per horizon bucket and per step. The
//! validation part chooses each series' method (`auto`) and calibrates every forecaster's
//! quantiles; the test part judges them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use applearner_contracts::tables::{choices, features, forecasts, resampled, scalers, scores, windows};
use applearner_contracts::{Method, Part, Resource, WindowSet};
use applearner_pipeline::arrow::array::AsArray;
use applearner_pipeline::arrow::array::RecordBatch;
use applearner_pipeline::arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use applearner_pipeline::context::TableWriter;
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{BoxError, Duration, Output, ParamProblem, Stage, StageContext, StageParams, Summary};
use applearner_train::card::Scaler;
use applearner_train::card::{CARD_FILE, Saved, WEIGHTS_FILE, read_scalers};
use applearner_train::device::Device;
use applearner_train::device::DeviceName;

use crate::EvaluateError;
use applearner_train::predict::{forecast_windows, predict};
use serde::{Deserialize, Serialize};

use crate::baselines::Baselines;
use crate::forecasts::{forecasts_schema, level_name, write_forecasts};
use crate::groups::{Group, Groups};
use crate::scoring::{buckets, choices_table, mase_scale, scores_table};
use crate::tally::{Choices, Tally};
use crate::{blend, conformal, fallback, metrics};
use applearner_pipeline::columns::{floats, ints, strings};
use applearner_plan::series::Series;
use applearner_plan::table::Usage;

/// Rolling-origin backtest over the validation and test parts. Reads the model
/// (`model.mpk`, `card.json`), `features`, `windows`, `scalers` and the clean usage
/// (`resampled`). Writes `forecasts` (per part, method, series, target, origin and step: the
/// actual value, the forecast and its quantiles; `ahead` rows, from the end of each series
/// with no actual, are the forward forecast plans are made from), `scores` (per part,
/// method, target and metric: per series and their mean and median, over all steps, per
/// horizon bucket — up to 1 h, 6 h, 1 d ahead, beyond — and, for the mean and median, per
/// step) and `choices` (per series and target: the method `auto` uses, and every
/// forecaster's validation MASE).
///
/// Methods: `auto` (per series and target, the forecaster below with the lowest validation
/// error); `model`; `last_value`; `seasonal_naive` (falls back to the last value where the
/// history holds nothing a season back); `moving_average`; `holt_winters` (additive, fitted
/// per segment on its history before each part; no season where that history spans less
/// than two); `vpa` and `krr` (their recommendation at the origin, as a flat forecast).
/// Every forecaster's quantiles are conformal: its own quantile (the model's) or its point
/// forecast, plus the residual quantile of its validation forecasts, per series, level and
/// horizon bucket. Points clean.resample filled in are never scored as actuals.
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
    /// Forecasts made elsewhere (a Parquet file of `key, resource, origin, step, method,
    /// forecast`, such as `benches/statsforecast_reference.py` writes) scored on the test
    /// part beside ours, with the same metric code, scales and origins; origins it lacks
    /// leave that series unscored for it.
    #[serde(default)]
    pub external: Option<String>,
    /// Where the model runs: `cpu`, `cuda`, `cuda:N` or `auto`; checked where the stage runs.
    #[serde(default = "default_device")]
    pub device: DeviceName,
    /// The model is due for retraining when its mean MASE on the test part (in a refresh:
    /// the data since the split's `test_from`) is more than this fraction worse than the
    /// best baseline's: the summary says `retrain: true` and why, for a scheduler to act on.
    /// Per series, where `auto` took the model and the model has since trailed a baseline
    /// by more than this (over the test forecasts ended by each origin), `auto` takes that
    /// baseline meanwhile.
    #[serde(default = "default_degradation")]
    pub degradation: f64,
    /// The backtest runs a group of whole series at a time, of about this many validation
    /// and test windows: its memory grows with the group, not with the data. The forecasts
    /// and scores are the same whatever the grouping.
    #[serde(default = "default_windows_per_group")]
    pub windows_per_group: usize,
}

fn default_windows_per_group() -> usize {
    500_000
}

fn default_degradation() -> f64 {
    0.1
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

impl StageParams for BacktestParams {
    const KIND: &'static str = "evaluate.backtest";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        if !(self.degradation.is_finite() && self.degradation >= 0.0) {
            return Err(vec![ParamProblem::new(&["degradation"], "must be a fraction ≥ 0", "e.g. 0.1 for 10 %")]);
        }
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

/// Forecasts of one method for one series and target, origin by origin, each of
/// `horizon` steps.
#[derive(Debug, Clone)]
pub struct Track {
    pub origins: Vec<i64>,
    pub horizon: usize,
    /// Per origin: the last observed value.
    pub last: Vec<f64>,
    /// Per origin and step (`[origin][step]` flat): what happened (`NaN` where filled in or
    /// not yet known); one copy shared by every method's track of the series and part.
    pub actual: Arc<Vec<f64>>,
    /// Per origin and step, flat as `actual`.
    pub forecast: Vec<f64>,
    /// Per origin, step and quantile level (`[origin][step][level]` flat); empty without
    /// them.
    pub quantiles: Vec<f64>,
}

impl Track {
    pub fn new(horizon: usize) -> Track {
        Track {
            origins: Vec::new(),
            horizon,
            last: Vec::new(),
            actual: Arc::default(),
            forecast: Vec::new(),
            quantiles: Vec::new(),
        }
    }

    /// What happened in the steps after origin `n`.
    pub fn actual(&self, n: usize) -> &[f64] {
        &self.actual[n * self.horizon..(n + 1) * self.horizon]
    }

    /// The forecast from origin `n`.
    pub fn forecast(&self, n: usize) -> &[f64] {
        &self.forecast[n * self.horizon..(n + 1) * self.horizon]
    }

    /// Mean absolute error over the steps with both an actual and a forecast (`NaN` with
    /// none): what `auto` and `blend` choose by on validation.
    pub fn mae(&self) -> f64 {
        let both = self.actual.iter().zip(&self.forecast).filter(|(a, f)| a.is_finite() && f.is_finite());
        metrics::mean(both.map(|(a, f)| (a - f).abs()))
    }

    /// Quantile `l` of step `h` from origin `n`, if the track has quantiles.
    pub fn quantile(&self, n: usize, h: usize, l: usize) -> Option<f64> {
        let levels = self.quantiles.len() / self.forecast.len().max(1);
        (l < levels).then(|| self.quantiles[(n * self.horizon + h) * levels + l])
    }
}

/// (method, series, target) → its track.
pub type Tracks = BTreeMap<(Method, String, String), Track>;

/// The parts forecasts are written for, in order: validation and test from windows, ahead
/// from the end of each series.
pub(crate) const PARTS: [&str; 3] = [Part::Validation.name(), Part::Test.name(), forecasts::AHEAD];

impl Stage for Backtest {
    fn reads(&self) -> Vec<String> {
        [features::NAME, windows::NAME, scalers::NAME, resampled::NAME, WEIGHTS_FILE, CARD_FILE]
            .map(String::from)
            .to_vec()
    }

    fn writes(&self) -> Vec<Output> {
        vec![Output::table(forecasts::NAME), Output::table(scores::NAME), Output::table(choices::NAME)]
    }

    fn host_warnings(&self) -> Vec<String> {
        self.params.device.host_warnings()
    }

    /// The external forecasts are an input too.
    fn fingerprint(&self, _store: &applearner_pipeline::Store, hasher: &mut blake3::Hasher) -> Result<(), BoxError> {
        if let Some(path) = &self.params.external {
            hasher.update(&read_external(path)?);
        }
        Ok(())
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let model_path = ctx.input(WEIGHTS_FILE)?.path.clone();
        let model_dir = Path::new(&model_path).parent().unwrap_or(Path::new(".")).to_path_buf();
        let saved =
            Saved::from_bytes(&model_dir, &ctx.read_artifact(CARD_FILE)?, ctx.read_artifact(WEIGHTS_FILE)?.to_vec())?;
        let card = &saved.card;
        let (targets, levels, step) = (&card.blueprint.targets, card.blueprint.loss.quantile_levels(), card.step_ms);
        let scalers: BTreeMap<(String, String), _> = read_scalers(&ctx.read_table(scalers::NAME)?, targets)?
            .into_iter()
            .map(|s| ((s.key.clone(), s.column.clone()), s))
            .collect();
        let device = self.params.device.resolve()?;
        let model = ModelRun { dir: &model_dir, saved: &saved, scalers: &scalers, device };
        let external = self.params.external.as_deref().map(external_forecasts).transpose()?;

        // The forecast ahead, from each series' last rows, in one pass over every series: the
        // last bits of a forward pass can depend on how many series it holds.
        let features = ctx.table_batches(features::NAME, None, &[])?;
        let forward = predict(&model_dir, &saved, features, Some(scalers.values().cloned().collect()), None, device)?;

        let columns = (card.blueprint.inputs.as_slice(), targets.as_slice());
        let groups = Groups::open(ctx, columns, forward, self.params.windows_per_group)?;
        let mut writer = ctx.table_writer(forecasts::NAME, forecasts_schema(&levels, step)?)?;
        let tally = self.each_group(ctx, &model, groups, &mut writer, external.as_ref())?;
        if tally.test_origins == 0 {
            return Err(EvaluateError::NoTestWindows.into());
        }
        if tally.validation_origins == 0 {
            return Err(EvaluateError::NoValidationWindows.into());
        }
        writer.finish()?;
        let (schema, batch) = choices_table(&tally.choice, &tally.scales)?;
        let (rows, summary) = tally.finish(targets, self.params.degradation);
        let (scores_schema, scores) = scores_table(&rows)?;
        ctx.write_table(scores::NAME, scores_schema, &[scores])?;
        ctx.write_table(choices::NAME, schema, &[batch])?;
        Ok(summary)
    }
}

impl Backtest {
    /// Backtests each group of series: its forecasts written, its scores and counts added up.
    fn each_group(
        &self,
        ctx: &StageContext,
        model: &ModelRun,
        mut groups: Groups,
        writer: &mut TableWriter,
        external: Option<&External>,
    ) -> Result<Tally, BoxError> {
        let card = &model.saved.card;
        let (horizon, step) = (card.blueprint.shape.horizon, card.step_ms);
        let levels = card.blueprint.loss.quantile_levels();
        let mut tally = Tally::new(&levels, horizon, step);
        let bar = ctx.progress(groups.len() as u64, "groups of series backtested");
        while let Some(group) = groups.next()? {
            let mut parts = self.forecast(model, &group, &mut tally)?;
            let (choice, fell_back) = self.decide(&mut parts, &levels, horizon, step);
            write_forecasts(writer, &parts, &levels, step)?;
            tally.score(&parts, external.map(|e| external_tracks(e, &parts[1])).unwrap_or_default());
            tally.fell_back(&fell_back);
            tally.choice.extend(choice);
            bar.inc(1);
        }
        bar.finish();
        Ok(tally)
    }

    /// One group's tracks of every method and part, from the model and every baseline (ahead:
    /// from the model's forward forecast), with its series' MASE scales and counts added to
    /// `tally`.
    fn forecast(&self, model: &ModelRun, group: &Group, tally: &mut Tally) -> Result<[Tracks; 3], BoxError> {
        let card = &model.saved.card;
        let (horizon, step) = (card.blueprint.shape.horizon, card.step_ms);
        let windows = &group.windows;
        let stride = self.params.stride.unwrap_or(horizon);
        let chosen = windows.every(Part::Test, stride, self.params.max_origins);
        let validation_windows = windows.every(Part::Validation, stride, 0);
        let levels = card.blueprint.loss.quantile_levels();
        let usage = &group.usage;
        let mut parts: [Tracks; 3] = [
            model.tracks(windows, usage, Part::Validation, &validation_windows)?,
            model.tracks(windows, usage, Part::Test, &chosen)?,
            ahead(&group.forward, usage, &levels, (horizon, step))?,
        ];
        let implausible = applearner_plan::units::implausible(usage);
        tally.fallbacks += self.add_baselines(&mut parts, usage, &implausible, step, horizon);
        let (scales, naive_scaled) = mase_scale(&parts[1], usage, step, horizon, self.params.season.ms());
        tally.scales.extend(scales);
        tally.implausible.extend(implausible);
        tally.naive_scaled += naive_scaled;
        tally.test_origins += chosen.len();
        Ok(parts)
    }

    /// Every baseline's and recommender's tracks beside the model's, in each part; returns
    /// how often seasonal naive fell back to the last value.
    fn add_baselines(
        &self,
        parts: &mut [Tracks; 3],
        usage: &BTreeMap<String, Usage>,
        implausible: &BTreeSet<(String, Resource)>,
        step: i64,
        horizon: usize,
    ) -> usize {
        let window = (self.params.moving_average.ms() / step.max(1)).max(1) as usize;
        let baselines = Baselines { usage, implausible, step, horizon, season_ms: self.params.season.ms(), window };
        let [validation, test, ahead] = parts;
        baselines.add(validation, None) + baselines.add(test, None) + baselines.add(ahead, Some(test))
    }

    /// What the validation part decides for a group, applied to every part: `blend`, the
    /// conformal quantiles, `auto`'s choice and where it falls back (in the test part and
    /// ahead).
    fn decide(
        &self,
        parts: &mut [Tracks; 3],
        levels: &[f64],
        horizon: usize,
        step: i64,
    ) -> (Choices, [fallback::Switches; 2]) {
        let blends = blend::fit(&parts[0]);
        for tracks in parts.iter_mut() {
            blend::add(tracks, &blends);
        }
        let bucket_ranges: Vec<_> = buckets(horizon, step).into_iter().map(|(_, r)| r).collect();
        let adjustments = conformal::fit(&parts[0], levels, &bucket_ranges);
        let choice = conformal::choose(&parts[0]);
        for tracks in parts.iter_mut() {
            conformal::apply(tracks, &adjustments, levels, &bucket_ranges);
            conformal::add_auto(tracks, &choice);
        }
        // Where the model has trailed a baseline since the test part began, `auto` falls back.
        let on_model: Vec<(String, String)> =
            choice.iter().filter(|(_, c)| c.0 == Method::Model).map(|(k, _)| k.clone()).collect();
        let (span, degradation) = (horizon as i64 * step, self.params.degradation);
        let fell_back = [1, 2].map(|p| fallback::switches(&parts[1], &parts[p], on_model.iter(), span, degradation));
        for (p, switches) in [1, 2].into_iter().zip(&fell_back) {
            fallback::apply(&mut parts[p], switches);
        }
        (choice, fell_back)
    }
}

/// The actual values `horizon` steps after `origin` (`NaN` where filled in), if every
/// step is on the grid.
fn actuals(s: &Series, origin: i64, step: i64, horizon: usize) -> Option<Vec<f64>> {
    (1..=horizon as i64).map(|h| s.actual(origin + h * step)).collect()
}

/// The model's forward forecast (from `predict`, `horizon` steps) as one-origin tracks with
/// no actuals.
fn ahead(
    forward: &[RecordBatch],
    usage: &BTreeMap<String, Usage>,
    levels: &[f64],
    (horizon, step_ms): (usize, i64),
) -> Result<Tracks, BoxError> {
    let mut tracks = Tracks::new();
    for b in forward {
        let (keys, columns) = (strings(b, "forecast", "key")?, strings(b, "forecast", "column")?);
        let (steps, times, point) =
            (ints(b, "forecast", "step")?, ints(b, "forecast", "timestamp")?, floats(b, "forecast", "forecast")?);
        let qs: Vec<Vec<f64>> =
            levels.iter().map(|l| floats(b, "forecast", &level_name(*l))).collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            let Some(s) = usage.get(&keys[i]).and_then(|u| u.column(&columns[i])) else { continue };
            let t = tracks
                .entry((Method::Model, keys[i].clone(), columns[i].clone()))
                .or_insert_with(|| Track::new(horizon));
            if steps[i] == 1 {
                let origin = times[i] - steps[i] * step_ms;
                t.origins.push(origin);
                t.last.push(s.at(origin).unwrap_or(f64::NAN));
            }
            Arc::make_mut(&mut t.actual).push(f64::NAN);
            t.forecast.push(point[i]);
            t.quantiles.extend(qs.iter().map(|q| q[i]));
        }
    }
    Ok(tracks)
}

fn read_external(path: &str) -> Result<Vec<u8>, EvaluateError> {
    std::fs::read(path).map_err(|error| EvaluateError::External { path: path.to_string(), error })
}

/// Forecasts made elsewhere: (method, series, target, origin) → (step, forecast) pairs.
type External = BTreeMap<(String, String, String, i64), Vec<(i64, f64)>>;

/// The forecasts in the file at `path`.
fn external_forecasts(path: &str) -> Result<External, BoxError> {
    let bytes = read_external(path)?;
    let mut forecasts = External::new();
    for b in applearner_pipeline::read_parquet(path, bytes.into())? {
        let (keys, resources, methods) =
            (strings(&b, path, "key")?, strings(&b, path, "resource")?, strings(&b, path, "method")?);
        // Any timestamp unit (DuckDB and pandas write microseconds or nanoseconds) as ms.
        let ms = applearner_pipeline::columns::column(
            &b,
            path,
            "origin",
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        let origins: Vec<i64> = ms.as_primitive::<TimestampMillisecondType>().values().to_vec();
        let (steps, values) = (ints(&b, path, "step")?, floats(&b, path, "forecast")?);
        for i in 0..b.num_rows() {
            let at = (methods[i].clone(), keys[i].clone(), resources[i].clone(), origins[i]);
            forecasts.entry(at).or_default().push((steps[i], values[i]));
        }
    }
    Ok(forecasts)
}

/// Per method of the external forecasts: those from the model's test origins, as tracks
/// keyed as the model's, whose origins they share (the rows are renamed when scored).
fn external_tracks(forecasts: &External, test: &Tracks) -> BTreeMap<String, Tracks> {
    let mut out: BTreeMap<String, Tracks> = forecasts.keys().map(|k| (k.0.clone(), Tracks::new())).collect();
    for (method, tracks) in &mut out {
        for ((_, key, column), t) in test.iter().filter(|(k, _)| k.0 == Method::Model) {
            let mut e = Track::new(t.horizon);
            let mut actual = Vec::new();
            for n in 0..t.origins.len() {
                let Some(mut f) = forecasts.get(&(method.clone(), key.clone(), column.clone(), t.origins[n])).cloned()
                else {
                    continue;
                };
                f.sort_by_key(|s| s.0);
                if f.len() != t.horizon {
                    continue;
                }
                e.origins.push(t.origins[n]);
                e.last.push(t.last[n]);
                actual.extend_from_slice(t.actual(n));
                e.forecast.extend(f.into_iter().map(|s| s.1));
            }
            e.actual = Arc::new(actual);
            if !e.origins.is_empty() {
                tracks.insert((Method::Model, key.clone(), column.clone()), e);
            }
        }
    }
    out
}

/// The trained model and what its forecasts are unscaled by.
struct ModelRun<'a> {
    dir: &'a Path,
    saved: &'a Saved,
    scalers: &'a BTreeMap<(String, String), Scaler>,
    device: Device,
}

impl ModelRun<'_> {
    /// The model's forecasts from the windows `chosen` of `part`, per series and target,
    /// beside the actuals (origins whose horizon runs off the grid are left out).
    fn tracks(
        &self,
        windows: &WindowSet,
        usage: &BTreeMap<String, Usage>,
        part: Part,
        chosen: &[usize],
    ) -> Result<Tracks, BoxError> {
        let mut tracks = Tracks::new();
        if chosen.is_empty() {
            return Ok(tracks);
        }
        let card = &self.saved.card;
        let (horizon, step) = (card.blueprint.shape.horizon, card.step_ms);
        let (targets, nl) = (&card.blueprint.targets, card.blueprint.loss.quantile_levels().len());
        let (point, quantiles) = forecast_windows(self.dir, self.saved, windows, part, chosen, self.device)?;
        for (n, &w) in chosen.iter().enumerate() {
            let window = &windows.part(part)[w];
            let Some(series) = usage.get(&*window.key) else { continue };
            for (j, column) in targets.iter().enumerate() {
                let (Some(s), Some(scaler)) =
                    (series.column(column), self.scalers.get(&(window.key.to_string(), column.clone())))
                else {
                    continue;
                };
                let Some(actual) = actuals(s, window.origin_ms, step, horizon) else { continue };
                let track = tracks
                    .entry((Method::Model, window.key.to_string(), column.clone()))
                    .or_insert_with(|| Track::new(horizon));
                track.origins.push(window.origin_ms);
                track.last.push(s.at(window.origin_ms).unwrap_or(f64::NAN));
                Arc::make_mut(&mut track.actual).extend(actual);
                let cell = |h: usize| (n * horizon + h) * targets.len() + j;
                track.forecast.extend((0..horizon).map(|h| scaler.unscale(point[cell(h)] as f64)));
                track.quantiles.extend(
                    (0..horizon)
                        .flat_map(|h| (0..nl).map(move |l| (h, l)))
                        .map(|(h, l)| scaler.unscale(quantiles[cell(h) * nl + l] as f64)),
                );
            }
        }
        Ok(tracks)
    }
}
