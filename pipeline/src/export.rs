//! Pipelines for the schedulers users already run: an Argo Workflow with one task per
//! stage, or a Kubernetes Job (or CronJob) for clusters without Argo.
//!
//! Every pod runs `applearner run CONFIG` from the AppLearner image, with the config mounted
//! from a ConfigMap and the store on object storage, so the stages of one run share their
//! artifacts and cache wherever they are scheduled.

use crate::PipelineError;
use serde_json::{Value, json};

use crate::config::{Pipeline, Resources};
use crate::stage::parse_quantity;

/// Where and how the pods run.
#[derive(Debug, Clone)]
pub struct Target {
    /// The AppLearner image (`registry/applearner:TAG`).
    pub image: String,
    /// The ConfigMap holding the config file, mounted at `/config`.
    pub config_map: String,
    /// A Secret whose keys become environment variables (store credentials).
    pub secret: Option<String>,
    pub namespace: Option<String>,
    /// Retries of a failed pod (stages are idempotent: a retry resumes from what committed).
    pub retries: u32,
}

const MOUNT: &str = "/config";

fn is_object_store(url: &str) -> bool {
    ["s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://", "azure://"].iter().any(|p| url.starts_with(p))
}

/// The command line of a pod: the mounted config, the overrides it was exported with, and
/// the run it belongs to.
fn args(pipeline: &Pipeline, run_id: &str, stage: Option<&str>, shard: Option<String>) -> Vec<String> {
    let file = std::path::Path::new(&pipeline.file)
        .file_name()
        .map_or("pipeline.yaml".into(), |f| f.to_string_lossy().into_owned());
    let mut out = vec!["run".to_string(), format!("{MOUNT}/{file}"), "--run-id".into(), run_id.into()];
    if let Some(stage) = stage {
        out.extend(["--stage".into(), stage.into()]);
    }
    if let Some(shard) = shard {
        out.extend(["--shard".into(), shard]);
    }
    for set in &pipeline.overrides {
        out.extend(["--set".into(), set.clone()]);
    }
    out
}

fn check(pipeline: &Pipeline) -> Result<(), PipelineError> {
    if is_object_store(&pipeline.store) { Ok(()) } else { Err(PipelineError::LocalStore(pipeline.store.clone())) }
}

/// A container running `args`, with the config mounted and the secret's variables.
fn container(target: &Target, name: &str, args: Vec<String>, resources: &Resources, env: Vec<Value>) -> Value {
    let mut c = json!({
        "name": name,
        "image": target.image,
        "command": ["applearner"],
        "args": args,
        "volumeMounts": [{"name": "config", "mountPath": MOUNT, "readOnly": true}],
    });
    if !env.is_empty() {
        c["env"] = Value::Array(env);
    }
    if let Some(secret) = &target.secret {
        c["envFrom"] = json!([{"secretRef": {"name": secret}}]);
    }
    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    if let Some(cpu) = &resources.cpu {
        requests.insert("cpu".into(), cpu.clone().into());
    }
    if let Some(memory) = &resources.memory {
        requests.insert("memory".into(), memory.clone().into());
        limits.insert("memory".into(), memory.clone().into());
    }
    if resources.gpu > 0 {
        limits.insert("nvidia.com/gpu".into(), resources.gpu.to_string().into());
    }
    if !requests.is_empty() || !limits.is_empty() {
        c["resources"] = json!({"requests": requests, "limits": limits});
    }
    c
}

fn config_volume(target: &Target) -> Value {
    json!([{"name": "config", "configMap": {"name": target.config_map}}])
}

fn metadata(name: &str, target: &Target, generate: bool) -> Value {
    let mut m = if generate { json!({"generateName": format!("{name}-")}) } else { json!({"name": name}) };
    if let Some(ns) = &target.namespace {
        m["namespace"] = ns.clone().into();
    }
    m["labels"] = json!({"app.kubernetes.io/name": "applearner", "applearner.io/pipeline": name});
    m
}

/// Which Argo object to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgoKind {
    Workflow,
    WorkflowTemplate,
    /// Runs on a cron schedule (`0 3 * * *`).
    CronWorkflow(String),
}

