//! The `train.fit` stage.

use std::collections::BTreeMap;
use std::sync::Arc;

use applearner_contracts::tables::{features, metrics, scalers, windows};
use applearner_contracts::{Candidate, Part, WindowSet, grid_step_ms, windows_per_part};
use applearner_pipeline::arrow::array::{Float64Array, RecordBatch, UInt32Array};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema};
use applearner_pipeline::{BoxError, Output, ParamProblem, Stage, StageContext, StageParams, Store, Summary};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::card::{CARD_FILE, Card, FORMAT, README_FILE, Saved, WEIGHTS_FILE, read_scalers};
use crate::covariates::{Candidates, Covariates};
use crate::device::{Device, DeviceName};
use crate::fit::{Accuracy, Blueprint, Checkpoints, Progress, Step, TrainSpec, Trained, evaluate, fit, load_weights};
use crate::head::LossSpec;
use crate::model::{ModelSpec, RnnSpec, Shape};
use crate::selection::{Scored, subsample};
use applearner_contracts::card::CovariateChoice;

/// Trains a forecaster on the windows of `features.build`. Reads `features`, `windows`
/// and `scalers`; writes the model folder (`model.mpk` weights, `card.json`, `card.md`)
/// and `metrics` (per epoch: learning rate, training and validation loss, validation MAE).
/// Checkpoints after every epoch: a killed run resumes where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// Feature columns the model reads (default: every feature: multivariate). `[cpu]`
    /// makes a univariate CPU model.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Columns it forecasts: `[cpu]`, `[memory]` or both.
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// Forecast the change from each target's last value (added back), so a slowly
    /// varying series is never forecast worse than by repeating it, by construction. The
    /// targets must be among the inputs.
    #[serde(default)]
    pub skip: bool,
    /// `{kind: lstm|gru|tcn|nbeats|nhits|dlinear|deepar, …sizes}`.
    #[serde(default = "default_model")]
    pub model: ModelSpec,
    /// `{kind: mse|mae|huber|quantile|gaussian}`; default mse, gaussian for deepar.
    #[serde(default)]
    pub loss: Option<LossSpec>,
    /// Where the features hold covariates (clean.resample's `inputs:`) and `inputs` is not
    /// given: `auto` trains without and with them and keeps the lower validation error (the
    /// card says which and both errors), `use` always reads them, `ignore` never does. A
    /// model fine-tuned (`init_from`) or used as it is reads what it was trained on.
    #[serde(default)]
    pub covariates: Covariates,
    /// Optimiser, learning rate and schedule, epochs, batch, clipping, early stopping.
    #[serde(default)]
    pub train: TrainSpec,
    /// `cpu`, `cuda`, `cuda:N` or `auto`; checked on the machine the stage runs on.
    #[serde(default = "default_device")]
    pub device: DeviceName,
    /// A model folder (`trained_models/<name>`) to start from: fine-tuning. Its blueprint
    /// must match this one; it is read when the stage runs.
    #[serde(default)]
    pub init_from: Option<String>,
    /// Use this trained model as it is, with no training: a model folder, or its URL in
    /// object storage (`s3://bucket/models/web`). What an hourly refresh does with the model
    /// a weekly run trained. Its blueprint (model, loss, inputs, targets, lookback, horizon)
    /// must be the one this stage would build on this data.
    #[serde(default)]
    pub use_model: Option<String>,
    /// Also write the model folder here (e.g. `trained_models/<name>`, or a URL in object
    /// storage that a refresh's `use_model` reads), replacing it whole.
    #[serde(default)]
    pub publish: Option<String>,
}

fn default_targets() -> Vec<String> {
    vec!["cpu".into()]
}

fn default_model() -> ModelSpec {
    ModelSpec::Lstm(RnnSpec { hidden: 64, layers: 2, dropout: 0.0 })
}

fn default_device() -> DeviceName {
    DeviceName::Cpu
}

