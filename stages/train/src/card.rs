//! A trained model on disk: `model.mpk` (burn record of the weights), `card.json`
//! (everything needed to rebuild and use it: blueprint, training settings, scalers, digests,
//! metrics) and `card.md` (the same for people).

use std::path::Path;

use applearner_pipeline::arrow::array::{AsArray, RecordBatch};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{DataType, Float64Type};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::fit::{Accuracy, Blueprint, TrainSpec, load_weights};
use crate::model::Forecaster;

/// Bumped whenever a card or its weights change meaning; older cards are refused.
pub const FORMAT: u32 = 1;
pub const WEIGHTS_FILE: &str = "model.mpk";
pub const CARD_FILE: &str = "card.json";
pub const README_FILE: &str = "card.md";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub format: u32,
    pub applearner_version: String,
    pub burn_version: String,
    pub blueprint: Blueprint,
    pub training: TrainSpec,
    pub seed: u64,
    pub device: String,
    /// Step of the series the model was trained on, in milliseconds.
    pub step_ms: i64,
    /// blake3 of the weights file.
    pub weights_digest: String,
    /// blake3 of the training stage's parameters (canonical JSON).
    pub config_digest: String,
    /// blake3 of each input table, by slot.
    pub data_digests: std::collections::BTreeMap<String, String>,
    /// The model this one was fine-tuned from (its weights digest), if any.
    pub fine_tuned_from: Option<String>,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub validation: Accuracy,
    pub test: Accuracy,
    /// Per series and target column: how scaled values map back to cores and bytes.
    pub scalers: Vec<Scaler>,
}

/// `value = inverse_transform(scaled × scale + center)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub key: String,
    pub column: String,
    pub transform: String,
    pub center: f64,
    pub scale: f64,
}

impl Scaler {
    pub fn unscale(&self, scaled: f64) -> f64 {
        let v = scaled * self.scale + self.center;
        if self.transform == "log1p" { v.exp_m1() } else { v }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CardError {
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
}

/// A card and its weights, read from a model folder (a `trained_models/<name>` or a
/// train stage's folder in the store).
pub struct Saved {
    pub card: Card,
    pub weights: Vec<u8>,
}

impl Saved {
    pub fn read(dir: &Path) -> Result<Saved, CardError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|error| CardError::Read { path: path.display().to_string(), error })
        };
        Saved::from_bytes(dir, &read(CARD_FILE)?, read(WEIGHTS_FILE)?)
    }

    /// A model from the bytes of its card and weights; `dir` names them in messages.
    pub fn from_bytes(dir: &Path, card: &[u8], weights: Vec<u8>) -> Result<Saved, CardError> {
        let card_path = dir.join(CARD_FILE).display().to_string();
        // Check the format before the whole shape, so an old card gets the version message.
        let head: serde_json::Value =
            serde_json::from_slice(card).map_err(|error| CardError::Parse { path: card_path.clone(), error })?;
        let format = head.get("format").and_then(|f| f.as_u64()).unwrap_or(0) as u32;
        if format != FORMAT {
            return Err(CardError::Version {
                path: card_path,
                version: head.get("applearner_version").and_then(|v| v.as_str()).unwrap_or("unknown").to_string(),
                format,
                ours: applearner_pipeline::run::VERSION,
            });
        }
        let card: Card =
            serde_json::from_value(head).map_err(|error| CardError::Parse { path: card_path.clone(), error })?;
        let actual = blake3::hash(&weights).to_hex().to_string();
        if actual != card.weights_digest {
            return Err(CardError::Digest {
                path: dir.join(WEIGHTS_FILE).display().to_string(),
                actual,
                expected: card.weights_digest.clone(),
            });
        }
        Ok(Saved { card, weights })
    }

    pub fn model<B: Backend>(&self, dir: &Path, device: &B::Device) -> Result<Forecaster<B>, CardError> {
        load_weights::<B>(&self.card.blueprint, &self.weights, device).map_err(|e| CardError::Weights {
            path: dir.join(WEIGHTS_FILE).display().to_string(),
            error: e.to_string(),
        })
    }

    /// Writes the folder whole: into a temporary sibling, then renamed over `dir`.
    pub fn publish(&self, dir: &Path) -> Result<(), std::io::Error> {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let tmp = tempfile::Builder::new().prefix(".publish-").tempdir_in(parent)?;
        std::fs::write(tmp.path().join(WEIGHTS_FILE), &self.weights)?;
        std::fs::write(tmp.path().join(CARD_FILE), self.card_json())?;
        std::fs::write(tmp.path().join(README_FILE), self.card.markdown())?;
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::rename(tmp.keep(), dir)
    }

    pub fn card_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(&self.card).expect("cards serialise");
        out.push(b'\n');
        out
    }
}

