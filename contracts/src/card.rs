//! The model card: everything needed to rebuild, use and judge a trained model (what it
//! is, how it was trained, how it scales values, how well it did). `train.fit` writes it as
//! `card.json` beside the weights; prediction, the backtest and the report read it.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use serde::{Deserialize, Serialize};

use crate::ContractError;
use crate::model::{Blueprint, TrainSpec};
use crate::tables::scalers;

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
    /// Where the features hold covariates (clean.resample's `inputs:`): whether the model
    /// reads them, as chosen on the validation part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariates: Option<CovariateChoice>,
}

/// Whether the model reads the covariates: trained with and without them, the one with the
/// lower validation relative MAE kept (without them on a tie: fewer inputs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CovariateChoice {
    /// The covariate columns (`net_rx`, …).
    pub columns: Vec<String>,
    pub used: bool,
    #[serde(deserialize_with = "nan_if_null")]
    pub validation_with: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub validation_without: f64,
}

impl CovariateChoice {
    /// One line for the card and the report.
    pub fn sentence(&self) -> String {
        format!(
            "covariates {} {}: validation relative MAE {:.4} with them, {:.4} without",
            self.columns.join(", "),
            if self.used { "read (they helped)" } else { "left out (they did not help)" },
            self.validation_with,
            self.validation_without
        )
    }
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

/// Accuracy of point forecasts on a part, in scaled units, beside the last-value forecast.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// The part's non-overlapping windows scored (every horizon-th origin per series).
    pub windows: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub mae: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub rmse: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub last_value_mae: f64,
    /// MAE over the last-value forecast's MAE on the same windows (out of sample): below 1
    /// beats repeating the last value. Not the backtest's MASE, whose scale is the in-sample
    /// seasonal-naive error. Older cards call it `mase`.
    #[serde(alias = "mase", deserialize_with = "nan_if_null")]
    pub relative_mae: f64,
}

/// A measure of a part without windows is NaN, which JSON writes as null: read back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
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
                a.windows, a.mae, a.rmse, a.last_value_mae, a.relative_mae
            )
        };
        format!(
            "# {kind} forecaster\n\n\
             Forecasts {targets} over {h} steps of {step} from the last {l} steps of {inputs}.\n\n\
             - model: `{spec}`\n- loss: `{loss}`\n- skip connection from the last value: {skip}\n\
             - training: {opt:?}, lr {lr}, batch {batch}, {epochs} epochs max (ran {ran}, kept epoch {best}), seed {seed}, on {device}\n\
             - AppLearner {version}, burn {burn}, card format {format}\n\
             - weights: `{weights}` (blake3 {digest})\n{covariates}\n\
             ## Accuracy (scaled units, non-overlapping windows; relative MAE = MAE ÷ last-value MAE, below 1 beats repeating the last value)\n\n\
             | part | windows | MAE | RMSE | last-value MAE | relative MAE |\n|---|---|---|---|---|---|\n{val}{test}\n\
             Load it with `applearner predict --model <this folder> --input <features>`.\n",
            kind = b.model.name().to_uppercase(),
            skip = if b.skip { "on" } else { "off" },
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
            covariates = self.covariates.as_ref().map_or(String::new(), |c| format!("- {}\n", c.sentence())),
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

/// The scalers of the target columns, from the `scalers` table of `features.build`.
pub fn read_scalers(batches: &[RecordBatch], targets: &[String]) -> Result<Vec<Scaler>, ContractError> {
    let mut out = Vec::new();
    for b in batches {
        let col = |column, to: &DataType| crate::cast_column(b, scalers::NAME, column, to);
        let text = |column| col(column, &DataType::Utf8);
        let (key, column, transform) = (text(scalers::KEY)?, text(scalers::COLUMN)?, text(scalers::TRANSFORM)?);
        let (center, scale) = (col(scalers::CENTER, &DataType::Float64)?, col(scalers::SCALE, &DataType::Float64)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A model trained without validation windows has no validation accuracy: its card
    /// still reads back.
    #[test]
    fn an_accuracy_without_windows_reads_back_as_nan() {
        let none =
            Accuracy { windows: 0, mae: f64::NAN, rmse: f64::NAN, last_value_mae: f64::NAN, relative_mae: f64::NAN };
        let json = serde_json::to_string(&none).unwrap();
        assert!(json.contains("\"mae\":null"), "{json}");
        let back: Accuracy = serde_json::from_str(&json).unwrap();
        assert!(back.windows == 0 && back.mae.is_nan() && back.relative_mae.is_nan());
    }
}