impl StageParams for TrainParams {
    const KIND: &'static str = "train.fit";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        problems.extend(self.model.check().into_iter().map(|p| p.within("model")));
        problems.extend(self.train.check().into_iter().map(|p| p.within("train")));
        let loss = self.loss();
        problems.extend(loss.check().into_iter().map(|p| p.within("loss")));
        if matches!(self.model, ModelSpec::Deepar(_)) && loss != LossSpec::Gaussian {
            problems.push(ParamProblem::new(
                &["loss"],
                "deepar is trained by likelihood",
                "use {kind: gaussian} or drop `loss`",
            ));
        }
        if self.use_model.is_some() && self.init_from.is_some() {
            problems.push(ParamProblem::new(
                &["use_model"],
                "`use_model` uses a model as it is; `init_from` trains from one",
                "keep one of them",
            ));
        }
        if self.targets.is_empty() {
            problems.push(ParamProblem::new(&["targets"], "no target column", "e.g. [cpu] or [cpu, memory]"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Box::new(Train { params: self, loss, init: std::sync::OnceLock::new() }))
    }
}

impl TrainParams {
    fn loss(&self) -> LossSpec {
        self.loss.clone().unwrap_or(match self.model {
            ModelSpec::Deepar(_) => LossSpec::Gaussian,
            _ => LossSpec::Mse,
        })
    }
}

struct Train {
    params: TrainParams,
    loss: LossSpec,
    /// The model to fine-tune or to use as it is, read once where the stage runs (the cache
    /// key needs it before `run` does).
    init: std::sync::OnceLock<Result<Option<Arc<Saved>>, String>>,
}

impl Train {
    fn init(&self) -> Result<Option<Arc<Saved>>, BoxError> {
        let read = || {
            let (name, location) = match (&self.params.init_from, &self.params.use_model) {
                (Some(dir), _) => ("init_from", dir),
                (None, Some(location)) => ("use_model", location),
                (None, None) => return Ok(None),
            };
            Saved::fetch(location)
                .map(|saved| Some(Arc::new(saved)))
                .map_err(|e| format!("{name}: {e}; point it at a model folder (trained_models/<name>, a run's train/)"))
        };
        self.init.get_or_init(read).clone().map_err(Into::into)
    }
}

impl Stage for Train {
    fn reads(&self) -> Vec<String> {
        [features::NAME, windows::NAME, scalers::NAME].map(String::from).to_vec()
    }

    fn writes(&self) -> Vec<Output> {
        vec![
            Output::artifact(WEIGHTS_FILE),
            Output::artifact(CARD_FILE),
            Output::artifact(README_FILE),
            Output::table(metrics::NAME),
        ]
    }

    /// The starting model is an input too: another one gives another result.
    fn fingerprint(&self, _store: &Store, hasher: &mut blake3::Hasher) -> Result<(), BoxError> {
        if let Some(init) = self.init()? {
            hasher.update(init.card.weights_digest.as_bytes());
        }
        Ok(())
    }

