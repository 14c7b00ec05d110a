//! The element-wise part of a recurrent step, forward and backward, one batch row at a time.
//!
//! Each function takes its rows as separate slices: LLVM vectorises a loop over slices that
//! are distinct arguments (it knows they do not overlap), not one that indexes many views
//! of one buffer. Nothing here uses fused multiply-add, so results do not depend on the CPU.

/// e^x to about 1e-7 relative error, branch-free so loops of it vectorise: x = k·ln 2 + r,
/// a degree-6 polynomial for e^r (Cephes' `expf` coefficients), 2^k from the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let rounded = x * LOG2E + ROUND;
    let k = rounded - ROUND;
    let r = x - k * 0.693_359_4 + k * 2.121_944_4e-4;
    let p =
        ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // k sits in the low bits of `rounded`: 2^k without a float-to-int conversion (which
    // Rust saturates, and LLVM then does not vectorise).
    let k_bits = rounded.to_bits().wrapping_sub(ROUND.to_bits());
    e * f32::from_bits(k_bits.wrapping_add(127) << 23)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

#[inline(always)]
pub fn sigmoid_in_place(v: &mut [f32]) {
    for x in v {
        *x = sigmoid(*x);
    }
}

#[inline(always)]
pub fn tanh_in_place(v: &mut [f32]) {
    for x in v {
        *x = tanh(*x);
    }
}

