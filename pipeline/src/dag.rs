//! Drawing a pipeline's DAG for `applearner dag`: plain text, Mermaid (renders in GitHub
//! Markdown) and Graphviz DOT.

use std::fmt::Write;

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
            writeln!(out, "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];", pipeline.name).unwrap();
            for s in &pipeline.stages {
                writeln!(out, "  \"{}\" [label=\"{}\\n{}\"];", s.name, s.name, s.kind).unwrap();
            }
            for s in &pipeline.stages {
                for i in &s.inputs {
                    writeln!(out, "  \"{}\" -> \"{}\" [label=\"{}\"];", i.stage, s.name, i.output).unwrap();
                }
            }
            writeln!(out, "}}").unwrap();
        }
    }
    out
}