    fn host_warnings(&self) -> Vec<String> {
        self.params.device.host_warnings()
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let p = &self.params;
        if let (Some(location), Some(saved)) = (&p.use_model, self.init()?) {
            return self.use_as_is(ctx, location, &saved);
        }
        let init = self.init()?;
        let device = p.device.resolve()?;
        let (fitted, choice) = self.fit_chosen(ctx, device, init.as_deref())?;
        let Fitted { train_windows, blueprint, trained, validation, test, step_ms } = fitted;
        let card = Card {
            format: FORMAT,
            applearner_version: applearner_pipeline::run::VERSION.to_string(),
            burn_version: crate::BURN_VERSION.to_string(),
            blueprint,
            training: p.train.clone(),
            seed: ctx.seed(),
            device: device.to_string(),
            step_ms,
            weights_digest: blake3::hash(&trained.weights).to_hex().to_string(),
            // Where a copy is published does not change the model.
            config_digest: blake3::hash(serde_json::to_string(&TrainParams { publish: None, ..p.clone() })?.as_bytes())
                .to_hex()
                .to_string(),
            data_digests: data_digests(ctx)?,
            fine_tuned_from: init.as_ref().map(|i| i.card.weights_digest.clone()),
            best_epoch: trained.best_epoch,
            epochs_run: trained.metrics.len(),
            validation,
            test,
            scalers: read_scalers(&ctx.read_table(scalers::NAME)?, &p.targets)?,
            covariates: choice,
        };
        write_metrics(ctx, &trained.metrics)?;
        let saved = Saved { card, weights: trained.weights };
        write_model(ctx, &saved)?;
        if let Some(dir) = &p.publish {
            saved.publish_to(dir).map_err(|error| TrainError::Publish { dir: dir.clone(), error })?;
        }
        for dir in ["", WITH_COVARIATES] {
            StoreCheckpoints::of(ctx, dir).clear()?;
        }

        let mut summary = Summary::new();
        summary.insert("device".into(), device.to_string().into());
        summary.insert("train_windows".into(), train_windows.into());
        summary.insert("epochs_run".into(), saved.card.epochs_run.into());
        summary.insert("best_epoch".into(), trained.best_epoch.into());
        if let Some(from) = trained.resumed_from {
            summary.insert("resumed_from_epoch".into(), from.into());
        }
        summary.insert("train_samples_per_s".into(), (trained.samples_per_s.round()).into());
        summary.insert("validation_relative_mae".into(), round4(saved.card.validation.relative_mae).into());
        summary.insert("test_relative_mae".into(), round4(saved.card.test.relative_mae).into());
        if let Some(c) = &saved.card.covariates {
            summary.insert("covariates_used".into(), c.used.into());
        }
        Ok(summary)
    }
}

/// Where the second fit of `covariates: auto` checkpoints, in the scratch folder.
const WITH_COVARIATES: &str = "with-covariates";

/// One model trained: on how many training windows, what it is, and how it did.
struct Fitted {
    train_windows: usize,
    blueprint: Blueprint,
    trained: Trained,
    validation: Accuracy,
    test: Accuracy,
    step_ms: i64,
}

/// The digests of the tables the model was trained on, for its card.
fn data_digests(ctx: &StageContext) -> Result<BTreeMap<String, String>, BoxError> {
    [features::NAME, windows::NAME, scalers::NAME]
        .iter()
        .map(|slot| Ok((slot.to_string(), ctx.input(slot)?.digest.clone())))
        .collect()
}

/// The model folder: weights, card and its readable copy.
fn write_model(ctx: &StageContext, saved: &Saved) -> Result<(), BoxError> {
    ctx.write_artifact(WEIGHTS_FILE, saved.weights.clone())?;
    ctx.write_artifact(CARD_FILE, saved.card_json())?;
    ctx.write_artifact(README_FILE, saved.card.markdown())?;
    Ok(())
}

impl Train {
    /// The features the model reads (empty: every one), and the candidates where `auto`
    /// must choose whether it reads the covariates: the configured inputs, else the
    /// fine-tuned model's, else every feature (but the covariates' where they are ignored).
    fn inputs(&self, ctx: &StageContext, init: Option<&Saved>) -> Result<(Vec<String>, Option<Candidates>), BoxError> {
        let p = &self.params;
        if !p.inputs.is_empty() {
            return Ok((p.inputs.clone(), None));
        }
        if let Some(init) = init {
            return Ok((init.card.blueprint.inputs.clone(), None));
        }
        let candidates = if p.covariates == Covariates::Use { None } else { Candidates::of(ctx)? };
        Ok(match (p.covariates, candidates) {
            (_, None) => (Vec::new(), None),
            (Covariates::Ignore, Some(c)) => (c.without, None),
            (_, Some(c)) => (c.without.clone(), Some(c)),
        })
    }

