//! Covariates in or out of the model: decided on the validation part, like every other
//! choice. With covariates that do not help, the model is the one trained without them.

use applearner_contracts::card::CovariateChoice;
use applearner_contracts::tables::features;
use applearner_pipeline::arrow::datatypes::DataType;
use applearner_pipeline::{BoxError, StageContext};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the model treats the covariates the features hold (clean.resample's `inputs:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Covariates {
    /// Trained without them and with them; the lower validation relative MAE is kept.
    #[default]
    Auto,
    /// Always read them.
    Use,
    /// Never read them.
    Ignore,
}

/// The features a model may read: all of them, and those not derived from a covariate.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    pub columns: Vec<String>,
    pub with: Vec<String>,
    pub without: Vec<String>,
}

impl Candidates {
    /// From the features table's schema; `None` where it holds no covariate.
    pub fn of(ctx: &StageContext) -> Result<Option<Candidates>, BoxError> {
        let Some(first) = ctx.table_batches(features::NAME, None, &[])?.next() else { return Ok(None) };
        let schema = first?.schema();
        let listed = |key: &str| -> Vec<String> {
            let text = schema.metadata().get(key).map_or("", String::as_str);
            text.split(',').filter(|s| !s.is_empty()).map(String::from).collect()
        };
        let derived = listed(features::COVARIATE_FEATURES_KEY);
        if derived.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> =
            schema.fields().iter().filter(|f| f.data_type() == &DataType::Float32).map(|f| f.name().clone()).collect();
        let without = names.iter().filter(|n| !derived.contains(n)).cloned().collect();
        Ok(Some(Candidates { columns: listed(features::COVARIATES_KEY), with: names, without }))
    }

    /// The choice between the fit without (`without`) and with (`with`) them, by their
    /// validation relative MAE.
    pub fn choose(&self, without: f64, with: f64) -> CovariateChoice {
        CovariateChoice {
            columns: self.columns.clone(),
            used: with < without,
            validation_with: with,
            validation_without: without,
        }
    }
}
