//! The fused layer on flex: forward only on `Flex` (prediction and evaluation keep no
//! caches), with its backward through time on `Autodiff<Flex>`.

use super::kernel::{self, Cell, Dims, Trace, Weights};
use super::{FusedLayer, Recurrent, Rnn};
use std::sync::Arc;

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::{Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};

impl Recurrent for Flex {
    fn last_hidden(rnn: &Rnn<Self>, x: Tensor<Self, 3>, cell: Cell) -> Tensor<Self, 2> {
        rnn.fused(x, cell)
    }
}

impl<C: CheckpointStrategy> Recurrent for Autodiff<Flex, C> {
    fn last_hidden(rnn: &Rnn<Self>, x: Tensor<Self, 3>, cell: Cell) -> Tensor<Self, 2> {
        rnn.fused(x, cell)
    }
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("the fused layer runs on contiguous f32 tensors")
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The layer's inputs as contiguous tensors, and its sizes.
#[derive(Debug, Clone)]
struct Inputs {
    cell: Cell,
    dims: Dims,
    x: FlexTensor,
    w_ih: FlexTensor,
    b_ih: FlexTensor,
    w_hh: FlexTensor,
    b_hh: FlexTensor,
}

impl Inputs {
    fn new(cell: Cell, [x, w_ih, b_ih, w_hh, b_hh]: [&FlexTensor; 5]) -> Self {
        let shape = &x.layout().shape();
        let hidden = w_hh.layout().shape()[0];
        let dims = Dims { batch: shape[0], steps: shape[1], inputs: shape[2], hidden };
        let g = cell.gates() * hidden;
        assert_eq!(w_ih.layout().shape().to_vec(), vec![dims.inputs, g], "fused layer: input weight shape");
        assert_eq!(w_hh.layout().shape().to_vec(), vec![hidden, g], "fused layer: hidden weight shape");
        // Row-major copies only where a tensor is a strided view.
        let [x, w_ih, b_ih, w_hh, b_hh] = [x, w_ih, b_ih, w_hh, b_hh].map(FlexTensor::to_contiguous);
        Inputs { cell, dims, x, w_ih, b_ih, w_hh, b_hh }
    }

    fn weights(&self) -> Weights<'_> {
        Weights { w_ih: slice(&self.w_ih), b_ih: slice(&self.b_ih), w_hh: slice(&self.w_hh), b_hh: slice(&self.b_hh) }
    }

    fn forward(&self, keep: bool) -> Trace {
        kernel::forward(self.cell, self.dims, slice(&self.x), &self.weights(), keep)
    }

    fn hidden_states(&self, hs: Vec<f32>) -> FlexTensor {
        let d = self.dims;
        tensor(hs, vec![d.batch, d.steps, d.hidden])
    }
}

impl FusedLayer for Flex {
    fn fused_layer(
        cell: Cell,
        x: FlexTensor,
        w_ih: FlexTensor,
        b_ih: FlexTensor,
        w_hh: FlexTensor,
        b_hh: FlexTensor,
    ) -> FlexTensor {
        let inputs = Inputs::new(cell, [&x, &w_ih, &b_ih, &w_hh, &b_hh]);
        inputs.hidden_states(inputs.forward(false).hs)
    }
}

/// What the backward needs: the inputs and the forward's trace.
#[derive(Debug, Clone)]
struct Saved {
    inputs: Inputs,
    trace: Trace,
}

#[derive(Debug)]
struct LayerBackward;

impl Backward<Flex, 5> for LayerBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x, w_ih, b_ih, w_hh, b_hh] = ops.parents.map(|parent| parent.map(|node| node.id));
        let dhs = grads.consume::<Flex>(&ops.node).to_contiguous();
        // The state is not shared once the graph runs backward; the caches become the gradients.
        let Saved { inputs, trace } = Arc::try_unwrap(ops.state).unwrap_or_else(|shared| (*shared).clone());
        let d = inputs.dims;
        let g = kernel::backward(inputs.cell, d, slice(&inputs.x), &inputs.weights(), trace, slice(&dhs), x.is_some());
        let width = inputs.cell.gates() * d.hidden;
        let mut register = |node: Option<NodeId>, values: Vec<f32>, shape: Vec<usize>| {
            if let Some(id) = node {
                grads.register::<Flex>(id, tensor(values, shape));
            }
        };
        register(x, g.x.unwrap_or_default(), vec![d.batch, d.steps, d.inputs]);
        register(w_ih, g.w_ih, vec![d.inputs, width]);
        register(b_ih, g.b_ih, vec![width]);
        register(w_hh, g.w_hh, vec![d.hidden, width]);
        register(b_hh, g.b_hh, vec![width]);
    }
}

impl<C: CheckpointStrategy> FusedLayer for Autodiff<Flex, C> {
    fn fused_layer(
        cell: Cell,
        x: Self::FloatTensorPrimitive,
        w_ih: Self::FloatTensorPrimitive,
        b_ih: Self::FloatTensorPrimitive,
        w_hh: Self::FloatTensorPrimitive,
        b_hh: Self::FloatTensorPrimitive,
    ) -> Self::FloatTensorPrimitive {
        let nodes = [&x, &w_ih, &b_ih, &w_hh, &b_hh].map(|t| t.node.clone());
        let inputs =
            Inputs::new(cell, [&x.primitive, &w_ih.primitive, &b_ih.primitive, &w_hh.primitive, &b_hh.primitive]);
        match LayerBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let trace = inputs.forward(true);
                let hs = inputs.hidden_states(trace.hs.clone());
                prep.finish(Arc::new(Saved { inputs, trace }), hs)
            }
            OpsKind::UnTracked(prep) => prep.finish(inputs.hidden_states(inputs.forward(false).hs)),
        }
    }
}