/// Each entry point as the widest vector code this CPU runs (AVX-512, AVX2, else the
/// baseline SSE2): the same operations in the same order, so the same results.
macro_rules! widest {
    ($(pub fn $name:ident => $imp:ident($($arg:ident: $ty:ty),*);)*) => {$(
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn v4($($arg: $ty),*) { $imp($($arg),*) }
                #[target_feature(enable = "avx2")]
                fn v3($($arg: $ty),*) { $imp($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: as above.
                    return unsafe { v3($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    )*};
}

widest! {
    pub fn lstm_forward => lstm_forward_imp(gates: &mut [f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]);
    pub fn lstm_backward => lstm_backward_imp(gates: &mut [f32], c: &[f32], c_prev: &[f32], dh: &[f32], dc: &mut [f32]);
    pub fn gru_forward => gru_forward_imp(x: &mut [f32], hw: &[f32], h_prev: &[f32], h: &mut [f32]);
    pub fn gru_backward => gru_backward_imp(x: &mut [f32], hw: &mut [f32], h_prev: &[f32], dh: &[f32], dh_prev: &mut [f32]);
}

/// LSTM forward: pre-activations `[i f g o]` in `gates` are replaced by their activations;
/// `c = f·c_prev + i·g`, `h = o·tanh(c)`.
#[inline(always)]
fn lstm_forward_imp(gates: &mut [f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    sigmoid_in_place(&mut gates[..2 * n]);
    tanh_in_place(&mut gates[2 * n..3 * n]);
    sigmoid_in_place(&mut gates[3 * n..]);
    let (i, rest) = gates.split_at(n);
    let (f, rest) = rest.split_at(n);
    let (g, o) = rest.split_at(n);
    lstm_state(i, f, g, o, c_prev, c, h);
}

#[inline(always)]
fn lstm_state(i: &[f32], f: &[f32], g: &[f32], o: &[f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    let (i, f, g, o, c_prev, h) = (&i[..n], &f[..n], &g[..n], &o[..n], &c_prev[..n], &mut h[..n]);
    for j in 0..n {
        c[j] = f[j] * c_prev[j] + i[j] * g[j];
        h[j] = o[j] * tanh(c[j]);
    }
}

/// LSTM backward for one row and step: the activated gates in `gates` become the gradients
/// of their pre-activations; `dc` (the cell-state gradient from the step after) becomes the
/// one for `c_prev`. `dh` is the hidden state's whole gradient at this step.
#[inline(always)]
fn lstm_backward_imp(gates: &mut [f32], c: &[f32], c_prev: &[f32], dh: &[f32], dc: &mut [f32]) {
    let n = c.len();
    let (i, rest) = gates.split_at_mut(n);
    let (f, rest) = rest.split_at_mut(n);
    let (g, o) = rest.split_at_mut(n);
    lstm_gradients(i, f, g, o, c, c_prev, dh, dc);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn lstm_gradients(
    i: &mut [f32],
    f: &mut [f32],
    g: &mut [f32],
    o: &mut [f32],
    c: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dc: &mut [f32],
) {
    let n = c.len();
    let (i, f, g, o, c_prev, dh, dc) =
        (&mut i[..n], &mut f[..n], &mut g[..n], &mut o[..n], &c_prev[..n], &dh[..n], &mut dc[..n]);
    for j in 0..n {
        let (ij, fj, gj, oj) = (i[j], f[j], g[j], o[j]);
        let tc = tanh(c[j]);
        let d_c = dc[j] + dh[j] * oj * (1.0 - tc * tc);
        o[j] = dh[j] * tc * oj * (1.0 - oj);
        i[j] = d_c * gj * ij * (1.0 - ij);
        f[j] = d_c * c_prev[j] * fj * (1.0 - fj);
        g[j] = d_c * ij * (1.0 - gj * gj);
        dc[j] = d_c * fj;
    }
}

/// GRU forward: `x` holds the input side's `[r z n]` pre-activations and becomes
/// `[r z n]` activated; `hw` the hidden side's (with its bias), kept for the backward.
/// `r = σ(x_r + h_r)`, `z = σ(x_z + h_z)`, `n = tanh(x_n + r·h_n)`, `h = n + z·(h_prev − n)`.
#[inline(always)]
fn gru_forward_imp(x: &mut [f32], hw: &[f32], h_prev: &[f32], h: &mut [f32]) {
    let n = h.len();
    for (a, b) in x[..2 * n].iter_mut().zip(&hw[..2 * n]) {
        *a += b;
    }
    sigmoid_in_place(&mut x[..2 * n]);
    let (rz, nx) = x.split_at_mut(2 * n);
    let (r, z) = rz.split_at(n);
    gru_state(r, z, nx, &hw[2 * n..], h_prev, h);
}

#[inline(always)]
fn gru_state(r: &[f32], z: &[f32], nx: &mut [f32], hn: &[f32], h_prev: &[f32], h: &mut [f32]) {
    let n = h.len();
    let (r, z, nx, hn, h_prev) = (&r[..n], &z[..n], &mut nx[..n], &hn[..n], &h_prev[..n]);
    for j in 0..n {
        let a = tanh(nx[j] + r[j] * hn[j]);
        nx[j] = a;
        h[j] = a + z[j] * (h_prev[j] - a);
    }
}

/// GRU backward for one row and step: `x` (activated `[r z n]`) becomes the input side's
/// pre-activation gradients, `hw` (hidden side, `h_n` used) the hidden side's; `dh_prev`
/// receives the gradient that flows straight to the previous hidden state (`dh·z`).
#[inline(always)]
fn gru_backward_imp(x: &mut [f32], hw: &mut [f32], h_prev: &[f32], dh: &[f32], dh_prev: &mut [f32]) {
    let n = dh.len();
    let (r, rest) = x.split_at_mut(n);
    let (z, a) = rest.split_at_mut(n);
    let (hr, rest) = hw.split_at_mut(n);
    let (hz, hn) = rest.split_at_mut(n);
    gru_gradients([r, z, a], [hr, hz, hn], h_prev, dh, dh_prev);
}

#[inline(always)]
fn gru_gradients(x: [&mut [f32]; 3], hw: [&mut [f32]; 3], h_prev: &[f32], dh: &[f32], dh_prev: &mut [f32]) {
    let n = dh.len();
    let [r, z, a] = x;
    let [hr, hz, hn] = hw;
    let (r, z, a, hr, hz, hn, h_prev, dh_prev) = (
        &mut r[..n],
        &mut z[..n],
        &mut a[..n],
        &mut hr[..n],
        &mut hz[..n],
        &mut hn[..n],
        &h_prev[..n],
        &mut dh_prev[..n],
    );
    for j in 0..n {
        let (rj, zj, aj) = (r[j], z[j], a[j]);
        let da = dh[j] * (1.0 - zj) * (1.0 - aj * aj);
        let dz = dh[j] * (h_prev[j] - aj) * zj * (1.0 - zj);
        let dr = da * hn[j] * rj * (1.0 - rj);
        dh_prev[j] = dh[j] * zj;
        (r[j], z[j], a[j]) = (dr, dz, da);
        (hr[j], hz[j], hn[j]) = (dr, dz, da * rj);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn activations_match_the_standard_library() {
        let mut worst = (0.0f32, 0.0f32);
        for k in -20_000..=20_000 {
            let x = k as f32 * 1e-3;
            worst.0 = worst.0.max((super::sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs());
            worst.1 = worst.1.max((super::tanh(x) - x.tanh()).abs());
        }
        assert!(worst.0 < 2e-7 && worst.1 < 4e-7, "{worst:?}");
        assert!((0.0..1e-30).contains(&super::sigmoid(-200.0)));
        assert_eq!(super::tanh(100.0), 1.0);
        assert_eq!(super::tanh(-100.0), -1.0);
        assert!(super::sigmoid(f32::NAN).is_nan());
    }
}
