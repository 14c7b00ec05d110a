//! What a model's raw outputs mean, and the loss that trains them.

pub use applearner_contracts::model::{LossSpec, default_quantiles};
use burn::tensor::Tensor;
use burn::tensor::activation::softplus;
use burn::tensor::backend::Backend;

/// Smallest scale of a Gaussian head: keeps the likelihood finite on flat series.
const MIN_SIGMA: f64 = 1e-3;

/// What a loss's outputs mean on a backend: decoding, the loss itself, point and quantiles.
pub trait Head {
    fn decode<B: Backend>(&self, raw: Tensor<B, 4>) -> Tensor<B, 4>;
    fn loss<B: Backend>(&self, decoded: Tensor<B, 4>, y: Tensor<B, 3>) -> Tensor<B, 1>;
    fn point<B: Backend>(&self, decoded: Tensor<B, 4>) -> Tensor<B, 3>;
    fn quantiles<B: Backend>(&self, decoded: Tensor<B, 4>) -> Option<Tensor<B, 4>>;
}

impl Head for LossSpec {
    /// The head's meaning of `raw` `[batch, horizon, targets, outputs]`: point forecasts,
    /// quantiles made increasing (the first, then softplus steps), or mean and scale.
    fn decode<B: Backend>(&self, raw: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            LossSpec::Quantile { quantiles } if quantiles.len() > 1 => {
                let [b, h, t, q] = raw.dims();
                let first = raw.clone().narrow(3, 0, 1);
                let steps = softplus(raw.narrow(3, 1, q - 1), 1.0).cumsum(3);
                Tensor::cat(vec![first.clone(), first.expand([b, h, t, q - 1]) + steps], 3)
            }
            LossSpec::Gaussian => {
                let mean = raw.clone().narrow(3, 0, 1);
                let sigma = softplus(raw.narrow(3, 1, 1), 1.0) + MIN_SIGMA;
                Tensor::cat(vec![mean, sigma], 3)
            }
            _ => raw,
        }
    }

    /// Mean loss of decoded outputs against `y` `[batch, horizon, targets]`.
    fn loss<B: Backend>(&self, decoded: Tensor<B, 4>, y: Tensor<B, 3>) -> Tensor<B, 1> {
        let y = y.unsqueeze_dim::<4>(3);
        match self {
            LossSpec::Mse => (decoded - y).powi_scalar(2).mean(),
            LossSpec::Mae => (decoded - y).abs().mean(),
            LossSpec::Huber { delta } => {
                // 0.5·min(|e|, δ)² + δ·(|e| − min(|e|, δ)): quadratic inside, linear outside.
                let e = (decoded - y).abs();
                let inside = e.clone().clamp_max(*delta);
                (inside.clone().powi_scalar(2) * 0.5 + (e - inside) * *delta).mean()
            }
            LossSpec::Quantile { quantiles } => {
                let [_, _, _, q] = decoded.dims();
                let tau = Tensor::<B, 1>::from_floats(
                    quantiles.iter().map(|q| *q as f32).collect::<Vec<_>>().as_slice(),
                    &decoded.device(),
                )
                .reshape([1, 1, 1, q]);
                let e = y - decoded; // positive when the quantile is below the truth
                let under = e.clone() * tau.clone();
                let over = e * (tau - 1.0);
                under.max_pair(over).mean()
            }
            LossSpec::Gaussian => {
                let mean = decoded.clone().narrow(3, 0, 1);
                let sigma = decoded.narrow(3, 1, 1);
                let z = (y - mean) / sigma.clone();
                (sigma.log() + z.powi_scalar(2) * 0.5).mean()
            }
        }
    }

    /// The point forecast of decoded outputs, `[batch, horizon, targets]`: the median
    /// quantile if one is trained (else the middle one), or the mean.
    fn point<B: Backend>(&self, decoded: Tensor<B, 4>) -> Tensor<B, 3> {
        decoded.narrow(3, self.point_output(), 1).squeeze_dim(3)
    }

    /// Quantiles of decoded outputs, `[batch, horizon, targets, levels]`.
    fn quantiles<B: Backend>(&self, decoded: Tensor<B, 4>) -> Option<Tensor<B, 4>> {
        match self {
            LossSpec::Quantile { .. } => Some(decoded),
            LossSpec::Gaussian => {
                let [b, h, t, _] = decoded.dims();
                let levels = default_quantiles();
                let z: Vec<f32> = levels.iter().map(|q| normal_quantile(*q) as f32).collect();
                let z = Tensor::<B, 1>::from_floats(z.as_slice(), &decoded.device()).reshape([1, 1, 1, levels.len()]);
                let mean = decoded.clone().narrow(3, 0, 1).expand([b, h, t, levels.len()]);
                let sigma = decoded.narrow(3, 1, 1).expand([b, h, t, levels.len()]);
                Some(mean + sigma * z)
            }
            _ => None,
        }
    }
}

/// The standard normal quantile function (Acklam's rational approximation, |error| < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::normal_quantile;

    #[test]
    fn normal_quantiles_match_tables() {
        for (p, z) in
            [(0.5, 0.0), (0.9, 1.2815515655), (0.95, 1.6448536270), (0.99, 2.3263478740), (0.01, -2.3263478740)]
        {
            assert!((normal_quantile(p) - z).abs() < 1e-8, "{p}: {}", normal_quantile(p));
        }
    }
}
