//! One recurrent layer over a whole sequence on the CPU, forward and backward, on plain
//! row-major `f32` slices. The batch is cut into shards of [`SHARD_ROWS`] rows that run on
//! rayon's threads with no barrier per step; their weight gradients are summed in shard
//! order, so a result depends on neither the core count nor the scheduling.

use super::cell;
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// Rows per training shard: a fixed number so the split, and every sum, is the same on any
/// machine.
pub const SHARD_ROWS: usize = 64;

/// Rows per shard when training (the default batch of 256 is four shards) and when
/// predicting (smaller: a shard's working set then stays in the core's cache).
fn shard_rows(keep: bool) -> usize {
    if keep { SHARD_ROWS } else { SHARD_ROWS / 2 }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// A layer's sizes: `x` is `[batch, steps, inputs]`, the hidden states `[batch, steps, hidden]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub steps: usize,
    pub inputs: usize,
    pub hidden: usize,
}

/// A layer's parameters as burn's `Linear` holds them: `w_ih` `[inputs, gates·hidden]`,
/// `w_hh` `[hidden, gates·hidden]`, biases `[gates·hidden]`.
pub struct Weights<'a> {
    pub w_ih: &'a [f32],
    pub b_ih: &'a [f32],
    pub w_hh: &'a [f32],
    pub b_hh: &'a [f32],
}

/// What a shard's backward needs, `[rows, steps, …]`: the activated gates, and LSTM's cell
/// states (`hidden` wide) or GRU's hidden-side products with their bias (`3·hidden`).
#[derive(Debug, Clone)]
pub struct Cache {
    gates: Vec<f32>,
    extra: Vec<f32>,
}

/// A forward pass: the hidden states and, for the backward, the shards' caches.
#[derive(Debug, Clone)]
pub struct Trace {
    pub hs: Vec<f32>,
    caches: Vec<Cache>,
}

/// Weight and bias gradients, and the input's (when asked for).
#[derive(Debug)]
pub struct Grads {
    pub x: Option<Vec<f32>>,
    pub w_ih: Vec<f32>,
    pub b_ih: Vec<f32>,
    pub w_hh: Vec<f32>,
    pub b_hh: Vec<f32>,
}

/// A matrix inside a slice: element (i, j) at `i·rs + j·cs`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

fn mat(data: &[f32], rs: usize, cs: usize) -> Mat<'_> {
    Mat { data, rs, cs }
}

/// `dst[m×n] (+)= a[m×k] · b[k×n]`, `dst` rows `dst_rs` apart; one thread.
#[allow(clippy::too_many_arguments)]
fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], dst_rs: usize, accumulate: bool, a: Mat, b: Mat) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |x: Mat, rows: usize, cols: usize| (rows - 1) * x.rs + (cols.max(1) - 1) * x.cs;
    assert!((m - 1) * dst_rs + n <= dst.len(), "matmul: destination too small");
    assert!(k == 0 || (last(a, m, k) < a.data.len() && last(b, k, n) < b.data.len()), "matmul: operand too small");
    if k == 0 {
        if !accumulate {
            (0..m).for_each(|i| dst[i * dst_rs..i * dst_rs + n].fill(0.0));
        }
        return;
    }
    // SAFETY: every element read or written lies inside its slice (checked above), and
    // `dst` is borrowed mutably, so it overlaps neither operand.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Column sums of a `[rows, width]` matrix, rows added in order.
fn column_sums(m: &[f32], width: usize) -> Vec<f32> {
    let mut sums = vec![0.0; width];
    for row in m.chunks_exact(width) {
        sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
    }
    sums
}

/// The hidden states `[batch, steps, hidden]` of the layer over `x`, with each shard's
/// cache for the backward when `keep` (prediction keeps nothing).
pub fn forward(cell: Cell, d: Dims, x: &[f32], w: &Weights, keep: bool) -> Trace {
    assert_eq!(x.len(), d.batch * d.steps * d.inputs, "forward: input shape");
    let mut hs = vec![0.0; d.batch * d.steps * d.hidden];
    let caches = hs
        .par_chunks_mut(shard_rows(keep) * d.steps * d.hidden)
        .zip(x.par_chunks(shard_rows(keep) * d.steps * d.inputs))
        .map(|(hs, x)| {
            let cache = forward_shard(cell, Dims { batch: hs.len() / (d.steps * d.hidden), ..d }, x, w, hs, keep);
            keep.then_some(cache)
        })
        .collect::<Vec<_>>();
    Trace { hs, caches: caches.into_iter().flatten().collect() }
}

