//! From YAML text to a validated [`Pipeline`].
//!
//! Nothing runs until the whole config has been checked. Every problem found is collected —
//! unknown keys, unknown stage kinds, bad parameter values, missing or ambiguous inputs,
//! cycles — and reported together, each with its `file:line:column` and what would fix it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::stage::{BuildError, Built, Output, Registry, Stage, StageKind, closest};
use serde::{Deserialize, Serialize};

use crate::yaml::{self, Key, Loc, Node, NodeDeserializer, Value};

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
        let mut checker = Checker { registry, problems, redactor: Redactor::default() };
        let pipeline = checker.check(file, &root, overrides);
        let mut problems = checker.problems;
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

struct Checker<'r> {
    registry: &'r Registry,
    problems: Vec<Problem>,
    redactor: Redactor,
}

const TOP_KEYS: &[&str] = &["name", "store", "seed", "variables", "stages"];
const STAGE_KEYS: &[&str] = &["uses", "inputs", "with", "resources", "shards"];

/// A stage whose kind and parameters checked out, before inputs are resolved.
struct Candidate {
    name: String,
    loc: Loc,
    kind: &'static str,
    params: serde_json::Value,
    stage: Box<dyn Stage>,
    /// `inputs:` entries: slot → (reference text, where it was written).
    mapped: Vec<(Key, Node)>,
    resources: Resources,
    shards: u32,
}

impl<'r> Checker<'r> {
    fn problem(&mut self, loc: Loc, message: impl Into<String>, help: impl Into<Option<String>>) {
        self.problems.push(Problem::new(loc, message, help.into()));
    }

    fn unknown_keys(&mut self, map: &[(Key, Node)], allowed: &[&str], what: &str) {
        for (key, _) in map {
            if !allowed.contains(&key.name.as_str()) {
                let help = suggest(&key.name, allowed.iter().copied(), "known keys are");
                self.problem(key.loc, format!("unknown key `{}` in {what}", key.name), help);
            }
        }
    }

    fn check(&mut self, file: &str, root: &Node, overrides: &[String]) -> Option<Pipeline> {
        let Some(top) = root.as_map() else {
            self.problem(root.loc, format!("a pipeline is a mapping, found {}", root.type_name()), None);
            return None;
        };
        self.unknown_keys(top, TOP_KEYS, "the pipeline");

        let variables = self.variables(root.get("variables"));
        let name = match root.get("name") {
            Some(Node { value: Value::Str(s), .. }) if !s.is_empty() => s.clone(),
            Some(n) => {
                self.problem(n.loc, "`name` must be a non-empty string", None);
                String::new()
            }
            None => {
                self.problem(root.loc, "the pipeline has no `name`", Some("add `name: my-pipeline`".to_string()));
                String::new()
            }
        };
        let store = match root.get("store") {
            None => DEFAULT_STORE.to_string(),
            Some(n) => match &n.value {
                Value::Str(s) => self.interpolate(s, n.loc, &variables),
                _ => {
                    self.problem(n.loc, format!("`store` must be a URL or a folder, found {}", n.type_name()), None);
                    String::new()
                }
            },
        };
        let seed = match root.get("seed").map(|n| (n, &n.value)) {
            None => 0,
            Some((_, Value::Int(i))) if *i >= 0 => *i as u64,
            Some((n, _)) => {
                self.problem(n.loc, "`seed` must be a non-negative integer", None);
                0
            }
        };

        let candidates = match root.get("stages") {
            None => {
                self.problem(root.loc, "the pipeline has no `stages`", Some("add a `stages:` mapping".to_string()));
                Vec::new()
            }
            Some(n) => match n.as_map() {
                Some(m) if !m.is_empty() => {
                    m.iter().filter_map(|(key, stage)| self.stage(key, stage, &variables)).collect()
                }
                _ => {
                    self.problem(n.loc, "`stages` must be a non-empty mapping of stage names to stages", None);
                    Vec::new()
                }
            },
        };
        // A stage that did not build has no known outputs: wiring the others would only
        // report its readers as broken too.
        let declared = root.get("stages").and_then(Node::as_map).map_or(0, <[_]>::len);
        if candidates.len() < declared {
            return None;
        }
        let stages = self.wire(candidates)?;
        Some(Pipeline {
            name,
            file: file.to_string(),
            store,
            seed,
            stages,
            overrides: overrides.to_vec(),
            redactor: std::mem::take(&mut self.redactor),
        })
    }

