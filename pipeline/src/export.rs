//! Pipelines for the schedulers users already run: an Argo Workflow with one task per
//! stage, or a Kubernetes Job (or CronJob) for clusters without Argo.
//!
//! Every pod runs `applearner run CONFIG` from the AppLearner image, with the config mounted
//! from a ConfigMap and the store on object storage, so the stages of one run share their
//! artifacts and cache wherever they are scheduled.

use crate::PipelineError;
use serde_json::{Value, json};

use crate::config::{Pipeline, Resources, StageSpec};
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
    let template =
        |name: &str, s: &StageSpec, args, resources: &Resources| argo_template(target, name, s, args, resources);
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
    Ok(argo_object(&pipeline.name, target, kind, spec))
}

/// The pod template of one task: the stage's container, retried on failure, labelled with
/// the stage, on the nodes it asks for.
fn argo_template(target: &Target, name: &str, s: &StageSpec, args: Vec<String>, resources: &Resources) -> Value {
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
}

/// The Argo object of `kind` around a workflow spec.
fn argo_object(name: &str, target: &Target, kind: &ArgoKind, spec: Value) -> Value {
    match kind {
        ArgoKind::Workflow => json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": metadata(name, target, true),
            "spec": spec,
        }),
        ArgoKind::WorkflowTemplate => json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTemplate",
            "metadata": metadata(name, target, false),
            "spec": spec,
        }),
        ArgoKind::CronWorkflow(schedule) => json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "CronWorkflow",
            "metadata": metadata(name, target, false),
            "spec": {"schedules": [schedule], "concurrencyPolicy": "Forbid", "workflowSpec": spec},
        }),
    }
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

/// What keeps a cluster's plans current: a training schedule that publishes the model, and
/// a plan schedule that refreshes the plan from the latest published model (optionally
/// applying it), run under a ServiceAccount allowed to read what the plan needs and to
/// resize pods.
#[derive(Debug, Clone)]
pub struct Schedules {
    /// Where the training run publishes the model and refreshes read it (object storage).
    pub model: String,
    /// Cron schedule of training (`0 3 * * 0`: weekly).
    pub train: String,
    /// Cron schedule of refreshes (`0 * * * *`: hourly).
    pub plan: String,
    /// Apply each refresh's patches (server-side apply); otherwise a server-side dry run.
    pub apply: bool,
}

const ACCOUNT: &str = "applearner";

/// The ServiceAccount, its ClusterRole and binding, the training and the plan schedule: as
/// Argo CronWorkflows (`argo`) or Kubernetes CronJobs.
pub fn schedules(
    pipeline: &Pipeline,
    target: &Target,
    s: &Schedules,
    argo_kind: bool,
) -> Result<Vec<Value>, PipelineError> {
    let train = pipeline.stages.iter().find(|st| st.kind == "train.fit").ok_or(PipelineError::NoTrainStage)?;
    let train_sets = [format!("{}.use_model=null", train.name), format!("{}.publish={}", train.name, s.model)];
    let plan_sets = [format!("{}.use_model={}", train.name, s.model)];
    let mut docs = rbac(target);
    for (suffix, schedule, sets) in [("train", &s.train, &train_sets[..]), ("plan", &s.plan, &plan_sets[..])] {
        let mut doc = if argo_kind {
            argo(pipeline, target, &ArgoKind::CronWorkflow(schedule.clone()))?
        } else {
            kubernetes(pipeline, target, Some(schedule))?
        };
        add_sets(&mut doc, sets);
        doc["metadata"]["name"] = format!("{}-{suffix}", pipeline.name).into();
        let spec = if argo_kind {
            &mut doc["spec"]["workflowSpec"]
        } else {
            &mut doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        };
        spec["serviceAccountName"] = ACCOUNT.into();
        if suffix == "plan" {
            if argo_kind {
                argo_apply(&mut doc, pipeline, s.apply)
            } else {
                job_apply(&mut doc, pipeline, target, s.apply)
            }
        }
        docs.push(doc);
    }
    Ok(docs)
}

/// Appends `--set` overrides to every AppLearner container's arguments.
fn add_sets(doc: &mut Value, sets: &[String]) {
    match doc {
        Value::Object(map) => {
            if map.get("command") == Some(&json!(["applearner"])) && map.get("args").is_some_and(|a| a[0] == "run") {
                let args = map.get_mut("args").and_then(Value::as_array_mut).expect("checked");
                args.extend(sets.iter().flat_map(|s| [json!("--set"), json!(s)]));
            }
            map.values_mut().for_each(|v| add_sets(v, sets));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| add_sets(v, sets)),
        _ => {}
    }
}