    /// The model trained on the inputs, and, where `auto` must choose, also with the
    /// covariates: the one with the lower validation error, and the choice.
    fn fit_chosen(
        &self,
        ctx: &StageContext,
        device: Device,
        init: Option<&Saved>,
    ) -> Result<(Fitted, Option<CovariateChoice>), BoxError> {
        let (inputs, candidates) = self.inputs(ctx, init)?;
        let without = self.fit_on(ctx, device, &inputs, init, "")?;
        let Some(c) = candidates else { return Ok((without, None)) };
        let with = self.fit_on(ctx, device, &c.with, None, WITH_COVARIATES)?;
        let chosen = c.choose(without.validation.relative_mae, with.validation.relative_mae);
        tracing::info!("{}", chosen.sentence());
        Ok((if chosen.used { with } else { without }, Some(chosen)))
    }

    /// Reads the windows of `inputs` and trains on them (from `init`'s weights, which must
    /// be the same model), checkpointing under the scratch folder's `dir`.
    fn fit_on(
        &self,
        ctx: &StageContext,
        device: Device,
        inputs: &[String],
        init: Option<&Saved>,
        dir: &str,
    ) -> Result<Fitted, BoxError> {
        let (train_windows, windows) = self.read_windows(ctx, inputs)?;
        let blueprint = self.blueprint(&windows)?;
        if let Some(init) = init {
            same_blueprint("init_from: the model to fine-tune", &init.card.blueprint, &blueprint)?;
        }
        let checkpoints = StoreCheckpoints::of(ctx, dir);
        let init_weights = init.map(|i| i.weights.as_slice());
        let (trained, validation, test) = self.train(ctx, device, &blueprint, &windows, init_weights, &checkpoints)?;
        let step_ms = windows.step_ms().unwrap_or(i64::MAX);
        Ok(Fitted { train_windows, blueprint, trained, validation, test, step_ms })
    }

    /// The number of training windows, and the windows training reads. Only the seeded
    /// subsample of training windows `fit` trains on is held, with the validation and test
    /// windows it scores, and only the rows those windows read: the windows table is counted
    /// first, then read.
    fn read_windows(&self, ctx: &StageContext, inputs: &[String]) -> Result<(usize, WindowSet), BoxError> {
        let p = &self.params;
        let counts = windows_per_part(ctx.table_batches(windows::NAME, None, &[])?)?;
        let chosen = subsample(counts.per_part[0], p.train.max_train_windows, ctx.seed());
        let columns = [features::KEY, features::SEGMENT, features::TIMESTAMP];
        // Without two rows of a segment there is no window either: any step will do.
        let step = grid_step_ms(ctx.table_batches(features::NAME, Some(&columns), &[])?)?.unwrap_or(1);
        let scored = Scored::of(&counts, step, p.train.max_scored_windows);
        let keep = |c: &Candidate| match c.part {
            Part::Train => chosen.as_ref().is_none_or(|chosen| chosen.binary_search(&c.index).is_ok()),
            _ => scored.keeps(c),
        };
        let features = ctx.table_batches(features::NAME, None, &[])?;
        let windows =
            WindowSet::of_windows(features, ctx.table_batches(windows::NAME, None, &[])?, inputs, &p.targets, &keep)?;
        Ok((counts.per_part[0], windows))
    }

    /// Trains on `device` with a progress bar, then measures the kept weights on the
    /// validation and test parts.
    fn train(
        &self,
        ctx: &StageContext,
        device: Device,
        blueprint: &Blueprint,
        windows: &WindowSet,
        init: Option<&[u8]>,
        checkpoints: &StoreCheckpoints,
    ) -> Result<(Trained, Accuracy, Accuracy), BoxError> {
        let spec = &self.params.train;
        let batches_per_epoch = windows.part(Part::Train).len().div_ceil(spec.batch);
        let bar = ctx.progress((batches_per_epoch * spec.epochs) as u64, "training");
        let on_progress = |step: Step| -> Result<(), BoxError> {
            match step {
                Step::Batch { loss } => {
                    bar.inc(1);
                    bar.set_message(format!("loss {loss:.4}"));
                }
                Step::Epoch { metrics: m, of, took } => bar.note(&format!(
                    "epoch {}/{of}: train loss {:.5}, validation loss {:.5}, validation MAE {:.5} (scaled), {:.1} s",
                    m.epoch,
                    m.train_loss,
                    m.validation_loss,
                    m.validation_mae,
                    took.as_secs_f64()
                )),
            }
            Ok(ctx.check_cancelled()?)
        };
        let seed = ctx.seed();
        let out = on_backend!(device, |B, dev| {
            fit_and_measure::<B>(blueprint, spec, windows, init, seed, checkpoints, &on_progress, &dev)
        })?;
        bar.finish();
        Ok(out)
    }

