//! The stage contract and the registry of stage kinds.
//!
//! A stage kind is a parameter struct (`serde` + `schemars`, `deny_unknown_fields`, doc
//! comments that become the user docs of `applearner stages`) implementing [`StageParams`].
//! Its `build` checks the parameters without I/O and returns the runtime [`Stage`], which
//! declares the tables it reads and writes; the DAG's edges come from those declarations.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::StageContext;
use crate::yaml::{DeError, Node, NodeDeserializer};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a stage reports about its work, recorded in the run manifest: counts of rows read,
/// dropped, repaired… Never silently: anything a stage changed in the data belongs here.
pub type Summary = serde_json::Map<String, serde_json::Value>;

/// A table (Arrow, persisted as Parquet) or a file artifact (JSON, HTML, model weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Table,
    Artifact,
}

/// One thing a stage writes. Artifact names carry their extension (`report.html`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    pub kind: OutputKind,
}

impl Output {
    pub fn table(name: &str) -> Self {
        Output { name: name.to_string(), kind: OutputKind::Table }
    }

    pub fn artifact(name: &str) -> Self {
        Output { name: name.to_string(), kind: OutputKind::Artifact }
    }

    /// File name inside the stage's folder of the store.
    pub fn file_name(&self) -> String {
        match self.kind {
            OutputKind::Table => format!("{}.parquet", self.name),
            OutputKind::Artifact => self.name.clone(),
        }
    }
}

/// A built stage: what it reads and writes, and the work itself.
pub trait Stage: Send + Sync {
    /// Input slots. Unless the config maps a slot under `inputs:`, it reads the output of the
    /// same name from whichever single stage writes one.
    fn reads(&self) -> Vec<String> {
        Vec::new()
    }

    /// Everything the stage writes; each must be written by `run`, nothing else may be.
    fn writes(&self) -> Vec<Output>;

    /// Feeds data the stage reads from outside its inputs (source files, a model folder, a
    /// state kept in the store) into the cache key, so that changing it reruns the stage.
    fn fingerprint(&self, _store: &crate::Store, _hasher: &mut blake3::Hasher) -> Result<(), BoxError> {
        Ok(())
    }

    /// For stages that work series by series: each table they write with the columns its
    /// rows are sorted by. Such a stage can run sharded (`shards: N` in the config, or one
    /// shard with `--shard i/N`): each shard handles the series `StageContext::in_shard`
    /// admits, and the shards' tables merge, by these columns, into exactly the table one
    /// unsharded run writes. `None`: the stage cannot be sharded.
    fn shard_order(&self) -> Option<Vec<(&'static str, Vec<&'static str>)>> {
        None
    }

    /// Columns of a sharded stage's tables that hold row numbers of another of its tables,
    /// as `(table, column, rows of)`; the merge turns a shard's row numbers into the merged
    /// table's. The table referred to comes first in `shard_order`.
    fn shard_row_columns(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        Vec::new()
    }

    /// What keeps this machine from running the stage (no GPU for `device: cuda`), for
    /// `validate` to warn about; never an error there, since pods elsewhere may run it. The
    /// stage checks again when it starts.
    fn host_warnings(&self) -> Vec<String> {
        Vec::new()
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError>;
}

pub use applearner_contracts::ParamProblem;

/// The typed, documented parameters of a stage kind.
pub trait StageParams: DeserializeOwned + Serialize + JsonSchema + 'static {
    /// The name users write in `uses:`, such as `ingest.prometheus`.
    const KIND: &'static str;
    /// The file that implements it (`file!()`), shown by `applearner stages` so a newcomer
    /// finds any stage in one hop.
    const SOURCE: &'static str;

    /// Checks the parameters (no I/O) and builds the stage.
    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>>;
}

/// Why a stage's `with:` block was refused.
pub enum BuildError {
    /// The YAML does not fit the parameter struct (wrong type, unknown or missing key).
    Shape(DeError),
    /// The values fit but the stage refused them.
    Params(Vec<ParamProblem>),
}

/// A built stage with its resolved parameters (defaults filled in) for hashing and locking.
pub struct Built {
    pub params: serde_json::Value,
    pub stage: Box<dyn Stage>,
}

/// A registered stage kind.
pub struct StageKind {
    pub name: &'static str,
    pub source: &'static str,
    /// Generated when asked for (docs, suggestions), not for every run of a stage.
    schema: fn() -> schemars::Schema,
    build: fn(&Node) -> Result<Built, BuildError>,
}

impl StageKind {
    pub fn build(&self, with: &Node) -> Result<Built, BuildError> {
        (self.build)(with)
    }

    /// The JSON schema of the kind's parameters.
    pub fn schema(&self) -> schemars::Schema {
        (self.schema)()
    }

    /// The parameter names of the kind, for unknown-key suggestions.
    pub fn param_names(&self) -> Vec<String> {
        self.schema()
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The kind's description: the doc comment of its parameter struct.
    pub fn description(&self) -> String {
        self.schema().get("description").and_then(|d| d.as_str()).unwrap_or("").to_string()
    }
}

fn build_kind<P: StageParams>(with: &Node) -> Result<Built, BuildError> {
    let params: P = NodeDeserializer::deserialize(with).map_err(BuildError::Shape)?;
    let resolved = serde_json::to_value(&params).expect("parameter structs serialize to JSON");
    let stage = params.build().map_err(BuildError::Params)?;
    Ok(Built { params: resolved, stage })
}

/// Stage kinds by the name users write.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, StageKind>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register<P: StageParams>(&mut self) -> &mut Self {
        let kind =
            StageKind { name: P::KIND, source: P::SOURCE, schema: || schemars::schema_for!(P), build: build_kind::<P> };
        let previous = self.kinds.insert(P::KIND, kind);
        assert!(previous.is_none(), "stage kind {} registered twice", P::KIND);
        self
    }

    pub fn get(&self, name: &str) -> Option<&StageKind> {
        self.kinds.get(name)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &StageKind> {
        self.kinds.values()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A duration in milliseconds: `30s`, `5m`, `1h30m`, `7d`, `1w` (humantime's units, which
/// include Prometheus's), or plain seconds (`300`, as Prometheus's `step` takes them).
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let ms = match text.parse::<f64>() {
        Ok(seconds) => seconds * 1e3,
        Err(_) => humantime::parse_duration(text).ok()?.as_secs_f64() * 1e3,
    };
    let ms = ms.round();
    (ms > 0.0 && ms < 1e15).then_some(ms as i64)
}

/// A Kubernetes quantity (`500m`, `2`, `8Gi`, `1e3`) as a number: CPU in cores, memory in
/// bytes; negative or malformed: `None`.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let suffixes: std::collections::BTreeMap<&str, f64> = [
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
    ]
    .into();
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic() && c != 'e').unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let factor = if suffix.is_empty() { 1.0 } else { *suffixes.get(suffix)? };
    number.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v * factor)
}
