//! The training loop: seeded shuffles, Adam/AdamW, a learning-rate schedule, gradient
//! clipping, early stopping on the validation part, and a checkpoint after every epoch.

use applearner_contracts::{Part, WindowSet};
use burn::module::{AutodiffModule, Module, ModuleMapper, Param, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

pub use applearner_contracts::card::Accuracy;
pub use applearner_contracts::model::{Blueprint, OptimizerKind, Schedule, TrainSpec};

use crate::TrainError;
use crate::head::Head;
use crate::model::Forecaster;
use crate::recurrent::{Recurrent, TrainBackend};

/// A blueprint built on a backend.
pub trait Build {
    fn build<B: Backend>(&self, device: &B::Device) -> Forecaster<B>;
    fn run<B: Recurrent>(&self, model: &Forecaster<B>, x: Vec<f32>, batch: usize, device: &B::Device) -> Tensor<B, 4>;
}

impl Build for Blueprint {
    fn build<B: Backend>(&self, device: &B::Device) -> Forecaster<B> {
        Forecaster::new(&self.model, self.shape, device)
    }

    /// Decoded outputs `[batch, horizon, targets, outputs]` of `x` (`batch` windows, row-major).
    fn run<B: Recurrent>(&self, model: &Forecaster<B>, x: Vec<f32>, batch: usize, device: &B::Device) -> Tensor<B, 4> {
        let s = self.shape;
        let x = Tensor::<B, 3>::from_data(TensorData::new(x, [batch, s.lookback, s.inputs]), device);
        let raw = model.forward(x.clone(), s);
        let raw = match self.skip_from() {
            // Output 0 is the point, the mean or the lowest quantile, from which the others
            // are built: adding the last value there shifts the whole forecast.
            Some(from) => {
                let index = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(from.iter().map(|&i| i as i64).collect::<Vec<_>>(), [from.len()]),
                    device,
                );
                let last = x.narrow(1, s.lookback - 1, 1).select(2, index).reshape([batch, 1, s.targets, 1]);
                let shift = match s.outputs {
                    1 => last,
                    n => Tensor::cat(vec![last, Tensor::zeros([batch, 1, s.targets, n - 1], device)], 3),
                };
                raw + shift.expand([batch, s.horizon, s.targets, s.outputs])
            }
            None => raw,
        };
        self.loss.decode(raw)
    }
}

/// One row of the per-epoch metrics table (losses in scaled units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: u32,
    pub lr: f64,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_mae: f64,
}

/// What training reports as it goes: after each batch, and after each epoch's validation.
pub enum Step<'a> {
    Batch { loss: f64 },
    Epoch { metrics: &'a EpochMetrics, of: usize, took: std::time::Duration },
}

/// What survives a killed run: written after every epoch, resumed from on a rerun.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub next_epoch: usize,
    pub best_loss: f64,
    pub best_epoch: usize,
    pub metrics: Vec<EpochMetrics>,
}

/// Saves and restores [`Progress`] with the weights and optimizer state.
pub trait Checkpoints {
    fn load(&self) -> Result<Option<(Progress, Vec<u8>, Vec<u8>, Vec<u8>)>, crate::BoxError>;
    fn save(
        &self,
        progress: &Progress,
        model: Vec<u8>,
        optimizer: Vec<u8>,
        best: Vec<u8>,
    ) -> Result<(), crate::BoxError>;
}

pub struct Trained {
    /// The weights of the best epoch, as a burn record (full precision, named MessagePack).
    pub weights: Vec<u8>,
    pub metrics: Vec<EpochMetrics>,
    pub best_epoch: usize,
    pub resumed_from: Option<usize>,
    pub samples_per_s: f64,
}

type WeightsRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Numbers the parameters in visiting order. burn draws parameter ids at random and records
/// them with the weights (and keys optimizer state by them), so without this the same
/// weights would save as different bytes in every process.
pub(crate) struct Renumber(pub(crate) u64);

impl<B: Backend> ModuleMapper<B> for Renumber {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        self.0 += 1;
        Param::from_mapped_value(ParamId::from(self.0), tensor, mapper)
    }
}

pub fn weights_bytes<B: Backend>(model: Forecaster<B>) -> Result<Vec<u8>, crate::BoxError> {
    Ok(Recorder::<B>::record(&WeightsRecorder::new(), model.into_record(), ())?)
}

pub fn load_weights<B: Backend>(
    blueprint: &Blueprint,
    bytes: &[u8],
    device: &B::Device,
) -> Result<Forecaster<B>, crate::BoxError> {
    let record = Recorder::<B>::load(&WeightsRecorder::new(), bytes.to_vec(), device)?;
    Ok(blueprint.build::<B>(device).load_record(record))
}

