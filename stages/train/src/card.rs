//! A trained model on disk: `model.mpk` (burn record of the weights), `card.json`
//! (everything needed to rebuild and use it: blueprint, training settings, scalers, digests,
//! metrics) and `card.md` (the same for people).

use crate::TrainError;
use std::path::Path;

use burn::tensor::backend::Backend;

pub use applearner_contracts::card::{CARD_FILE, Card, FORMAT, README_FILE, Scaler, WEIGHTS_FILE, read_scalers};

use crate::fit::load_weights;
use crate::model::Forecaster;

/// A card and its weights, read from a model folder (a `trained_models/<name>` or a
/// train stage's folder in the store).
pub struct Saved {
    pub card: Card,
    pub weights: Vec<u8>,
}

impl Saved {
    pub fn read(dir: &Path) -> Result<Saved, TrainError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|error| TrainError::Read { path: path.display().to_string(), error })
        };
        Saved::from_bytes(dir, &read(CARD_FILE)?, read(WEIGHTS_FILE)?)
    }

    /// A model folder on disk, or in object storage where `location` is a URL
    /// (`s3://bucket/models/web`): where a weekly training run published it.
    pub fn fetch(location: &str) -> Result<Saved, TrainError> {
        if !location.contains("://") {
            return Saved::read(Path::new(location));
        }
        let read = |file: &str| {
            let store = applearner_pipeline::Store::open(location).map_err(std::io::Error::other)?;
            store.get(file).map(|b| b.to_vec()).map_err(std::io::Error::other)
        };
        let fail = |file: &str, error| TrainError::Read { path: format!("{location}/{file}"), error };
        let card = read(CARD_FILE).map_err(|e| fail(CARD_FILE, e))?;
        let weights = read(WEIGHTS_FILE).map_err(|e| fail(WEIGHTS_FILE, e))?;
        Saved::from_bytes(Path::new(location), &card, weights)
    }

    /// A model from the bytes of its card and weights; `dir` names them in messages.
    pub fn from_bytes(dir: &Path, card: &[u8], weights: Vec<u8>) -> Result<Saved, TrainError> {
        let card_path = dir.join(CARD_FILE).display().to_string();
        // Check the format before the whole shape, so an old card gets the version message.
        let head: serde_json::Value =
            serde_json::from_slice(card).map_err(|error| TrainError::Parse { path: card_path.clone(), error })?;
        let format = head.get("format").and_then(|f| f.as_u64()).unwrap_or(0) as u32;
        if format != FORMAT {
            return Err(TrainError::Version {
                path: card_path,
                version: head.get("applearner_version").and_then(|v| v.as_str()).unwrap_or("unknown").to_string(),
                format,
                ours: applearner_pipeline::run::VERSION,
            });
        }
        let card: Card =
            serde_json::from_value(head).map_err(|error| TrainError::Parse { path: card_path.clone(), error })?;
        let actual = blake3::hash(&weights).to_hex().to_string();
        if actual != card.weights_digest {
            return Err(TrainError::Digest {
                path: dir.join(WEIGHTS_FILE).display().to_string(),
                actual,
                expected: card.weights_digest.clone(),
            });
        }
        Ok(Saved { card, weights })
    }

    pub fn model<B: Backend>(&self, dir: &Path, device: &B::Device) -> Result<Forecaster<B>, TrainError> {
        load_weights::<B>(&self.card.blueprint, &self.weights, device).map_err(|e| TrainError::Weights {
            path: dir.join(WEIGHTS_FILE).display().to_string(),
            error: e.to_string(),
        })
    }

    /// Writes the model where `fetch` reads it: a folder, or object storage where `location`
    /// is a URL (the card last: a reader that sees it finds its weights, and the digest check
    /// refuses a half-replaced pair).
    pub fn publish_to(&self, location: &str) -> Result<(), std::io::Error> {
        if !location.contains("://") {
            return self.publish(Path::new(location));
        }
        let store = applearner_pipeline::Store::open(location).map_err(std::io::Error::other)?;
        for (file, bytes) in [
            (WEIGHTS_FILE, self.weights.clone()),
            (README_FILE, self.card.markdown().into_bytes()),
            (CARD_FILE, self.card_json()),
        ] {
            store.put(file, bytes.into()).map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Writes the folder whole: into a temporary sibling, then renamed over `dir`.
    fn publish(&self, dir: &Path) -> Result<(), std::io::Error> {
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