    fn variables(&mut self, node: Option<&Node>) -> HashMap<String, String> {
        let mut vars = HashMap::new();
        let Some(node) = node else { return vars };
        let Some(map) = node.as_map() else {
            self.problem(node.loc, "`variables` must be a mapping of names to values", None);
            return vars;
        };
        for (key, value) in map {
            let text = match &value.value {
                Value::Str(s) => self.interpolate(s, value.loc, &vars),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    self.problem(value.loc, format!("variable `{}` must be a scalar", key.name), None);
                    continue;
                }
            };
            vars.insert(key.name.clone(), text);
        }
        vars
    }

    /// Resolves `${NAME}` from `variables:`, then from the environment (whose values are
    /// treated as secrets). `$$` is a literal `$`.
    fn interpolate(&mut self, text: &str, loc: Loc, vars: &HashMap<String, String>) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    self.problem(
                        loc,
                        format!("unclosed `${{` in `{text}`"),
                        Some("write `${NAME}`, or `$$` for a literal `$`".to_string()),
                    );
                    return out;
                };
                let name = &body[..end];
                if let Some(v) = vars.get(name) {
                    out.push_str(v);
                } else if let Ok(v) = std::env::var(name) {
                    self.redactor.add(name, &v);
                    out.push_str(&v);
                } else {
                    self.problem(
                        loc,
                        format!("`${{{name}}}` is not set"),
                        Some(format!("define `{name}` under `variables:` or export it in the environment")),
                    );
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }

    fn interpolate_tree(&mut self, node: &mut Node, vars: &HashMap<String, String>) {
        let loc = node.loc;
        match &mut node.value {
            Value::Str(s) if s.contains('$') => *s = self.interpolate(s, loc, vars),
            Value::Seq(items) => items.iter_mut().for_each(|n| self.interpolate_tree(n, vars)),
            Value::Map(entries) => entries.iter_mut().for_each(|(_, n)| self.interpolate_tree(n, vars)),
            _ => {}
        }
    }

    fn stage(&mut self, key: &Key, node: &Node, vars: &HashMap<String, String>) -> Option<Candidate> {
        if !is_valid_stage_name(&key.name) {
            self.problem(
                key.loc,
                format!("`{}` is not a valid stage name", key.name),
                Some("use lowercase letters, digits and `-` (at most 63), as Kubernetes names do".to_string()),
            );
        }
        let Some(map) = node.as_map() else {
            self.problem(node.loc, format!("stage `{}` must be a mapping with `uses:`", key.name), None);
            return None;
        };
        self.unknown_keys(map, STAGE_KEYS, &format!("stage `{}`", key.name));
        let mapped = self.stage_inputs(node);
        let resources = self.stage_resources(key, node);
        let shards = self.stage_shards(node);
        let kind = self.stage_kind(key, node)?;
        let mut with = node.get("with").cloned().unwrap_or(Node::new(Value::Map(Vec::new()), node.loc));
        if matches!(with.value, Value::Null) {
            with.value = Value::Map(Vec::new());
        }
        self.interpolate_tree(&mut with, vars);
        let built = kind.build(&with);
        // Parameter structs deny unknown keys, so only a refused `with:` can hold some; they
        // are then all reported at once (serde stops at the first).
        if matches!(built, Err(BuildError::Shape(_))) && self.unknown_params(kind, &with) {
            return None;
        }
        let built = self.refused(key, kind.name, &with, built)?;
        if shards > 1 && built.stage.shard_order().is_none() {
            self.problem(
                node.get("shards").map_or(key.loc, |n| n.loc),
                format!("stage `{}` ({}) cannot be sharded: it does not work series by series", key.name, kind.name),
                Some(
                    "remove `shards:`; stages that work series by series (ingest.prometheus) can be sharded"
                        .to_string(),
                ),
            );
            return None;
        }
        Some(Candidate {
            name: key.name.clone(),
            shards,
            loc: key.loc,
            kind: kind.name,
            params: built.params,
            stage: built.stage,
            mapped,
            resources,
        })
    }

    /// `inputs:` as written: slot → `stage.output`.
    fn stage_inputs(&mut self, node: &Node) -> Vec<(Key, Node)> {
        let Some(n) = node.get("inputs") else { return Vec::new() };
        match n.as_map() {
            Some(m) => m.to_vec(),
            None => {
                self.problem(
                    n.loc,
                    "`inputs` maps input slots to `stage.output`",
                    Some("write for example `inputs: {samples: ingest.samples}`".to_string()),
                );
                Vec::new()
            }
        }
    }

    /// `resources:` (the pod's requests when the stage runs as a Job), or the defaults.
    fn stage_resources(&mut self, key: &Key, node: &Node) -> Resources {
        let Some(n) = node.get("resources") else { return Resources::default() };
        NodeDeserializer::deserialize::<Resources>(n).unwrap_or_else(|e| {
            self.problem(
                e.loc.unwrap_or(n.loc),
                format!("stage `{}` resources: {}", key.name, e.message),
                Some("e.g. `resources: {cpu: \"2\", memory: 8Gi, gpu: 1, node_selector: {pool: gpu}}`".to_string()),
            );
            Resources::default()
        })
    }

    fn stage_shards(&mut self, node: &Node) -> u32 {
        match node.get("shards") {
            None => 1,
            Some(Node { value: Value::Int(n), .. }) if (1..=10_000).contains(n) => *n as u32,
            Some(n) => {
                self.problem(n.loc, "`shards` is a number of shards from 1 to 10000", None);
                1
            }
        }
    }

    /// The registered kind `uses:` names.
    fn stage_kind(&mut self, key: &Key, node: &Node) -> Option<&'r StageKind> {
        let kind_name = match node.get("uses") {
            Some(Node { value: Value::Str(s), .. }) => s.as_str(),
            Some(n) => {
                self.problem(n.loc, "`uses` must name a stage kind", None);
                return None;
            }
            None => {
                self.problem(
                    key.loc,
                    format!("stage `{}` has no `uses:`", key.name),
                    Some("name its kind, see `applearner stages`".to_string()),
                );
                return None;
            }
        };
        let registry = self.registry;
        let kind = registry.get(kind_name);
        if kind.is_none() {
            let names: Vec<&str> = registry.names().collect();
            let help = suggest(kind_name, names.iter().copied(), "known kinds are");
            let at = node.get("uses").map_or(key.loc, |n| n.loc);
            self.problem(at, format!("unknown stage kind `{kind_name}`"), help);
        }
        kind
    }

    /// The built stage, or its refusal reported where in `with:` it stands.
    fn refused(&mut self, key: &Key, kind: &str, with: &Node, built: Result<Built, BuildError>) -> Option<Built> {
        match built {
            Ok(built) => Some(built),
            Err(BuildError::Shape(e)) => {
                self.problem(
                    e.loc.unwrap_or(with.loc),
                    format!("stage `{}` ({kind}): {}", key.name, e.message),
                    Some(format!("see `applearner stages {kind}` for its parameters")),
                );
                None
            }
            Err(BuildError::Params(list)) => {
                for p in list {
                    let path: Vec<&str> = p.path.iter().map(String::as_str).collect();
                    let loc = locate(with, &path);
                    self.problem(loc, format!("stage `{}` ({kind}): {}", key.name, p.message), p.help);
                }
                None
            }
        }
    }

    /// Reports each key of `with` that is not a parameter of `kind`; whether there was one.
    /// The names come from the kind's schema, built only here: not for every stage loaded.
    fn unknown_params(&mut self, kind: &StageKind, with: &Node) -> bool {
        let names = kind.param_names();
        let mut found = false;
        for (k, _) in with.as_map().unwrap_or_default() {
            if !names.contains(&k.name) {
                found = true;
                let help = suggest(&k.name, names.iter().map(String::as_str), "parameters are");
                self.problem(k.loc, format!("unknown parameter `{}` of {}", k.name, kind.name), help);
            }
        }
        found
    }

    /// Resolves inputs to producing stages, then orders the DAG (reporting cycles).
    fn wire(&mut self, candidates: Vec<Candidate>) -> Option<Vec<StageSpec>> {
        // Which stages write which output name.
        let mut producers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in &candidates {
            for o in c.stage.writes() {
                producers.entry(o.name).or_default().push(c.name.clone());
            }
        }
        let by_name: HashMap<&str, &Candidate> = candidates.iter().map(|c| (c.name.as_str(), c)).collect();
        let wired: Vec<Vec<InputRef>> = candidates.iter().map(|c| self.inputs_of(c, &producers, &by_name)).collect();

        let mut graph = DiGraph::<usize, ()>::new();
        let nodes: Vec<NodeIndex> = (0..candidates.len()).map(|i| graph.add_node(i)).collect();
        let index: HashMap<&str, usize> = candidates.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
        for (i, inputs) in wired.iter().enumerate() {
            for input in inputs {
                graph.update_edge(nodes[index[input.stage.as_str()]], nodes[i], ());
            }
        }
        self.report_cycles(&graph, &candidates);
        if !self.problems.is_empty() {
            return None;
        }
        // Stable topological order: by position in the file among the ready stages.
        let order = stable_toposort(&graph, &nodes);
        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(pos, &i)| (i, pos)).collect();
        let mut slots: Vec<Option<(Candidate, Vec<InputRef>)>> = candidates.into_iter().zip(wired).map(Some).collect();
        let names: Vec<String> = slots.iter().map(|s| s.as_ref().unwrap().0.name.clone()).collect();
        let specs = order
            .iter()
            .map(|&i| {
                let (c, inputs) = slots[i].take().unwrap();
                let mut upstream: Vec<usize> =
                    inputs.iter().map(|inp| position[&names.iter().position(|n| *n == inp.stage).unwrap()]).collect();
                upstream.sort();
                upstream.dedup();
                StageSpec {
                    resources: c.resources,
                    shards: c.shards,
                    outputs: c.stage.writes(),
                    name: c.name,
                    kind: c.kind,
                    params: c.params,
                    stage: c.stage,
                    inputs,
                    upstream,
                }
            })
            .collect();
        Some(specs)
    }

    /// One stage's inputs, each slot resolved to the stage that writes it; unknown slots and
    /// badly written inputs reported.
    fn inputs_of(
        &mut self,
        c: &Candidate,
        producers: &BTreeMap<String, Vec<String>>,
        by_name: &HashMap<&str, &Candidate>,
    ) -> Vec<InputRef> {
        let slots = c.stage.reads();
        for (k, _) in &c.mapped {
            if !slots.contains(&k.name) {
                let help = suggest(&k.name, slots.iter().map(String::as_str), "its input slots are");
                self.problem(k.loc, format!("stage `{}` ({}) has no input slot `{}`", c.name, c.kind, k.name), help);
            }
        }
        let mut inputs = Vec::new();
        for slot in slots {
            let mapped = c.mapped.iter().find(|(k, _)| k.name == slot).map(|(_, v)| v);
            let (text, loc) = match mapped {
                Some(n) => match n.as_str() {
                    Some(s) => (s.to_string(), n.loc),
                    None => {
                        self.problem(n.loc, "an input is written `stage.output` or `output`", None);
                        continue;
                    }
                },
                None => (slot.clone(), c.loc),
            };
            if let Some(input) = self.resolve(c, &slot, &text, loc, producers, by_name) {
                inputs.push(input);
            }
        }
        inputs
    }

    /// Each cycle of stages, reported at the first of them in the file.
    fn report_cycles(&mut self, graph: &DiGraph<usize, ()>, candidates: &[Candidate]) {
        for scc in petgraph::algo::tarjan_scc(graph) {
            let looped = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
            if looped {
                let names = cycle_names(graph, &scc, candidates);
                let first = &candidates[scc.iter().map(|n| graph[*n]).min().expect("components are not empty")];
                self.problem(
                    first.loc,
                    format!("the stages form a cycle: {}", names.join(" → ")),
                    Some("a stage cannot read, directly or not, what it writes: map one of these inputs to another stage".to_string()),
                );
            }
        }
    }

    fn resolve(
        &mut self,
        c: &Candidate,
        slot: &str,
        text: &str,
        loc: Loc,
        producers: &BTreeMap<String, Vec<String>>,
        by_name: &HashMap<&str, &Candidate>,
    ) -> Option<InputRef> {
        let consumer = &c.name;
        // `model.mpk` names an output; `train.model.mpk` one of stage `train`.
        if let Some((stage, output)) = text.split_once('.').filter(|_| !producers.contains_key(text)) {
            let Some(producer) = by_name.get(stage) else {
                let help = suggest(stage, by_name.keys().copied(), "stages are");
                self.problem(loc, format!("stage `{consumer}` reads `{text}`, but there is no stage `{stage}`"), help);
                return None;
            };
            let outputs: Vec<String> = producer.stage.writes().into_iter().map(|o| o.name).collect();
            if !outputs.iter().any(|o| o == output) {
                let help = suggest(output, outputs.iter().map(String::as_str), &format!("`{stage}` writes"));
                self.problem(
                    loc,
                    format!("stage `{consumer}` reads `{text}`, but `{stage}` writes no `{output}`"),
                    help,
                );
                return None;
            }
            return Some(InputRef { slot: slot.into(), stage: stage.into(), output: output.into() });
        }
        let from: Vec<&String> =
            producers.get(text).map(|v| v.iter().filter(|p| *p != consumer).collect()).unwrap_or_default();
        match from.as_slice() {
            [one] => Some(InputRef { slot: slot.into(), stage: (*one).clone(), output: text.into() }),
            [] => {
                self.problem(
                    loc,
                    format!("stage `{consumer}` ({}) reads `{text}`, but no stage writes it", c.kind),
                    Some(format!("add a stage that writes `{text}`, or map it: `inputs: {{{slot}: STAGE.OUTPUT}}`")),
                );
                None
            }
            many => {
                let list: Vec<String> = many.iter().map(|p| format!("`{p}.{text}`")).collect();
                self.problem(
                    loc,
                    format!("stage `{consumer}` reads `{text}`, which {} stages write", many.len()),
                    Some(format!("choose one under `inputs: {{{slot}: …}}`: {}", list.join(", "))),
                );
                None
            }
        }
    }
}

