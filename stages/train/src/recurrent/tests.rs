//! The fused layers against finite differences and against the composite path.

use super::kernel::{self, Cell, Dims, SHARD_ROWS, Weights};
use super::{Rnn, RnnSpec, Shape};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use burn_flex::{Flex, FlexDevice};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

type Ad = Autodiff<Flex>;

fn random(n: usize, scale: f32, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect()
}

/// max |a − b| / max |b|: the error relative to the size of the reference.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Σ hs ⊙ r over the kernel's forward, in f64.
fn loss(cell: Cell, d: Dims, x: &[f32], w: [&[f32]; 4], r: &[f32]) -> f64 {
    let weights = Weights { w_ih: w[0], b_ih: w[1], w_hh: w[2], b_hh: w[3] };
    let hs = kernel::forward(cell, d, x, &weights, false).hs;
    hs.iter().zip(r).map(|(h, r)| *h as f64 * *r as f64).sum()
}

#[test]
fn fused_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(7);
    for cell in [Cell::Lstm, Cell::Gru] {
        // Batch 35: one full shard and a partial one.
        for d in [
            Dims { batch: 3, steps: 5, inputs: 2, hidden: 4 },
            Dims { batch: SHARD_ROWS + 3, steps: 4, inputs: 3, hidden: 5 },
        ] {
            let g = cell.gates() * d.hidden;
            let x = random(d.batch * d.steps * d.inputs, 1.0, &mut rng);
            let mut params = [
                random(d.inputs * g, 0.6, &mut rng),
                random(g, 0.6, &mut rng),
                random(d.hidden * g, 0.6, &mut rng),
                random(g, 0.6, &mut rng),
            ];
            let r = random(d.batch * d.steps * d.hidden, 1.0, &mut rng);
            let weights = Weights { w_ih: &params[0], b_ih: &params[1], w_hh: &params[2], b_hh: &params[3] };
            let trace = kernel::forward(cell, d, &x, &weights, true);
            let grads = kernel::backward(cell, d, &x, &weights, trace, &r, true);
            let analytic = [grads.w_ih, grads.b_ih, grads.w_hh, grads.b_hh];
            let step = 1e-2f32;
            for p in 0..4 {
                let mut numeric = Vec::new();
                for i in 0..params[p].len() {
                    let original = params[p][i];
                    let at = |v: f32, params: &mut [Vec<f32>; 4]| {
                        params[p][i] = v;
                        let w = [&params[0][..], &params[1], &params[2], &params[3]];
                        loss(cell, d, &x, w, &r)
                    };
                    let (up, down) = (at(original + step, &mut params), at(original - step, &mut params));
                    params[p][i] = original;
                    numeric.push(((up - down) / (2.0 * step as f64)) as f32);
                }
                let error = relative_error(&analytic[p], &numeric);
                assert!(error < 2e-3, "{cell:?} {d:?} parameter {p}: relative error {error}");
            }
            // The input's gradient, on a sample of its elements.
            let w = [&params[0][..], &params[1], &params[2], &params[3]];
            let dx = grads.x.expect("asked for");
            for i in (0..x.len()).step_by(7) {
                let mut shifted = x.clone();
                shifted[i] += step;
                let up = loss(cell, d, &shifted, w, &r);
                shifted[i] -= 2.0 * step;
                let down = loss(cell, d, &shifted, w, &r);
                let numeric = ((up - down) / (2.0 * step as f64)) as f32;
                assert!(
                    (dx[i] - numeric).abs() < 2e-3 * (1.0 + numeric.abs()),
                    "{cell:?} {d:?} x[{i}]: {} vs {numeric}",
                    dx[i]
                );
            }
        }
    }
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec().expect("f32")
}