/// Trains `blueprint` on the windows; `init` are weights to start from (fine-tuning).
#[allow(clippy::too_many_arguments)]
pub fn fit<B: TrainBackend>(
    blueprint: &Blueprint,
    spec: &TrainSpec,
    windows: &WindowSet,
    init: Option<&[u8]>,
    seed: u64,
    device: &B::Device,
    checkpoints: &dyn Checkpoints,
    on_progress: &dyn Fn(Step) -> Result<(), crate::BoxError>,
) -> Result<Trained, crate::BoxError> {
    // flex draws initial weights and dropout masks from one process-wide generator: one
    // training at a time keeps them reproducible.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    B::seed(device, seed);
    let model = match init {
        Some(bytes) => load_weights::<B>(blueprint, bytes, device)?,
        None => blueprint.build::<B>(device),
    }
    .map(&mut Renumber(0));
    let clip = (spec.clip > 0.0).then_some(burn::grad_clipping::GradientClippingConfig::Norm(spec.clip as f32));
    // PyTorch's epsilon, so runs compare with the reference stack.
    let run = Loop { blueprint, spec, windows, seed, device, checkpoints, on_progress };
    match spec.optimizer {
        OptimizerKind::Adam => {
            let decay = (spec.weight_decay > 0.0).then(|| WeightDecayConfig::new(spec.weight_decay as f32));
            run.run(
                model,
                AdamConfig::new().with_epsilon(1e-8).with_weight_decay(decay).with_grad_clipping(clip).init(),
            )
        }
        OptimizerKind::Adamw => run.run(
            model,
            AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(spec.weight_decay as f32)
                .with_grad_clipping(clip)
                .init(),
        ),
    }
}

struct Loop<'a, B: TrainBackend> {
    blueprint: &'a Blueprint,
    spec: &'a TrainSpec,
    windows: &'a WindowSet,
    seed: u64,
    device: &'a B::Device,
    checkpoints: &'a dyn Checkpoints,
    on_progress: &'a dyn Fn(Step) -> Result<(), crate::BoxError>,
}

type StateRecorder = BinBytesRecorder<FullPrecisionSettings>;

impl<B: TrainBackend> Loop<'_, B> {
    fn run<O: Optimizer<Forecaster<B>, B>>(
        &self,
        mut model: Forecaster<B>,
        mut optim: O,
    ) -> Result<Trained, crate::BoxError> {
        let spec = self.spec;
        // Every training window the set holds: the stage read only the seeded subsample.
        let train: Vec<usize> = (0..self.windows.part(Part::Train).len()).collect();
        let mut progress = Progress { next_epoch: 0, best_loss: f64::INFINITY, best_epoch: 0, metrics: Vec::new() };
        let mut best = model.valid();
        let mut resumed_from = None;
        if let Some((saved, weights, state, best_weights)) = self.checkpoints.load()? {
            (model, optim, best) = self.resume(optim, &weights, state, &best_weights)?;
            resumed_from = Some(saved.next_epoch);
            progress = saved;
        }

        let (mut seen, mut busy) = (0usize, std::time::Duration::ZERO);
        for epoch in progress.next_epoch..spec.epochs {
            if progress.best_epoch + spec.patience < epoch && spec.patience > 0 {
                break;
            }
            let order = self.shuffled(&train, epoch);
            let lr = spec.schedule.lr(spec.lr, epoch, spec.epochs);
            let clock = std::time::Instant::now();
            let (total, count);
            (model, optim, total, count) = self.epoch(model, optim, &order, lr, epoch)?;
            busy += clock.elapsed();
            seen += count;

            let (validation_loss, accuracy) =
                evaluate(self.blueprint, &model.valid(), self.windows, Part::Validation, self.device);
            let train_loss = total / count.max(1) as f64;
            // Without validation windows, stop on the training loss.
            let watched = if accuracy.windows > 0 { validation_loss } else { train_loss };
            let metrics =
                EpochMetrics { epoch: epoch as u32 + 1, lr, train_loss, validation_loss, validation_mae: accuracy.mae };
            (self.on_progress)(Step::Epoch { metrics: &metrics, of: spec.epochs, took: clock.elapsed() })?;
            progress.metrics.push(metrics);
            if watched < progress.best_loss {
                progress.best_loss = watched;
                progress.best_epoch = epoch;
                best = model.valid();
            }
            progress.next_epoch = epoch + 1;
            self.checkpoints.save(
                &progress,
                weights_bytes(model.clone())?,
                Recorder::<B>::record(&StateRecorder::new(), optim.to_record(), ())?,
                weights_bytes(best.clone())?,
            )?;
        }
        Ok(Trained {
            weights: weights_bytes(best)?,
            best_epoch: progress.best_epoch + 1,
            metrics: progress.metrics,
            resumed_from,
            samples_per_s: seen as f64 / busy.as_secs_f64().max(1e-9),
        })
    }

    /// The epoch's order of the training windows. Each epoch's shuffle and dropout masks
    /// come from (seed, epoch) alone, so a resumed run trains exactly as an uninterrupted one.
    fn shuffled(&self, train: &[usize], epoch: usize) -> Vec<usize> {
        let epoch_seed = self.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        B::seed(self.device, epoch_seed);
        let mut order = train.to_vec();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed));
        order
    }

    /// The model, optimiser and best model of a checkpoint.
    #[allow(clippy::type_complexity)]
    fn resume<O: Optimizer<Forecaster<B>, B>>(
        &self,
        optim: O,
        weights: &[u8],
        state: Vec<u8>,
        best: &[u8],
    ) -> Result<(Forecaster<B>, O, Forecaster<B::InnerBackend>), crate::BoxError> {
        let model = load_weights::<B>(self.blueprint, weights, self.device)?;
        let optim = optim.load_record(Recorder::<B>::load(&StateRecorder::new(), state, self.device)?);
        let best = load_weights::<B::InnerBackend>(self.blueprint, best, self.device)?;
        Ok((model, optim, best))
    }

    /// One pass over the training windows in `order`: the model and optimiser after it, the
    /// summed loss and the windows seen.
    fn epoch<O: Optimizer<Forecaster<B>, B>>(
        &self,
        mut model: Forecaster<B>,
        mut optim: O,
        order: &[usize],
        lr: f64,
        epoch: usize,
    ) -> Result<(Forecaster<B>, O, f64, usize), crate::BoxError> {
        let shape = self.blueprint.shape;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let (mut total, mut count) = (0.0, 0usize);
        for chunk in order.chunks(self.spec.batch) {
            self.windows.batch(Part::Train, chunk, &mut x, &mut y);
            let n = chunk.len();
            let decoded = self.blueprint.run(&model, std::mem::take(&mut x), n, self.device);
            let target = Tensor::<B, 3>::from_data(
                TensorData::new(std::mem::take(&mut y), [n, shape.horizon, shape.targets]),
                self.device,
            );
            let loss = self.blueprint.loss.loss(decoded, target);
            let value: f64 = loss.clone().into_scalar().elem();
            if !value.is_finite() {
                return Err(TrainError::Diverged { loss: value, epoch: epoch + 1, lr }.into());
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            total += value * n as f64;
            count += n;
            (self.on_progress)(Step::Batch { loss: value })?;
        }
        Ok((model, optim, total, count))
    }
}

