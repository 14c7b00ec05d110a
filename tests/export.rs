//! `applearner export`: the pipeline as an Argo Workflow and as Kubernetes Jobs, validated
//! against Argo's published JSON schema and the Kubernetes schemas (kubernetes-validate).

use std::path::Path;
use std::process::Command;

use crate::support::applearner;

/// The quickstart with pod resources on its training stage (a GPU node pool).
fn config_with_resources(dir: &Path) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/quickstart.yaml")).unwrap();
    let text = text.replace(
        "    uses: train.fit\n",
        "    uses: train.fit\n    resources: {cpu: \"4\", memory: 8Gi, gpu: 1, node_selector: {pool: gpu}}\n",
    );
    let path = dir.join("quickstart.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn export(args: &[&str]) -> (String, String, Option<i32>) {
    let out = applearner(args);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

/// Validates a YAML document against the definition of its kind in Argo's schema; returns it as JSON.
fn argo_valid(yaml: &str, dir: &Path) -> serde_json::Value {
    let file = dir.join("argo.yaml");
    std::fs::write(&file, yaml).unwrap();
    let script = r##"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
doc = yaml.safe_load(open(sys.argv[2]))
root = {"$schema": schema["$schema"], "definitions": schema["definitions"],
        "$ref": "#/definitions/io.argoproj.workflow.v1alpha1." + doc["kind"]}
errors = sorted(jsonschema.validators.validator_for(root)(root).iter_errors(doc), key=str)
if errors:
    sys.exit("\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors))
print(json.dumps(doc))
"##;
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemas/argo-workflows.schema.json");
    let out = Command::new("python3").args(["-c", script, schema, file.to_str().unwrap()]).output().unwrap();
    assert!(
        out.status.success(),
        "not a valid Argo {}: {} (python3 needs pyyaml and jsonschema, as .ci/run installs)",
        yaml.lines().find(|l| l.starts_with("kind:")).unwrap_or(""),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "full tier: needs jsonschema; .ci/run installs it and runs it"]
fn argo_workflows_follow_the_dag_and_validate_against_argos_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_resources(dir.path());
    let store = "store=s3://models/applearner";
    let (yaml, stderr, code) = export(&["export", "argo", &config, "--set", store, "--secret", "applearner-s3"]);
    assert_eq!(code, Some(0), "{stderr}");
    let wf = argo_valid(&yaml, dir.path());
    assert_eq!(wf["kind"], "Workflow");
    assert_eq!(wf["metadata"]["generateName"], "quickstart-");
    let templates = wf["spec"]["templates"].as_array().unwrap();
    let tasks = templates[0]["dag"]["tasks"].as_array().unwrap();
    let deps = |name: &str| -> Vec<String> {
        let t = tasks.iter().find(|t| t["name"] == name).unwrap();
        t["dependencies"]
            .as_array()
            .map(|d| d.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let names: Vec<&str> = tasks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ingest", "clean", "features", "train", "evaluate", "plan", "report"]);
    assert!(deps("ingest").is_empty());
    assert_eq!(deps("train"), ["features"]);
    assert_eq!(deps("evaluate"), ["clean", "features", "train"]);
    assert_eq!(deps("report"), ["clean", "train", "evaluate", "plan"]);

    let train = templates.iter().find(|t| t["name"] == "train").unwrap();
    let c = &train["container"];
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[..6], ["run", "/config/quickstart.yaml", "--run-id", "{{workflow.name}}", "--stage", "train"]);
    assert!(args.windows(2).any(|w| w == ["--set", store]), "{args:?}");
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(c["resources"]["requests"]["memory"], "8Gi");
    assert_eq!(train["nodeSelector"]["pool"], "gpu");
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "applearner-s3");
    assert_eq!(wf["spec"]["volumes"][0]["configMap"]["name"], "quickstart-config");
    // Stages without resources ask for nothing in particular.
    let ingest = templates.iter().find(|t| t["name"] == "ingest").unwrap();
    assert!(ingest["container"].get("resources").is_none());

    // A template and a cron workflow are valid too.
    let (yaml, stderr, code) = export(&["export", "argo", &config, "--set", store, "--template"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(argo_valid(&yaml, dir.path())["kind"], "WorkflowTemplate");
    let (yaml, stderr, code) = export(&["export", "argo", &config, "--set", store, "--schedule", "0 3 * * *"]);
    assert_eq!(code, Some(0), "{stderr}");
    let cron = argo_valid(&yaml, dir.path());
    assert_eq!(cron["spec"]["schedules"][0], "0 3 * * *");
    assert_eq!(cron["spec"]["workflowSpec"]["templates"].as_array().unwrap().len(), 8);

    // Pods cannot share a local folder.
    let (_, stderr, code) = export(&["export", "argo", &config]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("is a local folder") && stderr.contains("--set store=s3://"), "{stderr}");
}

#[test]
#[ignore = "full tier: needs jsonschema; .ci/run installs it and runs it"]
fn a_sharded_stage_fans_out_into_parallel_argo_tasks_and_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_resources(dir.path());
    let (yaml, stderr, code) =
        export(&["export", "argo", &config, "--set", "store=s3://models/applearner", "--set", "ingest.shards=4"]);
    assert_eq!(code, Some(0), "{stderr}");
    let wf = argo_valid(&yaml, dir.path());
    let templates = wf["spec"]["templates"].as_array().unwrap();
    let tasks = templates[0]["dag"]["tasks"].as_array().unwrap();
    let task = |name: &str| tasks.iter().find(|t| t["name"] == name).unwrap();
    assert_eq!(task("ingest-shards")["withSequence"]["count"], "4");
    assert_eq!(task("ingest-shards")["arguments"]["parameters"][0]["value"], "{{item}}");
    assert_eq!(task("ingest")["dependencies"], serde_json::json!(["ingest-shards"]));
    assert_eq!(task("clean")["dependencies"], serde_json::json!(["ingest"]));
    let args = |name: &str| -> Vec<String> {
        let t = templates.iter().find(|t| t["name"] == name).unwrap();
        t["container"]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
    };
    let fan = args("ingest-shards");
    assert!(fan.windows(2).any(|w| w == ["--shard", "{{inputs.parameters.shard}}/4"]), "{fan:?}");
    assert!(fan.windows(2).any(|w| w == ["--stage", "ingest"]), "{fan:?}");
    assert!(!args("ingest").contains(&"--shard".to_string()), "the merge task runs the stage plainly");

    // Clean and features fan out by workload the same way, each after the merge before it,
    // and validate.
    let (yaml, stderr, code) = export(&[
        "export",
        "argo",
        &config,
        "--set",
        "store=s3://models/applearner",
        "--set",
        "ingest.shards=4",
        "--set",
        "clean.shards=8",
        "--set",
        "features.shards=3",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let wf = argo_valid(&yaml, dir.path());
    let tasks = wf["spec"]["templates"][0]["dag"]["tasks"].as_array().unwrap().clone();
    let task = |name: &str| tasks.iter().find(|t| t["name"] == name).unwrap().clone();
    assert_eq!(task("clean-shards")["withSequence"]["count"], "8");
    assert_eq!(task("clean-shards")["dependencies"], serde_json::json!(["ingest"]));
    assert_eq!(task("clean")["dependencies"], serde_json::json!(["clean-shards"]));
    assert_eq!(task("features-shards")["withSequence"]["count"], "3");
    assert_eq!(task("features-shards")["dependencies"], serde_json::json!(["clean"]));
    assert_eq!(task("features")["dependencies"], serde_json::json!(["features-shards"]));

    // Only stages that work series by series shard.
    let (_, stderr, code) =
        export(&["export", "argo", &config, "--set", "store=s3://models/applearner", "--set", "train.shards=4"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("stage `train` (train.fit) cannot be sharded"), "{stderr}");
}

#[test]
#[ignore = "full tier: needs kubernetes-validate; .ci/run installs it and runs it"]
fn kubernetes_jobs_validate_against_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_resources(dir.path());
    for (kind, extra) in [("Job", None), ("CronJob", Some("30 2 * * *"))] {
        let mut args =
            vec!["export", "k8s", config.as_str(), "--set", "store=s3://models/applearner", "--namespace", "ml"];
        if let Some(s) = extra {
            args.extend(["--schedule", s]);
        }
        let (yaml, stderr, code) = export(&args);
        assert_eq!(code, Some(0), "{stderr}");
        let file = dir.path().join(format!("{kind}.yaml"));
        std::fs::write(&file, &yaml).unwrap();
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", file.to_str().unwrap()])
            .output()
            .expect("kubernetes-validate checks the manifests: pip install kubernetes-validate (.ci/run does)");
        assert!(
            out.status.success(),
            "{kind}: {}{}\n{yaml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(yaml.contains(&format!("kind: {kind}")), "{yaml}");
        // One pod runs every stage, sized for the largest: training's GPU and memory.
        assert!(yaml.contains("nvidia.com/gpu") && yaml.contains("8Gi") && yaml.contains("namespace: ml"), "{yaml}");
        assert!(yaml.contains("$(JOB_NAME)"), "{yaml}");
    }
}

/// Docker cannot run here; what the Dockerfile relies on is checked instead: what it copies
/// exists, its Rust is new enough for the workspace, the features it documents exist, and
/// `--locked` holds (Cargo.lock matches Cargo.toml).
#[test]
fn the_dockerfile_builds_what_the_repository_holds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        let source = line.split_whitespace().nth(1).unwrap();
        assert!(root.join(source).exists(), "{line}: `{source}` is not in the repository");
    }
    let rust = dockerfile.lines().find_map(|l| l.strip_prefix("FROM rust:")).unwrap();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    let image_rust = version(rust.split('-').next().unwrap());
    let needed = cargo_toml.lines().find_map(|l| l.strip_prefix("rust-version = ")).unwrap().trim_matches('"');
    assert!(image_rust >= version(needed), "the image's Rust {image_rust:?} is older than rust-version {needed}");
    assert!(dockerfile.contains("cargo build --release --locked --features \"${FEATURES}\" --bin applearner"));
    assert!(dockerfile.contains("--build-arg FEATURES=cuda") && cargo_toml.contains("\ncuda = ["), "{cargo_toml}");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "--locked would fail: {}", String::from_utf8_lossy(&out.stderr));
}

/// `--schedules`: RBAC, a weekly training and an hourly plan schedule, as Argo
/// CronWorkflows (Argo's schema, and the RBAC through kubernetes-validate) and as CronJobs
/// (kubernetes-validate); the plan schedule reads the published model and ends with a
/// server-side apply that is a dry run until `--apply`.
#[test]
#[ignore = "full tier: needs jsonschema and kubernetes-validate; .ci/run installs them and runs it"]
fn schedules_and_their_rbac_validate_against_argo_and_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_resources(dir.path());
    let model = "s3://models/web-model";
    for (to, apply) in [("argo", false), ("k8s", false), ("argo", true), ("k8s", true)] {
        let mut args = vec!["export", to, &config, "--set", "store=s3://models/applearner", "--schedules", model];
        if apply {
            args.push("--apply");
        }
        let (yaml, stderr, code) = export(&args);
        assert_eq!(code, Some(0), "{stderr}");
        let docs: Vec<&str> = yaml.split("---\n").filter(|d| !d.trim().is_empty()).collect();
        assert_eq!(docs.len(), 5, "account, role, binding, two schedules:\n{yaml}");
        let (rbac, schedules) = docs.split_at(3);
        let mut check = rbac.to_vec();
        if to == "argo" {
            for d in schedules {
                argo_valid(d, dir.path());
            }
        } else {
            check.extend(schedules);
        }
        let file = dir.path().join("k8s.yaml");
        std::fs::write(&file, check.iter().map(|d| format!("---\n{d}")).collect::<String>()).unwrap();
        let out =
            Command::new("kubernetes-validate").args(["--strict", "--quiet", file.to_str().unwrap()]).output().unwrap();
        assert!(
            out.status.success(),
            "{}{}\n{yaml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(rbac[1].contains("pods/resize"), "{}", rbac[1]);
        let (train, plan) = (schedules[0], schedules[1]);
        assert!(train.contains("0 3 * * 0") && train.contains(&format!("train.publish={model}")), "{train}");
        assert!(train.contains("train.use_model=null"), "{train}");
        assert!(plan.contains("0 * * * *") && plan.contains(&format!("train.use_model={model}")), "{plan}");
        assert!(plan.contains("--server-side") && plan.contains("serviceAccountName: applearner"), "{plan}");
        assert_eq!(plan.contains("--dry-run=server"), !apply, "{plan}");
    }
}
