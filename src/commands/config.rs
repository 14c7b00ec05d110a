//! Commands that read a config and run nothing: `validate`, `dag`, `export`.

use std::process::ExitCode;

use applearner_pipeline::dag::{self, Format};
use applearner_pipeline::{Registry, export};

use super::load;
use crate::cli::{DagFormat, EXIT_INVALID, ExportTo, Sets};

pub fn validate(config: &str, sets: &Sets, registry: &Registry) -> anyhow::Result<ExitCode> {
    let (p, _) = match load(config, sets, registry)? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    // This machine is told, not refused: the pods that run a stage may have what it lacks.
    for spec in &p.stages {
        for warning in spec.stage.host_warnings() {
            tracing::warn!(stage = %spec.name, "{warning}");
        }
    }
    println!("{config}: ok, pipeline `{}` with {} stages", p.name, p.stages.len());
    Ok(ExitCode::SUCCESS)
}

pub fn dag(config: &str, format: DagFormat, sets: &Sets, registry: &Registry) -> anyhow::Result<ExitCode> {
    let (p, _) = match load(config, sets, registry)? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let format = match format {
        DagFormat::Text => Format::Text,
        DagFormat::Mermaid => Format::Mermaid,
        DagFormat::Dot => Format::Dot,
    };
    print!("{}", dag::render(&p, format));
    Ok(ExitCode::SUCCESS)
}

/// Where and how the exported pods run (the command line's `export` options).
pub struct Target {
    pub image: String,
    pub config_map: Option<String>,
    pub secret: Option<String>,
    pub namespace: Option<String>,
    pub retries: u32,
    pub template: bool,
    pub schedule: Option<String>,
    pub schedules: Option<export::Schedules>,
}

pub fn export(to: ExportTo, config: &str, sets: &Sets, t: Target, registry: &Registry) -> anyhow::Result<ExitCode> {
    let (p, _) = match load(config, sets, registry)? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let target = export::Target {
        image: t.image,
        config_map: t.config_map.unwrap_or_else(|| format!("{}-config", p.name)),
        secret: t.secret,
        namespace: t.namespace,
        retries: t.retries,
    };
    if let Some(s) = &t.schedules {
        return match export::schedules(&p, &target, s, matches!(to, ExportTo::Argo)) {
            Ok(docs) => {
                for d in docs {
                    print!("---\n{}", serde_saphyr::to_string(&d)?);
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(EXIT_INVALID))
            }
        };
    }
    let manifest = match to {
        ExportTo::Argo => {
            let kind = match (t.template, t.schedule) {
                (true, _) => export::ArgoKind::WorkflowTemplate,
                (_, Some(s)) => export::ArgoKind::CronWorkflow(s),
                _ => export::ArgoKind::Workflow,
            };
            export::argo(&p, &target, &kind)
        }
        ExportTo::K8s => export::kubernetes(&p, &target, t.schedule.as_deref()),
    };
    match manifest {
        Ok(m) => print!("{}", serde_saphyr::to_string(&m)?),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    }
    Ok(ExitCode::SUCCESS)
}
