//! Wiring the checked stages: each input resolved to a stage's output, then a cycle check
//! and a stable order.

use std::collections::BTreeMap;

use petgraph::graph::{DiGraph, NodeIndex};

use super::check::{Candidate, Checker};
use super::*;

impl Checker<'_> {
    /// Resolves inputs to producing stages, then orders the DAG (reporting cycles).
    pub(super) fn wire(&mut self, candidates: Vec<Candidate>) -> Option<Vec<StageSpec>> {
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
