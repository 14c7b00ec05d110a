//! The checks of a parsed config: its keys, variables, stages and their wiring.

use std::collections::HashMap;

use super::*;
use crate::stage::{BuildError, Built, Registry, Stage, StageKind};
use crate::yaml::{Key, Loc, Node, NodeDeserializer, Value};

/// Checks the whole config, collecting every problem after `problems`: the pipeline,
/// unless there was one.
pub(super) fn check(
    file: &str,
    root: &Node,
    overrides: &[String],
    registry: &Registry,
    problems: Vec<Problem>,
) -> (Option<Pipeline>, Vec<Problem>) {
    let mut checker = Checker { registry, problems, redactor: Redactor::default() };
    let pipeline = checker.check(file, root, overrides);
    (pipeline, checker.problems)
}

pub(super) struct Checker<'r> {
    pub(super) registry: &'r Registry,
    pub(super) problems: Vec<Problem>,
    pub(super) redactor: Redactor,
}

const TOP_KEYS: &[&str] = &["name", "store", "seed", "variables", "stages"];
const STAGE_KEYS: &[&str] = &["uses", "inputs", "with", "resources", "shards"];

/// A stage whose kind and parameters checked out, before inputs are resolved.
pub(super) struct Candidate {
    pub(super) name: String,
    pub(super) loc: Loc,
    pub(super) kind: &'static str,
    pub(super) params: serde_json::Value,
    pub(super) stage: Box<dyn Stage>,
    /// `inputs:` entries: slot → (reference text, where it was written).
    pub(super) mapped: Vec<(Key, Node)>,
    pub(super) resources: Resources,
    pub(super) shards: u32,
}

impl<'r> Checker<'r> {
    pub(super) fn problem(&mut self, loc: Loc, message: impl Into<String>, help: impl Into<Option<String>>) {
        self.problems.push(Problem::new(loc, message, help.into()));
    }

    pub(super) fn unknown_keys(&mut self, map: &[(Key, Node)], allowed: &[&str], what: &str) {
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
        let name = self.name(root);
        let store = self.store(root, &variables);
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

    fn name(&mut self, root: &Node) -> String {
        match root.get("name") {
            Some(Node { value: Value::Str(s), .. }) if !s.is_empty() => s.clone(),
            Some(n) => {
                self.problem(n.loc, "`name` must be a non-empty string", None);
                String::new()
            }
            None => {
                self.problem(root.loc, "the pipeline has no `name`", Some("add `name: my-pipeline`".to_string()));
                String::new()
            }
        }
    }

    /// The store's URL or folder, its variables filled in.
    fn store(&mut self, root: &Node, variables: &HashMap<String, String>) -> String {
        let Some(n) = root.get("store") else { return DEFAULT_STORE.to_string() };
        match &n.value {
            Value::Str(s) => self.interpolate(s, n.loc, variables),
            _ => {
                self.problem(n.loc, format!("`store` must be a URL or a folder, found {}", n.type_name()), None);
                String::new()
            }
        }
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