/// The composite and fused paths on the same weights and inputs: the last hidden state, the
/// input's gradient and every parameter's, on `Autodiff<Flex>`; and the forward-only path.
fn compare(cell: Cell, batch: usize, steps: usize, inputs: usize, hidden: usize, layers: usize) {
    let device = FlexDevice;
    let spec = RnnSpec { hidden, layers, dropout: 0.0 };
    let shape = Shape { lookback: steps, horizon: 1, inputs, targets: 1, outputs: 1 };
    let rnn = Rnn::<Ad>::new(&spec, shape, cell, &device);
    let x = Tensor::<Ad, 3>::random([batch, steps, inputs], Distribution::Normal(0.0, 1.0), &device);
    let mix = Tensor::<Ad, 2>::random([batch, hidden], Distribution::Normal(0.0, 1.0), &device);
    let mut outs = Vec::new();
    for fused in [false, true] {
        let x = x.clone().detach().require_grad();
        let h = if fused { rnn.fused(x.clone(), cell) } else { rnn.composite(x.clone(), cell) };
        let grads = (h.clone() * mix.clone()).sum().backward();
        let mut all = vec![values(h), values(x.grad(&grads).expect("input gradient"))];
        for layer in &rnn.layers {
            for linear in [&layer.input, &layer.hidden] {
                all.push(values(linear.weight.grad(&grads).expect("weight gradient")));
                all.push(values(linear.bias.as_ref().expect("bias").grad(&grads).expect("bias gradient")));
            }
        }
        outs.push(all);
    }
    for (k, (composite, fused)) in outs[0].iter().zip(&outs[1]).enumerate() {
        let error = relative_error(fused, composite);
        assert!(
            error <= 1e-5,
            "{cell:?} batch {batch} steps {steps} hidden {hidden} layers {layers}: tensor {k} off by {error}"
        );
    }
    // Prediction: the forward-only path on the inner backend gives the same state.
    let inner: Rnn<Flex> = burn::module::AutodiffModule::valid(&rnn);
    let forward_only = values(inner.fused(x.inner(), cell));
    assert!(relative_error(&forward_only, &outs[0][0]) <= 1e-5, "{cell:?}: forward-only path");
}

#[test]
fn fused_layers_match_the_composite_path() {
    let _turn = crate::tests::seeded();
    for cell in [Cell::Lstm, Cell::Gru] {
        compare(cell, 5, 7, 3, 8, 1);
        compare(cell, SHARD_ROWS * 2 + 5, 12, 2, 16, 2);
        compare(cell, 1, 48, 1, 64, 2);
    }
}

#[test]
fn a_shard_split_does_not_depend_on_the_thread_count() {
    let mut rng = StdRng::seed_from_u64(3);
    let d = Dims { batch: 3 * SHARD_ROWS + 1, steps: 6, inputs: 2, hidden: 8 };
    let g = Cell::Lstm.gates() * d.hidden;
    let x = random(d.batch * d.steps * d.inputs, 1.0, &mut rng);
    let p = [
        random(d.inputs * g, 0.5, &mut rng),
        random(g, 0.5, &mut rng),
        random(d.hidden * g, 0.5, &mut rng),
        random(g, 0.5, &mut rng),
    ];
    let w = Weights { w_ih: &p[0], b_ih: &p[1], w_hh: &p[2], b_hh: &p[3] };
    let dhs = random(d.batch * d.steps * d.hidden, 1.0, &mut rng);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        pool.install(|| {
            let trace = kernel::forward(Cell::Lstm, d, &x, &w, true);
            let hs = trace.hs.clone();
            let g = kernel::backward(Cell::Lstm, d, &x, &w, trace, &dhs, true);
            (hs, g.w_ih, g.w_hh, g.b_ih, g.x)
        })
    };
    let one = run(1);
    for threads in [2, 3, 8] {
        let other = run(threads);
        assert!(
            one.0 == other.0 && one.1 == other.1 && one.2 == other.2 && one.3 == other.3 && one.4 == other.4,
            "{threads} threads"
        );
    }
}
