//! What a model is, as a config writes it and a card records it: the model kind and sizes,
//! the loss (which fixes what the model emits), the training settings and the shapes. The
//! burn code that builds and trains a model from a [`Blueprint`] lives in `applearner-train`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ParamProblem;

/// Which model, and its size. `kind` picks it; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModelSpec {
    /// Stacked LSTM; a linear head reads the last hidden state and emits the whole horizon.
    Lstm(RnnSpec),
    /// Stacked GRU, same shape as `lstm`.
    Gru(RnnSpec),
    /// Temporal convolutional network: causal dilated Conv1d residual blocks (dilation 1, 2,
    /// 4, …), the head reads the last time step.
    Tcn(TcnSpec),
    /// N-BEATS-style: fully connected blocks, each emitting a backcast (subtracted from its
    /// input) and a forecast (summed).
    Nbeats(NbeatsSpec),
    /// N-HiTS-style, for long horizons and long, cheap context: stacks of fully connected
    /// blocks, each reading the last `spans[i]` steps averaged over `pools[i]` (a week as
    /// hourly means beside the last hours as they are), emitting a forecast every
    /// `downsample[i]` steps that is linearly interpolated to every step, and a backcast
    /// subtracted from what the next stack reads.
    Nhits(NhitsSpec),
    /// DLinear: a moving average splits the window into trend and remainder, one linear map
    /// each. The strong simple baseline of long-horizon forecasting.
    Dlinear(DlinearSpec),
    /// DeepAR-style: an LSTM encoder with a Gaussian head (mean and scale per step), trained by
    /// likelihood. It emits the horizon at once rather than sampling step by step.
    Deepar(RnnSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RnnSpec {
    #[serde(default = "d64")]
    pub hidden: usize,
    #[serde(default = "d2")]
    pub layers: usize,
    /// Between stacked layers, during training only.
    #[serde(default)]
    pub dropout: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcnSpec {
    #[serde(default = "d32")]
    pub channels: usize,
    /// Residual blocks; block `i` dilates by 2^i, so the receptive field is
    /// 1 + 2·(kernel-1)·(2^levels-1) steps.
    #[serde(default = "d4")]
    pub levels: usize,
    #[serde(default = "d3")]
    pub kernel: usize,
    #[serde(default)]
    pub dropout: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NbeatsSpec {
    #[serde(default = "d3")]
    pub blocks: usize,
    /// Fully connected layers per block.
    #[serde(default = "d4")]
    pub layers: usize,
    #[serde(default = "d128")]
    pub hidden: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NhitsSpec {
    /// Steps averaged into one input value, per stack (coarse to fine).
    #[serde(default = "default_pools")]
    pub pools: Vec<usize>,
    /// The last steps each stack reads (0: the whole lookback), per stack.
    #[serde(default)]
    pub spans: Vec<usize>,
    /// Steps between the forecast points each stack emits (interpolated between), per stack.
    #[serde(default = "default_pools")]
    pub downsample: Vec<usize>,
    /// Fully connected layers per block.
    #[serde(default = "d2")]
    pub layers: usize,
    #[serde(default = "d256")]
    pub hidden: usize,
}

fn default_pools() -> Vec<usize> {
    vec![12, 4, 1]
}

impl NhitsSpec {
    /// The steps stack `i` reads, for a window of `lookback` steps: a whole number of pools.
    pub fn span(&self, i: usize, lookback: usize) -> usize {
        let span = self.spans.get(i).copied().filter(|s| *s > 0).unwrap_or(lookback).min(lookback);
        span / self.pools[i] * self.pools[i]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DlinearSpec {
    /// Moving-average width of the trend, in steps (odd; clipped to the lookback).
    #[serde(default = "d25")]
    pub kernel: usize,
}

fn d2() -> usize {
    2
}
fn d3() -> usize {
    3
}
fn d4() -> usize {
    4
}
fn d25() -> usize {
    25
}
fn d32() -> usize {
    32
}
fn d64() -> usize {
    64
}
fn d128() -> usize {
    128
}
fn d256() -> usize {
    256
}

impl ModelSpec {
    pub fn name(&self) -> &'static str {
        match self {
            ModelSpec::Lstm(_) => "lstm",
            ModelSpec::Gru(_) => "gru",
            ModelSpec::Tcn(_) => "tcn",
            ModelSpec::Nbeats(_) => "nbeats",
            ModelSpec::Nhits(_) => "nhits",
            ModelSpec::Dlinear(_) => "dlinear",
            ModelSpec::Deepar(_) => "deepar",
        }
    }

    /// Problems with the sizes.
    pub fn check(&self) -> Vec<ParamProblem> {
        let help = "see `applearner stages train.fit` for the sizes";
        let mut out = Vec::new();
        let mut positive = |field: &str, v: usize| {
            if v == 0 {
                out.push(ParamProblem::new(&[field], "must be at least 1", help));
            }
        };
        match self {
            ModelSpec::Lstm(r) | ModelSpec::Gru(r) | ModelSpec::Deepar(r) => {
                positive("hidden", r.hidden);
                positive("layers", r.layers);
            }
            ModelSpec::Tcn(t) => {
                positive("channels", t.channels);
                positive("levels", t.levels);
                positive("kernel", t.kernel);
            }
            ModelSpec::Nbeats(n) => {
                positive("blocks", n.blocks);
                positive("layers", n.layers);
                positive("hidden", n.hidden);
            }
            ModelSpec::Nhits(n) => {
                positive("layers", n.layers);
                positive("hidden", n.hidden);
                let stacks = n.pools.len();
                if stacks == 0 || n.pools.contains(&0) || n.downsample.contains(&0) {
                    out.push(ParamProblem::new(&["pools"], "needs one or more stacks, each of at least 1 step", help));
                }
                if n.downsample.len() != stacks || !(n.spans.is_empty() || n.spans.len() == stacks) {
                    out.push(ParamProblem::new(
                        &["downsample"],
                        format!(
                            "{stacks} pools, {} downsample and {} spans: one each per stack",
                            n.downsample.len(),
                            n.spans.len()
                        ),
                        "give `downsample` (and `spans`, if any) as many entries as `pools`",
                    ));
                }
            }
            ModelSpec::Dlinear(d) => positive("kernel", d.kernel),
        }
        let dropout = match self {
            ModelSpec::Lstm(r) | ModelSpec::Gru(r) | ModelSpec::Deepar(r) => r.dropout,
            ModelSpec::Tcn(t) => t.dropout,
            _ => 0.0,
        };
        if !(0.0..1.0).contains(&dropout) {
            out.push(ParamProblem::new(&["dropout"], format!("is {dropout}; use a probability in [0, 1)"), help));
        }
        out
    }
}

/// The shapes a model is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub lookback: usize,
    pub horizon: usize,
    pub inputs: usize,
    pub targets: usize,
    /// Raw outputs per target and step (1 point, Q quantiles, 2 for a Gaussian).
    pub outputs: usize,
}

impl Shape {
    /// Raw outputs of the head: horizon × targets × outputs.
    pub fn head_width(&self) -> usize {
        self.horizon * self.targets * self.outputs
    }
}

/// The training loss, which also fixes what the model emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LossSpec {
    /// Mean squared error of a point forecast.
    Mse,
    /// Mean absolute error of a point forecast.
    Mae,
    /// Huber: squared below `delta`, absolute above (robust to the spikes of bursty usage).
    Huber {
        #[serde(default = "one")]
        delta: f64,
    },
    /// Pinball loss of one output per quantile; the quantiles are built increasing, so they
    /// never cross.
    Quantile {
        #[serde(default = "default_quantiles")]
        quantiles: Vec<f64>,
    },
    /// Gaussian negative log-likelihood of a mean and a scale per step.
    Gaussian,
}

fn one() -> f64 {
    1.0
}

pub fn default_quantiles() -> Vec<f64> {
    vec![0.5, 0.9, 0.95, 0.99]
}

impl LossSpec {
    /// Its `kind` in a config.
    pub fn name(&self) -> &'static str {
        match self {
            LossSpec::Mse => "mse",
            LossSpec::Mae => "mae",
            LossSpec::Huber { .. } => "huber",
            LossSpec::Quantile { .. } => "quantile",
            LossSpec::Gaussian => "gaussian",
        }
    }

    /// Raw outputs per target and step.
    pub fn outputs(&self) -> usize {
        match self {
            LossSpec::Quantile { quantiles } => quantiles.len(),
            LossSpec::Gaussian => 2,
            _ => 1,
        }
    }

    /// Problems with its values.
    pub fn check(&self) -> Vec<ParamProblem> {
        let problem = match self {
            LossSpec::Huber { delta } if *delta <= 0.0 => {
                Some(("delta", format!("delta is {delta}; use a positive number")))
            }
            LossSpec::Quantile { quantiles } => {
                if quantiles.is_empty() {
                    Some(("quantiles", "quantiles is empty; list at least one, e.g. [0.5, 0.9]".into()))
                } else if quantiles.iter().any(|q| !(*q > 0.0 && *q < 1.0)) {
                    Some(("quantiles", format!("quantiles {quantiles:?} must lie strictly between 0 and 1")))
                } else if quantiles.windows(2).any(|w| w[0] >= w[1]) {
                    Some(("quantiles", format!("quantiles {quantiles:?} must be strictly increasing")))
                } else {
                    None
                }
            }
            _ => None,
        };
        let help = "e.g. {kind: quantile, quantiles: [0.5, 0.9, 0.99]}";
        problem.into_iter().map(|(field, message)| ParamProblem::new(&[field], message, help)).collect()
    }

    /// Which output is the point forecast: the median quantile if one is trained (else the
    /// middle one), or the first (the value, or a Gaussian's mean).
    pub fn point_output(&self) -> usize {
        match self {
            LossSpec::Quantile { quantiles } => {
                quantiles.iter().position(|q| (*q - 0.5).abs() < 1e-9).unwrap_or(quantiles.len() / 2)
            }
            _ => 0,
        }
    }

    /// Quantile levels a forecast reports: the trained ones, or for a Gaussian the defaults
    /// read off its distribution.
    pub fn quantile_levels(&self) -> Vec<f64> {
        match self {
            LossSpec::Quantile { quantiles } => quantiles.clone(),
            LossSpec::Gaussian => default_quantiles(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Decoupled for `adamw`, L2 for `adam`; 0 turns it off.
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Clip each parameter's gradient to this L2 norm (0: off).
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// Stop after this many epochs without a better validation loss (0: never), and keep
    /// the best epoch's weights.
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Train on a seeded random subset of this many training windows (0: all of them).
    #[serde(default)]
    pub max_train_windows: usize,
    /// Score about this many validation and test windows each: the backtest's origins
    /// (every horizon-th step on the clock), on a coarser clock grid where there are more
    /// (0: all of them), so that what training holds stays bounded as the data grows.
    #[serde(default = "default_max_scored_windows")]
    pub max_scored_windows: usize,
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            optimizer: OptimizerKind::default(),
            lr: default_lr(),
            weight_decay: 0.0,
            schedule: Schedule::default(),
            epochs: default_epochs(),
            batch: default_batch(),
            clip: default_clip(),
            patience: default_patience(),
            max_train_windows: 0,
            max_scored_windows: default_max_scored_windows(),
        }
    }
}

fn default_max_scored_windows() -> usize {
    50_000
}
fn default_lr() -> f64 {
    1e-3
}
fn default_epochs() -> usize {
    20
}
fn default_batch() -> usize {
    256
}
fn default_clip() -> f64 {
    1.0
}
fn default_patience() -> usize {
    5
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adam,
    Adamw,
}

/// How the learning rate moves over the epochs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    #[default]
    Constant,
    /// Cosine decay from `lr` to `lr × floor` over the epochs.
    Cosine {
        #[serde(default)]
        floor: f64,
    },
    /// Multiply by `gamma` every `every` epochs.
    Step { every: usize, gamma: f64 },
}

impl Schedule {
    /// The learning rate of `epoch` (from 0) of `epochs`.
    pub fn lr(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine { floor } => {
                let progress = epoch as f64 / (epochs.max(2) - 1) as f64;
                base * (floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
            }
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / (*every).max(1)) as i32),
        }
    }
}