/// kubectl's flags for applying the plan: server-side, as AppLearner, a dry run unless `apply`.
fn apply_flags(apply: bool) -> Vec<&'static str> {
    let mut flags = vec!["--server-side", "--field-manager=applearner", "--force-conflicts"];
    if !apply {
        flags.push("--dry-run=server");
    }
    flags
}

/// Argo: after the pipeline, a task prints the run's patches and a resource task applies them.
fn argo_apply(doc: &mut Value, pipeline: &Pipeline, apply: bool) {
    let spec = &mut doc["spec"]["workflowSpec"];
    let last = pipeline.stages.last().map_or(String::new(), |s| s.name.clone());
    let image = spec["templates"][1]["container"]["image"].clone();
    let store = pipeline.store.clone();
    let templates = spec["templates"].as_array_mut().expect("argo() writes templates");
    templates.push(json!({
        "name": "patches",
        "container": {"image": image, "command": ["applearner"],
            "args": ["plan", "{{workflow.name}}", "--store", store, "-o", "patches"]},
    }));
    templates.push(json!({
        "name": "apply",
        "inputs": {"parameters": [{"name": "patches"}]},
        "resource": {"action": "apply", "flags": apply_flags(apply), "manifest": "{{inputs.parameters.patches}}"},
    }));
    let tasks = templates[0]["dag"]["tasks"].as_array_mut().expect("argo() writes a dag");
    tasks.push(json!({"name": "patches", "template": "patches", "dependencies": [last]}));
    tasks.push(json!({"name": "apply", "template": "apply", "dependencies": ["patches"],
        "arguments": {"parameters": [{"name": "patches", "value": "{{tasks.patches.outputs.result}}"}]}}));
}

/// A CronJob: the pipeline and the printing of its patches run first (init containers), then
/// kubectl applies them from a shared folder.
fn job_apply(doc: &mut Value, pipeline: &Pipeline, target: &Target, apply: bool) {
    let pod = &mut doc["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let mut run = pod["containers"][0].take();
    run["name"] = "pipeline".into();
    let mut print = json!({"name": "patches", "image": target.image, "command": ["applearner"],
        "args": ["plan", "$(JOB_NAME)", "--store", pipeline.store, "-o", "patches", "--to", "/plan/patches.yaml"],
        "env": run["env"].clone(), "volumeMounts": [{"name": "plan", "mountPath": "/plan"}]});
    if let Some(secret) = &target.secret {
        print["envFrom"] = json!([{"secretRef": {"name": secret}}]);
    }
    pod["initContainers"] = json!([run, print]);
    let mut args = vec!["apply", "-f", "/plan/patches.yaml"];
    args.extend(apply_flags(apply));
    pod["containers"] = json!([{"name": "apply", "image": KUBECTL_IMAGE, "args": args,
        "volumeMounts": [{"name": "plan", "mountPath": "/plan", "readOnly": true}]}]);
    pod["volumes"].as_array_mut().expect("kubernetes() writes volumes").push(json!({"name": "plan", "emptyDir": {}}));
}

const KUBECTL_IMAGE: &str = "registry.k8s.io/kubectl:v1.33.0";

/// The ServiceAccount the schedules run as, and what it may do: read pods, their owners and
/// HPAs (and namespaces, which OpenShift's thanos-querier checks), patch the owners' pod
/// templates and HPAs, resize running pods in place (`pods/resize`, Kubernetes ≥ 1.33), and
/// report Argo task results.
fn rbac(target: &Target) -> Vec<Value> {
    let meta = json!({"name": ACCOUNT, "labels": {"app.kubernetes.io/name": "applearner"}});
    let namespace = target.namespace.clone().unwrap_or_else(|| "default".into());
    let mut account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta.clone()});
    account["metadata"]["namespace"] = namespace.clone().into();
    let read = json!(["get", "list", "watch"]);
    let write = json!(["get", "list", "watch", "patch"]);
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta.clone(),
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": write},
            {"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch", "update"]},
            {"apiGroups": [""], "resources": ["namespaces", "resourcequotas"], "verbs": read},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"], "verbs": write},
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": write},
            {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": write},
            {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
        ],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
    });
    vec![account, role, binding]
}
