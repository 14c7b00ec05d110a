//! The recurrent models (LSTM, GRU): stacked layers over the window, the last hidden state
//! to the head. Two ways to run a layer, chosen by the backend through [`Recurrent`]:
//!
//! - composite: burn's tensor operations, one step at a time: every backend (CUDA included);
//! - fused (flex, with and without autodiff): the whole layer as one operation
//!   ([`FusedLayer`]) on our own CPU kernel ([`kernel`]), with a hand-written backward
//!   through time. A step's products are too small for flex to spread over cores and
//!   autodiff would record a dozen small operations per step; the kernel does one product
//!   for the input side of every step, one per step for the hidden side and vectorised
//!   gates, with the batch split over the cores.

mod cell;
mod flex;
pub mod kernel;
#[cfg(test)]
mod tests;

pub use kernel::Cell;

use applearner_contracts::model::{RnnSpec, Shape};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// A backend's way of running recurrent layers: the composite one unless it has better.
pub trait Recurrent: Backend {
    /// The last hidden state `[batch, hidden]` of `rnn` over `x` `[batch, steps, inputs]`.
    fn last_hidden(rnn: &Rnn<Self>, x: Tensor<Self, 3>, cell: Cell) -> Tensor<Self, 2> {
        rnn.composite(x, cell)
    }
}

/// A backend that trains on [`Recurrent`] layers and evaluates on its inner backend's.
pub trait TrainBackend: AutodiffBackend<InnerBackend: Recurrent> + Recurrent {}

impl<B: AutodiffBackend<InnerBackend: Recurrent> + Recurrent> TrainBackend for B {}

/// One recurrent layer as a single operation: `x` `[batch, steps, inputs]` → hidden states
/// `[batch, steps, hidden]`, with burn's `Linear` weights and biases of the input and
/// hidden sides (gates in the order of [`lstm_step`] / [`gru_step`]).
pub trait FusedLayer: Backend {
    fn fused_layer(
        cell: Cell,
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

#[cfg(feature = "cuda")]
impl Recurrent for burn::backend::Cuda {}

#[cfg(feature = "cuda")]
impl<C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy> Recurrent
    for burn::backend::Autodiff<burn::backend::Cuda, C>
{
}

/// One layer's input and hidden sides, all gates at once (two products per step; burn's
/// `nn::Lstm` runs eight and, under autodiff, copies its output every step).
#[derive(Module, Debug)]
pub struct RnnLayer<B: Backend> {
    input: Linear<B>,
    hidden: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Rnn<B: Backend> {
    layers: Vec<RnnLayer<B>>,
    dropout: Dropout,
    head: Linear<B>,
    width: usize,
}

impl<B: Backend> Rnn<B> {
    pub fn new(spec: &RnnSpec, shape: Shape, cell: Cell, device: &B::Device) -> Self {
        let gates = cell.gates();
        let layers = (0..spec.layers)
            .map(|l| {
                let d_in = if l == 0 { shape.inputs } else { spec.hidden };
                RnnLayer {
                    input: LinearConfig::new(d_in, gates * spec.hidden).init(device),
                    hidden: LinearConfig::new(spec.hidden, gates * spec.hidden).init(device),
                }
            })
            .collect();
        Rnn {
            layers,
            dropout: DropoutConfig::new(spec.dropout).init(),
            head: LinearConfig::new(spec.hidden, shape.head_width()).init(device),
            width: spec.hidden,
        }
    }

    /// `[batch, lookback, inputs]` → the head's raw outputs `[batch, head width]`.
    pub fn forward(&self, x: Tensor<B, 3>, cell: Cell) -> Tensor<B, 2>
    where
        B: Recurrent,
    {
        self.head.forward(B::last_hidden(self, x, cell))
    }

    /// The last hidden state through burn's tensor operations, one step at a time.
    pub fn composite(&self, x: Tensor<B, 3>, cell: Cell) -> Tensor<B, 2> {
        let step = match cell {
            Cell::Lstm => lstm_step,
            Cell::Gru => gru_step,
        };
        let [batch, steps, _] = x.dims();
        let device = x.device();
        // One tensor per step throughout: slicing a tracked [batch, steps, …] tensor per
        // step would cost a full-size gradient per slice in the backward pass.
        let mut seq: Vec<Tensor<B, 2>> = (0..steps).map(|t| x.clone().narrow(1, t, 1).squeeze_dim(1)).collect();
        let mut h = Tensor::zeros([batch, self.width], &device);
        for (l, layer) in self.layers.iter().enumerate() {
            h = Tensor::zeros([batch, self.width], &device);
            let mut c = Tensor::zeros([batch, self.width], &device);
            let last = l + 1 == self.layers.len();
            let mut outputs = Vec::with_capacity(if last { 0 } else { steps });
            for x_t in seq {
                let x_t = if l > 0 { self.dropout.forward(x_t) } else { x_t };
                (h, c) = step(layer.input.forward(x_t), layer, h, c);
                if !last {
                    outputs.push(h.clone());
                }
            }
            seq = outputs;
        }
        h
    }

    /// The last hidden state, each layer one [`FusedLayer`] operation.
    pub fn fused(&self, x: Tensor<B, 3>, cell: Cell) -> Tensor<B, 2>
    where
        B: FusedLayer,
    {
        let [batch, steps, _] = x.dims();
        let device = x.device();
        let primitive = |t: Tensor<B, 2>| t.into_primitive().tensor();
        let bias = |linear: &Linear<B>| match &linear.bias {
            Some(b) => b.val().into_primitive().tensor(),
            None => Tensor::<B, 1>::zeros([linear.weight.dims()[1]], &device).into_primitive().tensor(),
        };
        let mut seq = x;
        for (l, layer) in self.layers.iter().enumerate() {
            let input = if l > 0 { self.dropout.forward(seq) } else { seq };
            let out = B::fused_layer(
                cell,
                input.into_primitive().tensor(),
                primitive(layer.input.weight.val()),
                bias(&layer.input),
                primitive(layer.hidden.weight.val()),
                bias(&layer.hidden),
            );
            seq = Tensor::from_primitive(TensorPrimitive::Float(out));
        }
        seq.narrow(1, steps - 1, 1).reshape([batch, self.width])
    }
}

/// One step of a cell: (gates from the input, the layer, hidden, cell) → (hidden, cell).
pub fn lstm_step<B: Backend>(
    gates_x: Tensor<B, 2>,
    layer: &RnnLayer<B>,
    h: Tensor<B, 2>,
    c: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let gates = gates_x + layer.hidden.forward(h);
    let [i, f, g, o]: [Tensor<B, 2>; 4] = gates.chunk(4, 1).try_into().expect("four gates");
    let c = sigmoid(f) * c + sigmoid(i) * tanh(g);
    let h = sigmoid(o) * tanh(c.clone());
    (h, c)
}

/// A GRU step (the cell state passes through unused): gates `[r z n]`.
pub fn gru_step<B: Backend>(
    gates_x: Tensor<B, 2>,
    layer: &RnnLayer<B>,
    h: Tensor<B, 2>,
    c: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [xr, xz, xn]: [Tensor<B, 2>; 3] = gates_x.chunk(3, 1).try_into().expect("three gates");
    let [hr, hz, hn]: [Tensor<B, 2>; 3] = layer.hidden.forward(h.clone()).chunk(3, 1).try_into().expect("three gates");
    let r = sigmoid(xr + hr);
    let z = sigmoid(xz + hz);
    let n = tanh(xn + r * hn);
    let h = n.clone() + z * (h - n);
    (h, c)
}
