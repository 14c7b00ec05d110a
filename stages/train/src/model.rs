//! The forecasters. Every model maps a window `[batch, lookback, inputs]` to the raw head
//! `[batch, horizon, targets, outputs]`; [`Head`] turns the raw outputs into a point
//! forecast, ordered quantiles or a Gaussian, so each model is probabilistic on demand.

pub use applearner_contracts::model::{DlinearSpec, ModelSpec, NbeatsSpec, NhitsSpec, RnnSpec, Shape, TcnSpec};
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig1d};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;

use crate::recurrent::{Cell, Recurrent, Rnn};

#[derive(Module, Debug)]
pub enum Forecaster<B: Backend> {
    Lstm(Rnn<B>),
    Gru(Rnn<B>),
    Tcn(Tcn<B>),
    Nbeats(Nbeats<B>),
    Nhits(Nhits<B>),
    Dlinear(Dlinear<B>),
}

impl<B: Backend> Forecaster<B> {
    pub fn new(spec: &ModelSpec, shape: Shape, device: &B::Device) -> Self {
        match spec {
            ModelSpec::Lstm(r) | ModelSpec::Deepar(r) => Forecaster::Lstm(Rnn::new(r, shape, Cell::Lstm, device)),
            ModelSpec::Gru(r) => Forecaster::Gru(Rnn::new(r, shape, Cell::Gru, device)),
            ModelSpec::Tcn(t) => Forecaster::Tcn(Tcn::new(t, shape, device)),
            ModelSpec::Nbeats(n) => Forecaster::Nbeats(Nbeats::new(n, shape, device)),
            ModelSpec::Nhits(n) => Forecaster::Nhits(Nhits::new(n, shape, device)),
            ModelSpec::Dlinear(d) => Forecaster::Dlinear(Dlinear::new(d, shape, device)),
        }
    }

    /// `[batch, lookback, inputs]` → raw `[batch, horizon, targets, outputs]`.
    pub fn forward(&self, x: Tensor<B, 3>, shape: Shape) -> Tensor<B, 4>
    where
        B: Recurrent,
    {
        let [batch, _, _] = x.dims();
        let flat = match self {
            Forecaster::Lstm(m) => m.forward(x, Cell::Lstm),
            Forecaster::Gru(m) => m.forward(x, Cell::Gru),
            Forecaster::Tcn(m) => m.forward(x),
            Forecaster::Nbeats(m) => m.forward(x),
            Forecaster::Nhits(m) => m.forward(x, shape),
            Forecaster::Dlinear(m) => m.forward(x),
        };
        flat.reshape([batch, shape.horizon, shape.targets, shape.outputs])
    }
}

#[derive(Module, Debug)]
pub struct TcnBlock<B: Backend> {
    conv1: Conv1d<B>,
    conv2: Conv1d<B>,
    /// 1×1 convolution when the block changes the channel count.
    skip: Option<Conv1d<B>>,
}

#[derive(Module, Debug)]
pub struct Tcn<B: Backend> {
    blocks: Vec<TcnBlock<B>>,
    dropout: Dropout,
    head: Linear<B>,
}