    /// The model this stage builds on these windows.
    fn blueprint(&self, windows: &WindowSet) -> Result<Blueprint, BoxError> {
        let p = &self.params;
        let blueprint = Blueprint {
            model: p.model.clone(),
            loss: self.loss.clone(),
            shape: Shape {
                lookback: windows.lookback,
                horizon: windows.horizon,
                inputs: windows.input_names().len(),
                targets: p.targets.len(),
                outputs: self.loss.outputs(),
            },
            inputs: windows.input_names().to_vec(),
            targets: p.targets.clone(),
            skip: p.skip,
        };
        if p.skip && blueprint.skip_from().is_none() {
            return Err(crate::TrainError::SkipWithoutTarget {
                targets: p.targets.join(", "),
                inputs: blueprint.inputs.join(", "),
            }
            .into());
        }
        Ok(blueprint)
    }

    /// `use_model`: the trained model, unchanged, once it is known to read these features
    /// and windows. Its card keeps saying what it was trained on.
    fn use_as_is(&self, ctx: &StageContext, location: &str, saved: &Saved) -> Result<Summary, BoxError> {
        let p = &self.params;
        // The names and shapes only: no window is held. Unless configured, the inputs are the
        // model's (it may have been chosen with or without the covariates).
        let inputs = if p.inputs.is_empty() { &saved.card.blueprint.inputs } else { &p.inputs };
        let windows = WindowSet::of_windows(
            ctx.table_batches(features::NAME, None, &[])?,
            ctx.table_batches(windows::NAME, None, &[])?,
            inputs,
            &p.targets,
            &|_| false,
        )?;
        let what = format!("use_model: {location}");
        same_blueprint(&what, &saved.card.blueprint, &self.blueprint(&windows)?)?;
        write_model(ctx, saved)?;
        write_metrics(ctx, &[])?;
        let mut summary = Summary::new();
        summary.insert("used_model".into(), location.into());
        summary.insert("weights_digest".into(), saved.card.weights_digest.clone().into());
        summary.insert("epochs_run".into(), 0.into());
        summary.insert("test_relative_mae".into(), round4(saved.card.test.relative_mae).into());
        Ok(summary)
    }
}

/// A model read from elsewhere must be the one this stage builds: the same layers on the
/// same inputs, targets and windows.
fn same_blueprint(what: &str, theirs: &Blueprint, ours: &Blueprint) -> Result<(), TrainError> {
    if theirs == ours {
        return Ok(());
    }
    let describe = |b: &Blueprint| {
        format!(
            "{} on inputs [{}] → [{}] (lookback {}, horizon {}, loss {:?})",
            b.model.name(),
            b.inputs.join(", "),
            b.targets.join(", "),
            b.shape.lookback,
            b.shape.horizon,
            b.loss,
        )
    };
    Err(TrainError::Blueprint { what: what.to_string(), theirs: describe(theirs), ours: describe(ours) })
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// Trains, then measures the kept weights on the validation and test parts.
#[allow(clippy::too_many_arguments)]
fn fit_and_measure<B: crate::recurrent::TrainBackend>(
    blueprint: &Blueprint,
    spec: &TrainSpec,
    windows: &WindowSet,
    init: Option<&[u8]>,
    seed: u64,
    checkpoints: &dyn Checkpoints,
    on_progress: &dyn Fn(Step) -> Result<(), BoxError>,
    device: &B::Device,
) -> Result<(Trained, Accuracy, Accuracy), BoxError> {
    let trained = fit::<B>(blueprint, spec, windows, init, seed, device, checkpoints, on_progress)?;
    let model = load_weights::<B::InnerBackend>(blueprint, &trained.weights, device)?;
    let (_, validation) = evaluate(blueprint, &model, windows, Part::Validation, device);
    let (_, test) = evaluate(blueprint, &model, windows, Part::Test, device);
    Ok((trained, validation, test))
}

/// Store-backed checkpoints under the stage's scratch folder. Each epoch's files carry
/// its number and `progress.json`, written last, names the epoch to resume from, so a run
/// killed between two writes still finds a complete set.
struct StoreCheckpoints<'a> {
    store: &'a Store,
    dir: String,
}

impl StoreCheckpoints<'_> {
    /// Checkpoints under the stage's scratch folder, in `dir` (empty: the folder itself).
    fn of<'a>(ctx: &'a StageContext, dir: &str) -> StoreCheckpoints<'a> {
        let dir = if dir.is_empty() { ctx.scratch().to_string() } else { format!("{}/{dir}", ctx.scratch()) };
        StoreCheckpoints { store: ctx.store(), dir }
    }

    fn path(&self, file: &str, epoch: usize) -> String {
        format!("{}/{file}-{epoch}.bin", self.dir)
    }

    fn clear(&self) -> Result<(), BoxError> {
        for path in self.store.list(&self.dir)? {
            self.store.delete(&path)?;
        }
        Ok(())
    }
}