impl Card {
    /// The card for people: what the model is, how it was trained, how well it does.
    pub fn markdown(&self) -> String {
        let b = &self.blueprint;
        let spec = serde_json::to_string(&b.model).expect("specs serialise");
        let loss = serde_json::to_string(&b.loss).expect("specs serialise");
        let t = &self.training;
        let row = |name: &str, a: &Accuracy| {
            format!(
                "| {name} | {} | {:.4} | {:.4} | {:.4} | {:.3} |\n",
                a.windows, a.mae, a.rmse, a.last_value_mae, a.mase
            )
        };
        format!(
            "# {kind} forecaster\n\n\
             Forecasts {targets} over {h} steps of {step} from the last {l} steps of {inputs}.\n\n\
             - model: `{spec}`\n- loss: `{loss}`\n\
             - training: {opt:?}, lr {lr}, batch {batch}, {epochs} epochs max (ran {ran}, kept epoch {best}), seed {seed}, on {device}\n\
             - AppLearner {version}, burn {burn}, card format {format}\n\
             - weights: `{weights}` (blake3 {digest})\n\n\
             ## Accuracy (scaled units; MASE below 1 beats repeating the last value)\n\n\
             | part | windows | MAE | RMSE | last-value MAE | MASE |\n|---|---|---|---|---|---|\n{val}{test}\n\
             Load it with `applearner predict --model <this folder> --input <features>`.\n",
            kind = b.model.name().to_uppercase(),
            targets = b.targets.join(", "),
            h = b.shape.horizon,
            step = humanize_ms(self.step_ms),
            l = b.shape.lookback,
            inputs = b.inputs.join(", "),
            opt = t.optimizer,
            lr = t.lr,
            batch = t.batch,
            epochs = t.epochs,
            ran = self.epochs_run,
            best = self.best_epoch,
            seed = self.seed,
            device = self.device,
            version = self.applearner_version,
            burn = self.burn_version,
            format = self.format,
            weights = WEIGHTS_FILE,
            digest = &self.weights_digest[..16.min(self.weights_digest.len())],
            val = row("validation", &self.validation),
            test = row("test", &self.test),
        )
    }
}

fn humanize_ms(ms: i64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms => format!("{}s", ms as f64 / 1000.0),
    }
}

/// The scalers of the target columns.
pub fn read_scalers(batches: &[RecordBatch], targets: &[String]) -> Result<Vec<Scaler>, crate::BoxError> {
    let mut out = Vec::new();
    for b in batches {
        let col =
            |name: &str| b.column_by_name(name).ok_or_else(|| format!("the scalers table has no `{name}` column"));
        let (key, column, transform) = (col("key")?, col("column")?, col("transform")?);
        let (key, column, transform) =
            (cast(key, &DataType::Utf8)?, cast(column, &DataType::Utf8)?, cast(transform, &DataType::Utf8)?);
        let center = cast(col("center")?, &DataType::Float64)?;
        let scale = cast(col("scale")?, &DataType::Float64)?;
        let (center, scale) = (center.as_primitive::<Float64Type>(), scale.as_primitive::<Float64Type>());
        for i in 0..b.num_rows() {
            let c = column.as_string::<i32>().value(i);
            if targets.iter().any(|t| t == c) {
                out.push(Scaler {
                    key: key.as_string::<i32>().value(i).to_string(),
                    column: c.to_string(),
                    transform: transform.as_string::<i32>().value(i).to_string(),
                    center: center.value(i),
                    scale: scale.value(i),
                });
            }
        }
    }
    Ok(out)
}
