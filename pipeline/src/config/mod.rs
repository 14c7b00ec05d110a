//! From YAML text to a validated [`Pipeline`].
//!
//! Nothing runs until the whole config has been checked. Every problem found is collected —
//! unknown keys, unknown stage kinds, bad parameter values, missing or ambiguous inputs,
//! cycles — and reported together, each with its `file:line:column` and what would fix it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::stage::{Output, Registry, Stage, closest};
use serde::{Deserialize, Serialize};

use crate::yaml::{self, Loc, Node, Value};

mod check;
mod wire;

pub const DEFAULT_STORE: &str = "./runs";

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub loc: Loc,
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    fn new(loc: Loc, message: impl Into<String>, help: Option<String>) -> Self {
        Problem { loc, message: message.into(), help }
    }
}

/// Every problem of a config, sorted by position.
#[derive(Debug, Clone)]
pub struct Problems {
    pub file: String,
    pub overrides: Vec<String>,
    pub list: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let n = self.list.len();
        writeln!(f, "{} has {n} problem{}:", self.file, if n == 1 { "" } else { "s" })?;
        for p in &self.list {
            let place = match p.loc {
                Loc::Override(i) => format!("--set {}", self.overrides.get(i).map_or("?", |s| s)),
                loc => loc.describe(&self.file),
            };
            writeln!(f, "  {place}: {}", p.message)?;
            if let Some(help) = &p.help {
                writeln!(f, "      help: {help}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Which output of which stage feeds an input slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRef {
    pub slot: String,
    pub stage: String,
    pub output: String,
}

/// A validated stage of a pipeline.
pub struct StageSpec {
    pub name: String,
    pub kind: &'static str,
    /// Parameters with defaults filled in and `${…}` resolved (secrets included: never print).
    pub params: serde_json::Value,
    pub stage: Box<dyn Stage>,
    pub inputs: Vec<InputRef>,
    pub outputs: Vec<Output>,
    /// Indices (into `Pipeline::stages`) of the stages this one reads from.
    pub upstream: Vec<usize>,
    /// What its pod asks of the cluster when exported to Argo or Kubernetes.
    pub resources: Resources,
    /// Run as this many shards, then merge (1: unsharded). No part of the cache key: the
    /// merged tables are the unsharded ones.
    pub shards: u32,
}

/// What a stage's pod asks of the cluster when the pipeline runs on Kubernetes
/// (`applearner export`). Local runs ignore it, and it is no part of the cache key: it
/// changes where a stage runs, not what it computes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU request, as Kubernetes writes it (`2`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory request, also the limit (`4Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// NVIDIA GPUs (the `nvidia.com/gpu` limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpu: u32,
    /// Node labels the pod must be scheduled on (`{cloud.google.com/gke-accelerator: nvidia-l4}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A validated pipeline: stages in a topological order, ready to run.
pub struct Pipeline {
    pub name: String,
    /// The file the config came from, as given on the command line.
    pub file: String,
    pub store: String,
    pub seed: u64,
    pub stages: Vec<StageSpec>,
    /// `--set` overrides as given (secrets cannot come through them: they are plain text).
    pub overrides: Vec<String>,
    pub redactor: Redactor,
}

impl Pipeline {
    /// Parses and validates `text` (read from `file`), with `--set` overrides applied.
    pub fn from_yaml(file: &str, text: &str, overrides: &[String], registry: &Registry) -> Result<Pipeline, Problems> {
        let fail = |list: Vec<Problem>| Problems { file: file.to_string(), overrides: overrides.to_vec(), list };
        let mut root = yaml::parse(text).map_err(|e| fail(vec![Problem::new(Loc::Unknown, e, None)]))?;
        let mut problems = Vec::new();
        apply_overrides(&mut root, overrides, &mut problems);
        let (pipeline, mut problems) = check::check(file, &root, overrides, registry, problems);
        match pipeline {
            Some(p) if problems.is_empty() => Ok(p),
            _ => {
                problems.sort_by_key(|p| match p.loc {
                    Loc::File { line, column } => (0, line as usize, column as usize),
                    Loc::Override(i) => (1, i, 0),
                    Loc::Unknown => (2, 0, 0),
                });
                Err(fail(problems))
            }
        }
    }

    pub fn index_of(&self, stage: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == stage)
    }

    /// The fully resolved config, as written to `config.lock.yaml`: running it again gives
    /// the same pipeline. Secrets appear as the `${NAME}` they came from.
    pub fn lock(&self) -> serde_json::Value {
        let stages: serde_json::Map<_, _> = self
            .stages
            .iter()
            .map(|s| {
                let inputs: serde_json::Map<_, _> =
                    s.inputs.iter().map(|i| (i.slot.clone(), format!("{}.{}", i.stage, i.output).into())).collect();
                let mut stage = serde_json::json!({ "uses": s.kind });
                if !inputs.is_empty() {
                    stage["inputs"] = inputs.into();
                }
                stage["with"] = s.params.clone();
                if s.resources != Resources::default() {
                    stage["resources"] = serde_json::to_value(&s.resources).expect("resources serialize");
                }
                if s.shards > 1 {
                    stage["shards"] = s.shards.into();
                }
                (s.name.clone(), stage)
            })
            .collect();
        let lock = serde_json::json!({
            "name": self.name,
            "store": self.store,
            "seed": self.seed,
            "stages": stages,
        });
        self.redactor.redact_json(&lock)
    }
}

/// Replaces values that came from the environment by the `${NAME}` that produced them, so
/// tokens and keys never reach logs, manifests or lock files.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<(String, String)>,
}

impl Redactor {
    fn add(&mut self, name: &str, value: &str) {
        // Empty values would "match" everywhere; they hide nothing anyway.
        if !value.is_empty() && !self.secrets.iter().any(|(_, v)| v == value) {
            self.secrets.push((format!("${{{name}}}"), value.to_string()));
            // Longest first, so a secret containing another is replaced whole.
            self.secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |acc, (name, value)| acc.replace(value, name))
    }

    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value as J;
        match value {
            J::String(s) => J::String(self.redact(s)),
            J::Array(items) => J::Array(items.iter().map(|v| self.redact_json(v)).collect()),
            J::Object(map) => J::Object(map.iter().map(|(k, v)| (k.clone(), self.redact_json(v))).collect()),
            other => other.clone(),
        }
    }
}

