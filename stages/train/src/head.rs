//! What a model's raw outputs mean, and the loss that trains them.

use burn::tensor::Tensor;
use burn::tensor::activation::softplus;
use burn::tensor::backend::Backend;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// Smallest scale of a Gaussian head: keeps the likelihood finite on flat series.
const MIN_SIGMA: f64 = 1e-3;

impl LossSpec {
    /// Raw outputs per target and step.
    pub fn outputs(&self) -> usize {
        match self {
            LossSpec::Quantile { quantiles } => quantiles.len(),
            LossSpec::Gaussian => 2,
            _ => 1,
        }
    }

    pub fn check(&self) -> Option<String> {
        match self {
            LossSpec::Huber { delta } if *delta <= 0.0 => Some(format!("delta is {delta}; use a positive number")),
            LossSpec::Quantile { quantiles } => {
                if quantiles.is_empty() {
                    Some("quantiles is empty; list at least one, e.g. [0.5, 0.9]".into())
                } else if quantiles.iter().any(|q| !(*q > 0.0 && *q < 1.0)) {
                    Some(format!("quantiles {quantiles:?} must lie strictly between 0 and 1"))
                } else if quantiles.windows(2).any(|w| w[0] >= w[1]) {
                    Some(format!("quantiles {quantiles:?} must be strictly increasing"))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The head's meaning of `raw` `[batch, horizon, targets, outputs]`: point forecasts,
    /// quantiles made increasing (the first, then softplus steps), or mean and scale.
    pub fn decode<B: Backend>(&self, raw: Tensor<B, 4>) -> Tensor<B, 4> {
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
    pub fn loss<B: Backend>(&self, decoded: Tensor<B, 4>, y: Tensor<B, 3>) -> Tensor<B, 1> {
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
    pub fn point<B: Backend>(&self, decoded: Tensor<B, 4>) -> Tensor<B, 3> {
        let index = match self {
            LossSpec::Quantile { quantiles } => {
                quantiles.iter().position(|q| (*q - 0.5).abs() < 1e-9).unwrap_or(quantiles.len() / 2)
            }
            _ => 0,
        };
        decoded.narrow(3, index, 1).squeeze_dim(3)
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

    /// Quantiles of decoded outputs, `[batch, horizon, targets, levels]`.
    pub fn quantiles<B: Backend>(&self, decoded: Tensor<B, 4>) -> Option<Tensor<B, 4>> {
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
        1.383577518672690e2,
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
