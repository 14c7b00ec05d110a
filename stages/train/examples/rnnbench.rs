use applearner_train::recurrent::kernel::{self, Cell, Dims, Weights};
use std::time::Instant;
fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (batch, inputs, hidden, reps) = (args[0], args[1], args[2], args[3]);
    let steps = 48;
    let cell = if args.get(4) == Some(&1) { Cell::Gru } else { Cell::Lstm };
    let g = cell.gates() * hidden;
    let r = |n: usize| (0..n).map(|i| ((i as f32) * 0.37).sin() * 0.3).collect::<Vec<f32>>();
    let x = r(batch * steps * inputs);
    let (wi, bi, wh, bh) = (r(inputs * g), r(g), r(hidden * g), r(g));
    let w = Weights { w_ih: &wi, b_ih: &bi, w_hh: &wh, b_hh: &bh };
    let d = Dims { batch, steps, inputs, hidden };
    let dhs = r(batch * steps * hidden);
    let (mut f, mut b, mut fo) = (0.0, 0.0, 0.0);
    for _ in 0..reps {
        let t = Instant::now();
        let _ = kernel::forward(cell, d, &x, &w, false);
        fo += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (hs, c) = kernel::forward(cell, d, &x, &w, true);
        f += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = kernel::backward(cell, d, &x, &w, &hs, c, &dhs, inputs > 1);
        b += t.elapsed().as_secs_f64();
    }
    let n = reps as f64;
    println!("forward-only {:.2} ms, forward {:.2} ms, backward {:.2} ms", fo / n * 1e3, f / n * 1e3, b / n * 1e3);
}
