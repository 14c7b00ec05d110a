//! Drawing a pipeline's DAG for `applearner dag`: plain text, Mermaid (renders in GitHub
//! Markdown) and Graphviz DOT.

use std::collections::HashMap;
use std::fmt::Write;

use petgraph::dot::{Config, Dot, RankDir};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::config::Pipeline;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Mermaid,
    Dot,
}

pub fn render(pipeline: &Pipeline, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Text => {
            writeln!(out, "pipeline {} ({} stages)", pipeline.name, pipeline.stages.len()).unwrap();
            for s in &pipeline.stages {
                writeln!(out, "{} ({})", s.name, s.kind).unwrap();
                for i in &s.inputs {
                    writeln!(out, "  reads  {} <- {}.{}", i.slot, i.stage, i.output).unwrap();
                }
                let outputs: Vec<String> = s.outputs.iter().map(|o| o.file_name()).collect();
                writeln!(out, "  writes {}", outputs.join(", ")).unwrap();
            }
        }
        Format::Mermaid => {
            writeln!(out, "flowchart LR").unwrap();
            for s in &pipeline.stages {
                writeln!(out, "  {}[\"{}<br/><small>{}</small>\"]", s.name.replace('-', "_"), s.name, s.kind).unwrap();
            }
            for s in &pipeline.stages {
                for i in &s.inputs {
                    writeln!(out, "  {} -->|{}| {}", i.stage.replace('-', "_"), i.output, s.name.replace('-', "_"))
                        .unwrap();
                }
            }
        }
        Format::Dot => {
            // The stages as a graph whose weights are the labels: petgraph writes and escapes it.
            let mut graph = DiGraph::<String, String>::new();
            let nodes: HashMap<&str, NodeIndex> = pipeline
                .stages
                .iter()
                .map(|s| (s.name.as_str(), graph.add_node(format!("{} ({})", s.name, s.kind))))
                .collect();
            for s in &pipeline.stages {
                for i in &s.inputs {
                    graph.add_edge(nodes[i.stage.as_str()], nodes[s.name.as_str()], i.output.to_string());
                }
            }
            let dot =
                Dot::with_attr_getters(&graph, &[Config::RankDir(RankDir::LR)], &|_, _| String::new(), &|_, _| {
                    "shape = box".to_string()
                });
            writeln!(out, "{dot}").unwrap();
        }
    }
    out
}