impl<B: Backend> Tcn<B> {
    fn new(spec: &TcnSpec, shape: Shape, device: &B::Device) -> Self {
        let causal = |c_in: usize, dilation: usize| {
            // Padding only on the left: step t sees steps ≤ t, and the length is kept.
            Conv1dConfig::new(c_in, spec.channels, spec.kernel)
                .with_dilation(dilation)
                .with_padding(PaddingConfig1d::Explicit((spec.kernel - 1) * dilation, 0))
                .init(device)
        };
        let blocks = (0..spec.levels)
            .map(|l| {
                let c_in = if l == 0 { shape.inputs } else { spec.channels };
                TcnBlock {
                    conv1: causal(c_in, 1 << l),
                    conv2: causal(spec.channels, 1 << l),
                    skip: (c_in != spec.channels).then(|| Conv1dConfig::new(c_in, spec.channels, 1).init(device)),
                }
            })
            .collect();
        Tcn {
            blocks,
            dropout: DropoutConfig::new(spec.dropout).init(),
            head: LinearConfig::new(spec.channels, shape.head_width()).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        let mut h = x.swap_dims(1, 2); // [batch, channels, steps]
        for b in &self.blocks {
            let y = self.dropout.forward(relu(b.conv1.forward(h.clone())));
            let y = self.dropout.forward(relu(b.conv2.forward(y)));
            let skip = match &b.skip {
                Some(s) => s.forward(h),
                None => h,
            };
            h = relu(y + skip);
        }
        let [batch, channels, steps] = h.dims();
        self.head.forward(h.narrow(2, steps - 1, 1).reshape([batch, channels]))
    }
}

/// `layers` fully connected layers of `hidden` units reading `width` values: the body of
/// an N-BEATS block and of an N-HiTS stack.
fn dense<B: Backend>(width: usize, hidden: usize, layers: usize, device: &B::Device) -> Vec<Linear<B>> {
    (0..layers).map(|l| LinearConfig::new(if l == 0 { width } else { hidden }, hidden).init(device)).collect()
}

/// `x` through `layers`, each followed by a ReLU.
fn through<B: Backend>(layers: &[Linear<B>], x: Tensor<B, 2>) -> Tensor<B, 2> {
    layers.iter().fold(x, |h, layer| relu(layer.forward(h)))
}

#[derive(Module, Debug)]
pub struct NbeatsBlock<B: Backend> {
    layers: Vec<Linear<B>>,
    backcast: Linear<B>,
    forecast: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Nbeats<B: Backend> {
    blocks: Vec<NbeatsBlock<B>>,
}

impl<B: Backend> Nbeats<B> {
    fn new(spec: &NbeatsSpec, shape: Shape, device: &B::Device) -> Self {
        let width = shape.lookback * shape.inputs;
        let blocks = (0..spec.blocks)
            .map(|_| NbeatsBlock {
                layers: dense(width, spec.hidden, spec.layers, device),
                backcast: LinearConfig::new(spec.hidden, width).init(device),
                forecast: LinearConfig::new(spec.hidden, shape.head_width()).init(device),
            })
            .collect();
        Nbeats { blocks }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, steps, inputs] = x.dims();
        let mut residual = x.reshape([batch, steps * inputs]);
        let mut forecast: Option<Tensor<B, 2>> = None;
        for b in &self.blocks {
            let h = through(&b.layers, residual.clone());
            residual = residual - b.backcast.forward(h.clone());
            let f = b.forecast.forward(h);
            forecast = Some(match forecast {
                Some(acc) => acc + f,
                None => f,
            });
        }
        forecast.expect("at least one block")
    }
}

#[derive(Module, Debug)]
pub struct NhitsStack<B: Backend> {
    layers: Vec<Linear<B>>,
    backcast: Linear<B>,
    forecast: Linear<B>,
    /// Steps read (the last ones of the window), steps per input value, steps between
    /// forecast points.
    span: usize,
    pool: usize,
    every: usize,
}

#[derive(Module, Debug)]
pub struct Nhits<B: Backend> {
    stacks: Vec<NhitsStack<B>>,
}

impl<B: Backend> Nhits<B> {
    fn new(spec: &NhitsSpec, shape: Shape, device: &B::Device) -> Self {
        let per_step = shape.targets * shape.outputs;
        let stacks = (0..spec.pools.len())
            .map(|i| {
                let (span, pool) = (spec.span(i, shape.lookback), spec.pools[i]);
                let width = span / pool * shape.inputs;
                NhitsStack {
                    layers: dense(width, spec.hidden, spec.layers, device),
                    backcast: LinearConfig::new(spec.hidden, width).init(device),
                    forecast: LinearConfig::new(spec.hidden, points(shape.horizon, spec.downsample[i]) * per_step)
                        .init(device),
                    span,
                    pool,
                    every: spec.downsample[i],
                }
            })
            .collect();
        Nhits { stacks }
    }