/// One shard's forward. Training keeps every step's gates and states and projects the
/// inputs of all steps in one product; prediction keeps one step's gates and two cell
/// states, so its working set stays in cache, and projects step by step.
fn forward_shard(cell: Cell, d: Dims, x: &[f32], w: &Weights, hs: &mut [f32], keep: bool) -> Cache {
    let (rows, steps, h, g) = (d.batch, d.steps, d.hidden, cell.gates() * d.hidden);
    // LSTM adds both biases to the input side; GRU keeps the hidden side's apart (its `n`
    // gate scales it by `r`).
    let bias: Vec<f32> = match cell {
        Cell::Lstm => w.b_ih.iter().zip(w.b_hh).map(|(a, b)| a + b).collect(),
        Cell::Gru => w.b_ih.to_vec(),
    };
    let mut buffers = Buffers::new(cell, d, keep);
    let slots = buffers.slots;
    for t in 0..steps {
        if t == 0 || !keep {
            // The biases, then the input side: of every step at once, or of this step.
            fill(&mut buffers.gates, &bias);
            if cell == Cell::Gru {
                fill(&mut buffers.extra, w.b_hh);
            }
            let (m, x_t, x_rs) =
                if keep { (rows * steps, x, d.inputs) } else { (rows, &x[t * d.inputs..], steps * d.inputs) };
            matmul(m, g, d.inputs, &mut buffers.gates, g, true, mat(x_t, x_rs, 1), mat(w.w_ih, g, 1));
        }
        if t > 0 {
            let recurrent = match cell {
                Cell::Lstm => &mut buffers.gates[t % slots * g..],
                Cell::Gru => &mut buffers.extra[t % slots * g..],
            };
            let h_prev = mat(&hs[(t - 1) * h..], steps * h, 1);
            matmul(rows, g, h, recurrent, slots * g, true, h_prev, mat(w.w_hh, g, 1));
        }
        buffers.cells(cell, d, t, hs);
    }
    Cache { gates: buffers.gates, extra: buffers.extra }
}

/// A shard's forward buffers, `[rows, slots, width]` with step `t` in slot `t % slots`: the
/// gates (and GRU's hidden side) of every step or of one, LSTM's cell states of every step
/// or of two (the previous and this one).
struct Buffers {
    gates: Vec<f32>,
    extra: Vec<f32>,
    slots: usize,
    cell_slots: usize,
}

impl Buffers {
    fn new(cell: Cell, d: Dims, keep: bool) -> Self {
        let (slots, cell_slots) = if keep { (d.steps, d.steps) } else { (1, 2) };
        let g = cell.gates() * d.hidden;
        let extra = match cell {
            Cell::Lstm => vec![0.0; d.batch * cell_slots * d.hidden],
            Cell::Gru => vec![0.0; d.batch * slots * g],
        };
        Buffers { gates: vec![0.0; d.batch * slots * g], extra, slots, cell_slots }
    }

    /// Step `t`'s cells, row by row: the gates activated, the hidden states into `hs`.
    fn cells(&mut self, cell: Cell, d: Dims, t: usize, hs: &mut [f32]) {
        let (h, g) = (d.hidden, cell.gates() * d.hidden);
        let zeros = vec![0.0; h];
        for b in 0..d.batch {
            let at = b * d.steps + t;
            let (before, now) = hs.split_at_mut(at * h);
            let row = (b * self.slots + t % self.slots) * g;
            let gates = &mut self.gates[row..row + g];
            match cell {
                Cell::Lstm => {
                    let state = |t: usize| (b * self.cell_slots + t % self.cell_slots) * h;
                    let (c_prev, c) = if t > 0 {
                        two_rows(&mut self.extra, state(t - 1), state(t), h)
                    } else {
                        (&zeros[..], &mut self.extra[state(t)..][..h])
                    };
                    cell::lstm_forward(gates, c_prev, c, &mut now[..h]);
                }
                Cell::Gru => {
                    let h_prev = if t > 0 { &before[(at - 1) * h..] } else { &zeros };
                    cell::gru_forward(gates, &self.extra[row..row + g], h_prev, &mut now[..h]);
                }
            }
        }
    }
}

/// Every `row.len()`-wide row of `buf` set to `row`.
fn fill(buf: &mut [f32], row: &[f32]) {
    buf.chunks_exact_mut(row.len()).for_each(|r| r.copy_from_slice(row));
}

/// Rows `read` (shared) and `write` (mutable), `width` long, of one buffer; they differ.
fn two_rows(buf: &mut [f32], read: usize, write: usize, width: usize) -> (&[f32], &mut [f32]) {
    if read < write {
        let (a, b) = buf.split_at_mut(write);
        (&a[read..read + width], &mut b[..width])
    } else {
        let (a, b) = buf.split_at_mut(read);
        (&b[..width], &mut a[write..write + width])
    }
}