/// Kubernetes-compatible (DNS-1123 label), so a stage name can name a Job or an Argo task.
fn is_valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The location of `path` below `node`, or of the deepest part of it that exists.
fn locate(node: &Node, path: &[&str]) -> Loc {
    match path.split_first() {
        None => node.loc,
        Some((first, rest)) => match node.as_map().and_then(|m| m.iter().find(|(k, _)| k.name == *first)) {
            Some((_, child)) => locate(child, rest),
            None => node.loc,
        },
    }
}

/// The stages of a strongly connected component in the order of one loop through it.
fn cycle_names(graph: &DiGraph<usize, ()>, scc: &[NodeIndex], candidates: &[Candidate]) -> Vec<String> {
    let start = *scc.iter().min_by_key(|n| graph[**n]).unwrap();
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = graph
            .neighbors(current)
            .filter(|n| scc.contains(n))
            .min_by_key(|n| (path.contains(n) && *n != start, graph[*n]))
            .unwrap();
        if next == start || path.contains(&next) {
            path.push(next);
            break;
        }
        path.push(next);
        current = next;
    }
    path.iter().map(|n| format!("`{}`", candidates[graph[*n]].name)).collect()
}

/// Kahn's algorithm taking the earliest-declared ready stage first, so the order (and the
/// order of logs and manifests) follows the file.
fn stable_toposort(graph: &DiGraph<usize, ()>, nodes: &[NodeIndex]) -> Vec<usize> {
    let mut indegree: Vec<usize> =
        nodes.iter().map(|n| graph.neighbors_directed(*n, petgraph::Direction::Incoming).count()).collect();
    let mut ready: std::collections::BTreeSet<usize> = (0..nodes.len()).filter(|i| indegree[*i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for next in graph.neighbors(nodes[i]) {
            let j = graph[next];
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_reads_variables_then_environment_and_redacts_the_environment() {
        let registry = Registry::new();
        let mut checker = Checker { registry: &registry, problems: Vec::new(), redactor: Redactor::default() };
        let vars = HashMap::from([("dir".to_string(), "data".to_string())]);
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("APPLEARNER_TEST_TOKEN", "s3cr3t-value") };
        let out = checker.interpolate("${dir}/x?token=${APPLEARNER_TEST_TOKEN}&cost=$$5", Loc::Unknown, &vars);
        assert_eq!(out, "data/x?token=s3cr3t-value&cost=$5");
        assert_eq!(checker.redactor.redact(&out), "data/x?token=${APPLEARNER_TEST_TOKEN}&cost=$5");
        checker.interpolate("${APPLEARNER_NOT_SET_ANYWHERE}", Loc::Unknown, &vars);
        assert_eq!(checker.problems.len(), 1);
        assert!(checker.problems[0].message.contains("APPLEARNER_NOT_SET_ANYWHERE"));
    }

    #[test]
    fn stage_names_must_be_kubernetes_names() {
        assert!(is_valid_stage_name("ingest"));
        assert!(is_valid_stage_name("train-gpu-2"));
        assert!(!is_valid_stage_name("Train"));
        assert!(!is_valid_stage_name("a_b"));
        assert!(!is_valid_stage_name("../x"));
        assert!(!is_valid_stage_name("-a"));
    }
}
