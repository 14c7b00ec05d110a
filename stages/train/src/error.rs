//! What can go wrong in training, prediction and with model folders and devices, each with
//! the fix.

use crate::card::{CARD_FILE, FORMAT, WEIGHTS_FILE};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "skip: the targets [{targets}] must all be inputs to add their last value back; inputs are [{inputs}]: add them to `inputs`, or drop `skip`"
    )]
    SkipWithoutTarget { targets: String, inputs: String },
    // A model folder.
    #[error("{path}: cannot read the model ({error}); a model folder holds {CARD_FILE} and {WEIGHTS_FILE}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: not a model card ({error})")]
    Parse { path: String, error: serde_json::Error },
    #[error(
        "{path}: this model was written by AppLearner {version} (card format {format}); this is AppLearner {ours} \
         (format {FORMAT}): retrain it with this version, or use AppLearner {version}"
    )]
    Version { path: String, version: String, format: u32, ours: &'static str },
    #[error(
        "{path}: the weights do not match the card (digest {actual}, card says {expected}); the folder was altered"
    )]
    Digest { path: String, actual: String, expected: String },
    #[error("{path}: cannot load the weights ({error}); it was probably written by another burn version")]
    Weights { path: String, error: String },
    // Training.
    #[error(
        "{what} was built as {theirs}; this stage builds {ours} on this data: match model, loss, inputs, targets and windows \
         (features.build's columns and windows, train.fit's model) to the ones it was trained with, or train a new one"
    )]
    Blueprint { what: String, theirs: String, ours: String },
    #[error(
        "publish: cannot write {dir}: {error}; make sure the folder can be created and written, or for object storage that the bucket exists and the credentials (AWS_*, GOOGLE_*, AZURE_*) allow writes"
    )]
    Publish { dir: String, error: std::io::Error },
    #[error("the training loss became {loss} in epoch {epoch} (learning rate {lr}); lower `lr` or set `clip`")]
    Diverged { loss: f64, epoch: usize, lr: f64 },
    // The device.
    #[error("unknown device `{0}`; use cpu, cuda, cuda:N or auto")]
    UnknownDevice(String),
    #[error(
        "device `{0}` asks for CUDA, but this build has no CUDA support; rebuild with \
         `cargo build --release --features cuda`, or use `device: cpu`"
    )]
    NotBuilt(String),
    #[error(
        "device `{requested}` asks for CUDA, but {reason}; install the NVIDIA driver (libcuda.so.1) and CUDA's \
         NVRTC (libnvrtc.so), or use `device: cpu`"
    )]
    NoGpu { requested: String, reason: String },
    // Prediction.
    #[error(
        "the input has no column `{column}` the model reads; it was trained on [{inputs}]: build the input with the same features.build settings"
    )]
    MissingColumn { column: String, inputs: String },
    #[error("the model forecasts {model} steps; --horizon {asked} is out of range: use 1 to {model}")]
    Horizon { model: usize, asked: usize },
    #[error(
        "no series in the input has {lookback} consecutive finite rows at its end (the model's lookback); the longest has {longest}"
    )]
    TooShort { lookback: usize, longest: usize },
    #[error(
        "series `{key}` has no scaler for `{column}` in the input's scalers or the model card; pass the scalers table written beside the features"
    )]
    NoScaler { key: String, column: String },
}