/// Gradients of the layer given the hidden states' gradient `dhs` `[batch, steps, hidden]`,
/// from the inputs and the forward's trace.
pub fn backward(cell: Cell, d: Dims, x: &[f32], w: &Weights, trace: Trace, dhs: &[f32], want_x: bool) -> Grads {
    let (rows, g) = (SHARD_ROWS * d.steps, cell.gates() * d.hidden);
    let Trace { hs, caches } = trace;
    let shards: Vec<Grads> = caches
        .into_par_iter()
        .zip(x.par_chunks(rows * d.inputs))
        .zip(hs.par_chunks(rows * d.hidden).zip(dhs.par_chunks(rows * d.hidden)))
        .map(|((cache, x), (hs, dhs))| {
            let shard = Dims { batch: hs.len() / (d.steps * d.hidden), ..d };
            backward_shard(cell, shard, x, w, hs, cache, dhs, want_x)
        })
        .collect();
    let mut total = Grads {
        x: want_x.then(Vec::new),
        w_ih: vec![0.0; d.inputs * g],
        b_ih: vec![0.0; g],
        w_hh: vec![0.0; d.hidden * g],
        b_hh: vec![0.0; g],
    };
    let add = |sum: &mut Vec<f32>, part: &[f32]| sum.iter_mut().zip(part).for_each(|(s, p)| *s += p);
    for shard in shards {
        add(&mut total.w_ih, &shard.w_ih);
        add(&mut total.b_ih, &shard.b_ih);
        add(&mut total.w_hh, &shard.w_hh);
        add(&mut total.b_hh, &shard.b_hh);
        if let (Some(all), Some(part)) = (&mut total.x, shard.x) {
            all.extend(part);
        }
    }
    total
}

#[allow(clippy::too_many_arguments)]
fn backward_shard(
    cell: Cell,
    d: Dims,
    x: &[f32],
    w: &Weights,
    hs: &[f32],
    mut cache: Cache,
    dhs: &[f32],
    want_x: bool,
) -> Grads {
    through_time(cell, d, w, hs, &mut cache, dhs);
    let (rows, steps, h, g) = (d.batch, d.steps, d.hidden, cell.gates() * d.hidden);
    // Each hidden state beside the gradient of the step after it (zero before the first).
    let mut h_prev = vec![0.0; rows * steps * h];
    for b in 0..rows {
        let at = b * steps * h;
        h_prev[at + h..at + steps * h].copy_from_slice(&hs[at..at + (steps - 1) * h]);
    }
    let Cache { gates, extra } = cache;
    let d_hidden = match cell {
        Cell::Lstm => &gates,
        Cell::Gru => &extra,
    };
    let n = rows * steps;
    let mut w_ih = vec![0.0; d.inputs * g];
    matmul(d.inputs, g, n, &mut w_ih, g, false, mat(x, 1, d.inputs), mat(&gates, g, 1));
    let mut w_hh = vec![0.0; h * g];
    matmul(h, g, n, &mut w_hh, g, false, mat(&h_prev, 1, h), mat(d_hidden, g, 1));
    let dx = want_x.then(|| {
        let mut dx = vec![0.0; n * d.inputs];
        matmul(n, d.inputs, g, &mut dx, d.inputs, false, mat(&gates, g, 1), mat(w.w_ih, 1, g));
        dx
    });
    Grads { x: dx, w_ih, b_ih: column_sums(&gates, g), w_hh, b_hh: column_sums(d_hidden, g) }
}

/// Back-propagation through time: the cache's activations become the gradients of the
/// pre-activations, input side in `gates`, hidden side in `gates` (LSTM) or `extra` (GRU).
fn through_time(cell: Cell, d: Dims, w: &Weights, hs: &[f32], cache: &mut Cache, dhs: &[f32]) {
    let (rows, steps, h, g) = (d.batch, d.steps, d.hidden, cell.gates() * d.hidden);
    let Cache { gates, extra } = cache;
    let zeros = vec![0.0; h];
    let (mut dh, mut dh_next, mut dc) = (vec![0.0; h], vec![0.0; rows * h], vec![0.0; rows * h]);
    for t in (0..steps).rev() {
        for b in 0..rows {
            let at = b * steps + t;
            let next = &mut dh_next[b * h..(b + 1) * h];
            dh.iter_mut().zip(&dhs[at * h..(at + 1) * h]).zip(next.iter()).for_each(|((d, a), n)| *d = a + n);
            let gate_row = &mut gates[at * g..(at + 1) * g];
            match cell {
                Cell::Lstm => {
                    let c_prev = if t > 0 { &extra[(at - 1) * h..at * h] } else { &zeros };
                    let dc = &mut dc[b * h..(b + 1) * h];
                    cell::lstm_backward(gate_row, &extra[at * h..(at + 1) * h], c_prev, &dh, dc);
                }
                Cell::Gru => {
                    let h_prev = if t > 0 { &hs[(at - 1) * h..at * h] } else { &zeros };
                    cell::gru_backward(gate_row, &mut extra[at * g..(at + 1) * g], h_prev, &dh, next);
                }
            }
        }
        if t > 0 {
            // The recurrent product's gradient reaches the previous step's hidden state.
            let (source, accumulate) = match cell {
                Cell::Lstm => (&gates[t * g..], false),
                Cell::Gru => (&extra[t * g..], true),
            };
            matmul(rows, h, g, &mut dh_next, h, accumulate, mat(source, steps * g, 1), mat(w.w_hh, 1, g));
        }
    }
}