/// Applies `--set path=value`: `seed=7`, `store=…`, `variables.NAME=…`, or `STAGE.PARAM[.SUB…]=VALUE` for the
/// stage's `with:` block. Values are YAML, so `3`, `true`, `[a, b]` keep their types.
fn apply_overrides(root: &mut Node, overrides: &[String], problems: &mut Vec<Problem>) {
    for (i, item) in overrides.iter().enumerate() {
        let loc = Loc::Override(i);
        let Some((path, text)) = item.split_once('=') else {
            problems.push(Problem::new(
                loc,
                "an override needs the form PATH=VALUE",
                Some("write for example `--set train.epochs=20` or `--set seed=7`".into()),
            ));
            continue;
        };
        let value = match yaml::parse(text) {
            Ok(mut v) => {
                relocate(&mut v, loc);
                v
            }
            Err(e) => {
                problems.push(Problem::new(loc, format!("the value is not valid YAML: {e}"), None));
                continue;
            }
        };
        let segments: Vec<&str> = path.split('.').collect();
        let target: Vec<&str> = match segments.as_slice() {
            ["name" | "store" | "seed"] | ["variables", _] => segments.clone(),
            // A stage key, not a parameter: no stage kind has a parameter of this name.
            [stage, "shards"] => vec!["stages", stage, "shards"],
            [stage, param, rest @ ..] => [&["stages", stage, "with", param][..], rest].concat(),
            _ => {
                problems.push(Problem::new(
                    loc,
                    format!("`{path}` names neither a top-level setting nor a stage parameter"),
                    Some("use `seed`, `store`, `name`, `variables.NAME`, `STAGE.PARAM` or `STAGE.shards`".into()),
                ));
                continue;
            }
        };
        if target[0] == "stages" && root.get("stages").and_then(|s| s.get(target[1])).is_none() {
            let names = stage_names(root);
            problems.push(Problem::new(
                loc,
                format!("there is no stage `{}`", target[1]),
                Some(suggest(target[1], names.iter().map(String::as_str), "stages are")),
            ));
            continue;
        }
        if let Err(e) = root.set_path(&target, value) {
            problems.push(Problem::new(loc, e, None));
        }
    }
}

fn relocate(node: &mut Node, loc: Loc) {
    node.loc = loc;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| relocate(n, loc)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            k.loc = loc;
            relocate(v, loc)
        }),
        _ => {}
    }
}

fn stage_names(root: &Node) -> Vec<String> {
    root.get("stages")
        .and_then(Node::as_map)
        .map(|m| m.iter().map(|(k, _)| k.name.clone()).collect())
        .unwrap_or_default()
}

/// "did you mean `x`?", or the list of what is allowed.
fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str> + Clone, what: &str) -> String {
    match closest(word, candidates.clone()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => {
            let all: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
            if all.is_empty() { format!("no {what} defined") } else { format!("{what} {}", all.join(", ")) }
        }
    }
}
