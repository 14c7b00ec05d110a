//! What can go wrong in the engine, each with the fix: the store, a stage's context, the
//! run and its leases, the export. One enum, so every caller matches on one type.

use crate::run::missing_inputs_message;
use crate::stage::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    // The store.
    #[error("store URL `{url}`: {message}")]
    Url { url: String, message: String },
    #[error("`{path}` is not in the store")]
    NotFound { path: String },
    #[error(
        "store `{store}`: cannot write `{path}`: the bucket (or container) does not exist, or these credentials cannot see it; create it first"
    )]
    NoBucket { store: String, path: String },
    #[error(
        "store `{store}`, object `{path}`: the disk is full ({source}); free space there or point `store:` elsewhere, then rerun: committed stages are reused"
    )]
    Full {
        store: String,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "store `{store}`: `{path}` goes through the symbolic link `{link}`; a store's folders must be real folders, as a link could lead outside it"
    )]
    Symlink { store: String, path: String, link: String },
    #[error("store `{store}`, object `{path}`: {source}")]
    Io {
        store: String,
        path: String,
        #[source]
        source: object_store::Error,
    },
    // What a running stage does with its context.
    #[error("stage `{stage}` has no input slot `{slot}`")]
    UnknownInput { stage: String, slot: String },
    #[error("stage `{stage}` does not declare an output `{name}`; declare it in `writes()`")]
    UndeclaredOutput { stage: String, name: String },
    #[error("stage `{stage}` wrote `{name}` twice")]
    WrittenTwice { stage: String, name: String },
    #[error("`{path}` is not a readable Parquet table: {message}")]
    BadTable { path: String, message: String },
    // The run.
    #[error("there is no stage `{name}` in the pipeline{}", .suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownStage { name: String, suggestion: Option<String> },
    #[error("run id `{0}` may only hold letters, digits, `.`, `_` and `-`, and starts with a letter or digit")]
    BadRunId(String),
    #[error("--shard {shard}: {message}")]
    BadShard { shard: String, message: String },
    #[error("{}", missing_inputs_message(.run_id, .missing, .config))]
    MissingInputs { run_id: String, config: String, missing: Vec<(String, String)> },
    #[error("stage `{stage}` failed: {source}")]
    Stage {
        stage: String,
        #[source]
        source: BoxError,
    },
    #[error("stage `{stage}` did not write its declared output `{output}` (a bug in the stage kind)")]
    OutputNotWritten { stage: String, output: String },
    #[error("the run was cancelled")]
    Cancelled,
    #[error("`{path}` is not a valid record: {message}")]
    BadRecord { path: String, message: String },
    // The export.
    #[error(
        "the store `{0}` is a local folder, which the pods cannot share: give an object store, e.g. --set store=s3://bucket/applearner"
    )]
    LocalStore(String),
    #[error("stage `{stage}`: {field} `{value}` is not a Kubernetes quantity (e.g. 500m, 2, 8Gi)")]
    Quantity { stage: String, field: &'static str, value: String },
    #[error("the pipeline has no train.fit stage: the schedules train a model weekly and refresh plans from it")]
    NoTrainStage,
}

impl PipelineError {
    /// The run stopped because it was asked to (Ctrl-C), not because something failed.
    pub fn is_cancellation(&self) -> bool {
        matches!(self, PipelineError::Cancelled)
    }
}