impl Checkpoints for StoreCheckpoints<'_> {
    fn load(&self) -> Result<Option<(Progress, Vec<u8>, Vec<u8>, Vec<u8>)>, BoxError> {
        let Some(bytes) = self.store.get_opt(&format!("{}/progress.json", self.dir))? else {
            return Ok(None);
        };
        let progress: Progress = serde_json::from_slice(&bytes)?;
        let e = progress.next_epoch;
        let get = |file: &str| -> Result<Vec<u8>, BoxError> { Ok(self.store.get(&self.path(file, e))?.to_vec()) };
        tracing::info!(epoch = e, "resuming from checkpoint");
        Ok(Some((progress, get("model")?, get("optimizer")?, get("best")?)))
    }

    fn save(&self, progress: &Progress, model: Vec<u8>, optimizer: Vec<u8>, best: Vec<u8>) -> Result<(), BoxError> {
        let e = progress.next_epoch;
        self.store.put(&self.path("model", e), model.into())?;
        self.store.put(&self.path("optimizer", e), optimizer.into())?;
        self.store.put(&self.path("best", e), best.into())?;
        self.store.put(&format!("{}/progress.json", self.dir), serde_json::to_vec(progress)?.into())?;
        if e > 0 {
            for file in ["model", "optimizer", "best"] {
                self.store.delete(&self.path(file, e - 1))?;
            }
        }
        Ok(())
    }
}

fn write_metrics(ctx: &StageContext, m: &[crate::fit::EpochMetrics]) -> Result<(), BoxError> {
    let f64s = |f: fn(&crate::fit::EpochMetrics) -> f64| Arc::new(Float64Array::from_iter_values(m.iter().map(f)));
    let schema = Arc::new(Schema::new(vec![
        Field::new(metrics::EPOCH, DataType::UInt32, false),
        Field::new(metrics::LR, DataType::Float64, false),
        Field::new(metrics::TRAIN_LOSS, DataType::Float64, false),
        Field::new(metrics::VALIDATION_LOSS, DataType::Float64, false),
        Field::new(metrics::VALIDATION_MAE, DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt32Array::from_iter_values(m.iter().map(|e| e.epoch))),
            f64s(|e| e.lr),
            f64s(|e| e.train_loss),
            f64s(|e| e.validation_loss),
            f64s(|e| e.validation_mae),
        ],
    )?;
    ctx.write_table(metrics::NAME, schema, &[batch])
}
