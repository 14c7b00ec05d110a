//! What AppLearner's stages exchange, for every stage that reads another's tables: the
//! tables' names, columns and metadata keys ([`tables`]), the values shared across stages
//! ([`Part`], [`Resource`]), the typed reader of training windows ([`windows`]) and the
//! model card ([`card`]) with the specs it records ([`model`]).
//!
//! Arrow and serde only (schemars documents the specs that are also stage parameters): a
//! stage that reads windows or a card (training, the backtest, the report) needs neither
//! DataFusion nor burn.

pub mod card;
pub mod model;
pub mod summaries;
pub mod tables;
pub mod windows;

pub use windows::{Window, WindowSet, windows_per_part};

use serde::{Deserialize, Serialize};

/// A chronological part of each series: models are fitted on `train`, chosen on
/// `validation` and judged on `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Train,
    Validation,
    Test,
}

impl Part {
    /// In time order.
    pub const ALL: [Part; 3] = [Part::Train, Part::Validation, Part::Test];

    pub const fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Validation => "validation",
            Part::Test => "test",
        }
    }

    pub fn parse(name: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What is forecast and planned: CPU in cores, memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub const ALL: [Resource; 2] = [Resource::Cpu, Resource::Memory];

    /// The column name in every table (`cpu`, `memory`).
    pub const fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

/// A problem with one parameter, found by `StageParams::build`.
#[derive(Debug, Clone)]
pub struct ParamProblem {
    /// Path of the parameter below `with:` (`["model", "hidden"]`); empty for the whole block.
    pub path: Vec<String>,
    pub message: String,
    pub help: Option<String>,
}

impl ParamProblem {
    pub fn new(path: &[&str], message: impl Into<String>, help: impl Into<String>) -> Self {
        ParamProblem {
            path: path.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
            help: Some(help.into()),
        }
    }

    /// The same problem seen from the parameter that holds this one: `hidden` → `model.hidden`.
    pub fn within(mut self, parent: &str) -> Self {
        self.path.insert(0, parent.to_string());
        self
    }
}

/// Column `column` of a batch of table `table`, as type `to`.
fn cast_column(
    b: &arrow::array::RecordBatch,
    table: &'static str,
    column: &'static str,
    to: &arrow::datatypes::DataType,
) -> Result<arrow::array::ArrayRef, ContractError> {
    let c = b.column_by_name(column).ok_or(ContractError::MissingColumn { table, column })?;
    arrow::compute::cast(c, to).map_err(|error| ContractError::Type { table, column, error })
}

/// A table that does not hold what its contract says.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("the {table} table has no `{column}` column; rebuild it with this version")]
    MissingColumn { table: &'static str, column: &'static str },
    #[error("the {table} table's `{column}` column has the wrong type ({error}); rebuild it with this version")]
    Type { table: &'static str, column: &'static str, error: arrow::error::ArrowError },
    #[error("the features table has no column `{column}`; it has {available}")]
    UnknownColumn { column: String, available: String },
    #[error("the windows table lacks `{0}` in its metadata; rebuild it with features.build")]
    Metadata(&'static str),
    #[error("the windows table points past the end of the features table (row {row} of {rows}); rebuild both")]
    OutOfRange { row: u64, rows: usize },
    #[error(
        "series `{key}` has a missing or non-finite `{column}` at {time} inside a window; clean the input \
         (clean.resample drops NaN) or rebuild the features"
    )]
    NotFinite { key: String, column: String, time: String },
    #[error("unknown part `{0}`; use train, validation or test")]
    UnknownPart(String),
    #[error("{0}")]
    Read(String),
}
