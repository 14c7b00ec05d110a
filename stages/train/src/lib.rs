//! Forecasting models and the `train.fit` stage: LSTM, GRU, TCN, N-BEATS-style, DLinear and
//! DeepAR-style models in burn ([`model`]), point, quantile and Gaussian heads ([`head`]),
//! the seeded training loop with checkpoints ([`fit`]), model folders ([`card`]) and
//! forecasting from a trained model ([`predict`]). CPU runs on burn's flex backend; the
//! `cuda` feature adds burn-cuda.

/// Runs `$body` with `$b` the autodiff backend of `$device` and `$dev` its burn device.
macro_rules! on_backend {
    ($device:expr, |$b:ident, $dev:ident| $body:expr) => {
        match $device {
            $crate::device::Device::Cpu => {
                type $b = burn::backend::Autodiff<burn::backend::Flex>;
                let $dev = burn::backend::flex::FlexDevice;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::device::Device::Cuda(index) => {
                type $b = burn::backend::Autodiff<burn::backend::Cuda>;
                let $dev = burn::backend::cuda::CudaDevice::new(index);
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::device::Device::Cuda(_) => Err($crate::TrainError::NotBuilt($device.to_string()).into()),
        }
    };
}

pub mod card;
mod covariates;
pub mod device;
mod error;
pub mod fit;
pub mod head;
pub mod model;
pub mod predict;
pub mod recurrent;
mod selection;
mod stage;

pub use applearner_pipeline::BoxError;
pub use error::TrainError;
pub use stage::TrainParams;

/// Recorded in every model card.
pub const BURN_VERSION: &str = "0.21.0";

pub fn register(registry: &mut applearner_pipeline::Registry) {
    registry.register::<TrainParams>();
}

#[cfg(test)]
mod tests;