/// An Argo Workflow (or template, or cron workflow): a DAG with one task per stage, each a
/// pod running `applearner run --stage NAME` under the workflow's name as run id. A stage
/// with `shards: N` fans out: task `NAME-shards` runs N pods in parallel (`withSequence`),
/// each `--shard I/N`, and task `NAME` then merges them.
pub fn argo(pipeline: &Pipeline, target: &Target, kind: &ArgoKind) -> Result<Value, PipelineError> {
    check(pipeline)?;
    let run_id = "{{workflow.name}}";
    let mut tasks = Vec::new();
    let mut templates = Vec::new();
    let template = |name: &str, s: &crate::config::StageSpec, args: Vec<String>, resources: &Resources| {
        let mut t = json!({
            "name": name,
            "container": container(target, "main", args, resources, Vec::new()),
            "retryStrategy": {"limit": target.retries.to_string(), "retryPolicy": "OnFailure"},
            "metadata": {"labels": {"applearner.io/stage": s.name, "applearner.io/kind": s.kind}},
        });
        if !resources.node_selector.is_empty() {
            t["nodeSelector"] = json!(resources.node_selector);
        }
        t
    };
    for s in &pipeline.stages {
        let mut deps: Vec<String> = s.upstream.iter().map(|&u| pipeline.stages[u].name.clone()).collect();
        let mut merge_resources = s.resources.clone();
        if s.shards > 1 {
            let fan = format!("{}-shards", s.name);
            let mut task = json!({
                "name": fan,
                "template": fan,
                "withSequence": {"count": s.shards.to_string()},
                "arguments": {"parameters": [{"name": "shard", "value": "{{item}}"}]},
            });
            if !deps.is_empty() {
                task["dependencies"] = json!(deps);
            }
            tasks.push(task);
            let shard = format!("{{{{inputs.parameters.shard}}}}/{}", s.shards);
            let mut t = template(&fan, s, args(pipeline, run_id, Some(&s.name), Some(shard)), &s.resources);
            t["inputs"] = json!({"parameters": [{"name": "shard"}]});
            templates.push(t);
            // The merge reads the shards' tables: no accelerator, no special nodes.
            merge_resources.gpu = 0;
            merge_resources.node_selector.clear();
            deps = vec![fan];
        }
        let mut task = json!({"name": s.name, "template": s.name});
        if !deps.is_empty() {
            task["dependencies"] = json!(deps);
        }
        tasks.push(task);
        templates.push(template(&s.name, s, args(pipeline, run_id, Some(&s.name), None), &merge_resources));
    }
    templates.insert(0, json!({"name": "pipeline", "dag": {"tasks": tasks}}));
    let spec = json!({"entrypoint": "pipeline", "volumes": config_volume(target), "templates": templates});
    Ok(match kind {
        ArgoKind::Workflow => json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": metadata(&pipeline.name, target, true),
            "spec": spec,
        }),
        ArgoKind::WorkflowTemplate => json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTemplate",
            "metadata": metadata(&pipeline.name, target, false),
            "spec": spec,
        }),
        ArgoKind::CronWorkflow(schedule) => json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "CronWorkflow",
            "metadata": metadata(&pipeline.name, target, false),
            "spec": {"schedules": [schedule], "concurrencyPolicy": "Forbid", "workflowSpec": spec},
        }),
    })
}

/// A Kubernetes Job running the whole pipeline in one pod (without Argo there is nothing
/// to order pods by), sized for its most demanding stage; with a schedule, a CronJob.
pub fn kubernetes(pipeline: &Pipeline, target: &Target, schedule: Option<&str>) -> Result<Value, PipelineError> {
    check(pipeline)?;
    let resources = largest(pipeline)?;
    // Each Job is one run: its name (from the label Kubernetes sets) is the run id.
    let env =
        vec![json!({"name": "JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}})];
    let mut pod = json!({
        "restartPolicy": "Never",
        "containers": [container(target, "applearner", args(pipeline, "$(JOB_NAME)", None, None), &resources, env)],
        "volumes": config_volume(target),
    });
    if !resources.node_selector.is_empty() {
        pod["nodeSelector"] = json!(resources.node_selector);
    }
    let job = json!({"backoffLimit": target.retries, "template": {"spec": pod}});
    Ok(match schedule {
        None => {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(&pipeline.name, target, true), "spec": job})
        }
        Some(schedule) => json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": metadata(&pipeline.name, target, false),
            "spec": {"schedule": schedule, "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": job}},
        }),
    })
}

/// Per field, what the most demanding stage asks: the pod runs them all.
fn largest(pipeline: &Pipeline) -> Result<Resources, PipelineError> {
    let mut out = Resources::default();
    let mut best = (0.0, 0.0);
    for s in &pipeline.stages {
        let r = &s.resources;
        for (field, value, best, slot) in
            [("cpu", &r.cpu, &mut best.0, &mut out.cpu), ("memory", &r.memory, &mut best.1, &mut out.memory)]
        {
            if let Some(v) = value {
                let q = parse_quantity(v).ok_or_else(|| PipelineError::Quantity {
                    stage: s.name.clone(),
                    field,
                    value: v.clone(),
                })?;
                if q > *best {
                    *best = q;
                    *slot = Some(v.clone());
                }
            }
        }
        out.gpu = out.gpu.max(r.gpu);
        out.node_selector.extend(r.node_selector.clone());
    }
    Ok(out)
}