/// Windows per forward pass when no gradients are kept.
const EVAL_BATCH: usize = 1024;

/// Mean loss and point accuracy of `model` on the windows of a part that `windows` holds.
/// The stage holds those on the backtest's clock grid (every horizon-th origin), thinned to
/// about `max_scored_windows` of a part: overlapping windows repeat the same points, and at
/// scale scoring (and holding) all of them was most of the stage's time and memory.
pub fn evaluate<B: Recurrent>(
    blueprint: &Blueprint,
    model: &Forecaster<B>,
    windows: &WindowSet,
    part: Part,
    device: &B::Device,
) -> (f64, Accuracy) {
    let shape = blueprint.shape;
    let n = windows.part(part).len();
    let scored: Vec<usize> = (0..n).collect();
    let (mut x, mut y, mut last) = (Vec::new(), Vec::new(), Vec::new());
    let (mut loss, mut abs, mut sq, mut naive) = (0.0, 0.0, 0.0, 0.0);
    for chunk in scored.chunks(EVAL_BATCH) {
        windows.batch(part, chunk, &mut x, &mut y);
        windows.last_values(part, chunk, &mut last);
        let decoded = blueprint.run(model, std::mem::take(&mut x), chunk.len(), device);
        let target =
            Tensor::<B, 3>::from_data(TensorData::new(y.clone(), [chunk.len(), shape.horizon, shape.targets]), device);
        let batch_loss: f64 = blueprint.loss.loss(decoded.clone(), target).into_scalar().elem();
        loss += batch_loss * chunk.len() as f64;
        let point: Vec<f32> = blueprint.loss.point(decoded).into_data().to_vec().expect("float forecasts");
        for (i, (p, t)) in point.iter().zip(&y).enumerate() {
            let e = (p - t) as f64;
            abs += e.abs();
            sq += e * e;
            // The last-value forecast repeats the last observed target over the horizon.
            let w = i / (shape.horizon * shape.targets);
            naive += (last[w * shape.targets + i % shape.targets] - t).abs() as f64;
        }
    }
    let cells = (n * shape.horizon * shape.targets).max(1) as f64;
    let accuracy = Accuracy {
        windows: n,
        mae: abs / cells,
        rmse: (sq / cells).sqrt(),
        last_value_mae: naive / cells,
        relative_mae: if naive > 0.0 { abs / naive } else { f64::NAN },
    };
    (loss / n.max(1) as f64, accuracy)
}