    fn forward(&self, x: Tensor<B, 3>, shape: Shape) -> Tensor<B, 2> {
        let [batch, steps, inputs] = x.dims();
        let per_step = shape.targets * shape.outputs;
        let mut residual = x;
        let mut forecast: Option<Tensor<B, 2>> = None;
        for s in &self.stacks {
            let (coarse, pool, keep) = (s.span / s.pool, s.pool, steps - s.span);
            // Means over `pool` steps, aligned so the last one ends at the origin.
            let read = residual.clone().narrow(1, keep, s.span);
            let pooled =
                read.clone().reshape([batch, coarse, pool, inputs]).mean_dim(2).reshape([batch, coarse * inputs]);
            let h = through(&s.layers, pooled);
            // The backcast is held over each pool's steps and taken off what later stacks read.
            let back =
                s.backcast.forward(h.clone()).reshape([batch, coarse, 1, inputs]).expand([batch, coarse, pool, inputs]);
            let read = read - back.reshape([batch, s.span, inputs]);
            residual = if keep > 0 { Tensor::cat(vec![residual.narrow(1, 0, keep), read], 1) } else { read };
            // Forecast points every `every` steps, linearly interpolated to each step.
            let n = points(shape.horizon, s.every);
            let coefficients = s.forecast.forward(h).reshape([batch, n, per_step]).swap_dims(1, 2);
            let weights = Tensor::<B, 2>::from_data(
                burn::tensor::TensorData::new(interpolation(n, shape.horizon, s.every), [n, shape.horizon]),
                &coefficients.device(),
            );
            let f = coefficients
                .matmul(weights.unsqueeze::<3>())
                .swap_dims(1, 2)
                .reshape([batch, shape.horizon * per_step]);
            forecast = Some(match forecast {
                Some(acc) => acc + f,
                None => f,
            });
        }
        forecast.expect("at least one stack")
    }
}

/// Forecast points a stack emits for `horizon` steps, one every `every` steps: at steps
/// 0, every, 2·every, … and one at or past the last step.
fn points(horizon: usize, every: usize) -> usize {
    (horizon - 1).div_ceil(every) + 1
}

/// `[points, horizon]` weights of linear interpolation: step `h` lies between points
/// `h / every` and the next.
fn interpolation(n: usize, horizon: usize, every: usize) -> Vec<f32> {
    let mut w = vec![0f32; n * horizon];
    for h in 0..horizon {
        let (k, frac) = (h / every, (h % every) as f32 / every as f32);
        w[k * horizon + h] += 1.0 - frac;
        if frac > 0.0 {
            w[(k + 1) * horizon + h] += frac;
        }
    }
    w
}

#[derive(Module, Debug)]
pub struct Dlinear<B: Backend> {
    trend: Linear<B>,
    remainder: Linear<B>,
    kernel: usize,
}

impl<B: Backend> Dlinear<B> {
    fn new(spec: &DlinearSpec, shape: Shape, device: &B::Device) -> Self {
        let width = shape.lookback * shape.inputs;
        // An even or too wide kernel would shift or overrun the window.
        let k = spec.kernel.min(shape.lookback).max(1);
        let kernel = if k.is_multiple_of(2) { k - 1 } else { k };
        Dlinear {
            trend: LinearConfig::new(width, shape.head_width()).init(device),
            remainder: LinearConfig::new(width, shape.head_width()).init(device),
            kernel,
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, steps, inputs] = x.dims();
        let half = self.kernel / 2;
        // Moving average over time with the edges repeated, as DLinear does.
        let first = x.clone().narrow(1, 0, 1).repeat_dim(1, half);
        let last = x.clone().narrow(1, steps - 1, 1).repeat_dim(1, half);
        let padded = Tensor::cat(vec![first, x.clone(), last], 1);
        let sums = padded.cumsum(1);
        let zero = Tensor::zeros([batch, 1, inputs], &x.device());
        let sums = Tensor::cat(vec![zero, sums], 1);
        let trend = (sums.clone().narrow(1, self.kernel, steps) - sums.narrow(1, 0, steps)) / self.kernel as f64;
        let remainder = x - trend.clone();
        self.trend.forward(trend.reshape([batch, steps * inputs]))
            + self.remainder.forward(remainder.reshape([batch, steps * inputs]))
    }
}
