//! AppLearner's pipeline engine.
//!
//! A pipeline is a DAG of stages declared in YAML ([`config`]). Each stage kind implements
//! the [`stage`] contract and is registered by the name users write; the engine validates the
//! whole config before anything runs, then [`run`]s the stages in topological order (the
//! independent ones in parallel), skipping those whose content-addressed cache key is
//! unchanged, and commits every output atomically to the [`store`] (a folder or object
//! storage). Every run writes its resolved config and a manifest of what produced what.

pub mod by_key;
pub mod columns;
pub mod config;
pub mod context;
pub mod dag;
pub mod docs;
pub mod encode;
mod error;
pub mod export;
pub mod lease;
mod merge;
pub mod progress;
mod queue;
pub mod run;
pub mod stage;
pub mod store;
pub mod values;
pub mod yaml;

pub use config::{Pipeline, Problems};
pub use context::{Sink, StageContext, StoredOutput, read_parquet, send, stream_tables};
pub use error::PipelineError;
pub use run::{RunOptions, RunReport, Selection};
pub use stage::{
    BoxError, Output, ParamProblem, Registry, Stage, StageParams, Summary, parse_duration, parse_quantity,
};
pub use store::Store;
pub use values::{Duration, QuantileSource, Quantity, Risk};

// Stage crates build on these; re-exported so their versions cannot drift.
pub use arrow;
pub use parquet;
pub use schemars;