impl TrainSpec {
    /// Problems with the settings.
    pub fn check(&self) -> Vec<ParamProblem> {
        let problem = |field: &str, message: String| {
            ParamProblem::new(&[field], message, "see `applearner stages train.fit` for the defaults")
        };
        let mut out = Vec::new();
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            out.push(problem("lr", format!("is {}; use a positive rate such as 1e-3", self.lr)));
        }
        if self.epochs == 0 {
            out.push(problem("epochs", "must be at least 1".into()));
        }
        if self.batch == 0 {
            out.push(problem("batch", "must be at least 1".into()));
        }
        if self.clip < 0.0 {
            out.push(problem("clip", format!("is {}; use a positive norm, or 0 to turn clipping off", self.clip)));
        }
        if self.weight_decay < 0.0 {
            out.push(problem(
                "weight_decay",
                format!("is {}; use a positive rate such as 0.01, or 0", self.weight_decay),
            ));
        }
        if let Schedule::Step { every: 0, .. } = self.schedule {
            out.push(problem("schedule", "step needs `every` of at least 1 epoch".into()));
        }
        out
    }
}

/// Everything that defines a model: what the card stores and loading rebuilds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blueprint {
    pub model: ModelSpec,
    pub loss: LossSpec,
    pub shape: Shape,
    pub inputs: Vec<String>,
    pub targets: Vec<String>,
    /// The model forecasts the change from each target's last input value, which is added
    /// back: with every weight at zero it forecasts the last value. Cards without it: off.
    #[serde(default)]
    pub skip: bool,
}

impl Blueprint {
    /// Where each target sits among the inputs, if the skip connection is on and every
    /// target is an input.
    pub fn skip_from(&self) -> Option<Vec<usize>> {
        if !self.skip {
            return None;
        }
        self.targets.iter().map(|t| self.inputs.iter().position(|i| i == t)).collect()
    }
}
