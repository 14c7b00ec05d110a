//! The generated cluster (data/cluster, GENERATED): plans for real Kubernetes workloads. One
//! pod's size for replicated Deployments, patches to each owner with its kind, the HPA's scale
//! point kept, namespace totals beside their quota, and the bad kube-state-metrics input
//! counted. The full-tier test backfills the same cluster into Debian's Prometheus and pulls
//! it with the default live queries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use applearner_pipeline::columns::{floats, strings};
use applearner_pipeline::context::read_parquet;

use crate::support::applearner;

/// configs/cluster.yaml run once for every test here: its run folder.
fn run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, run) = RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("store={}", dir.path().display());
        let out = applearner(&["-q", "run", "configs/cluster.yaml", "--run-id", "cluster", "--set", &store]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let run = dir.path().join("cluster");
        (dir, run)
    });
    run
}

/// A table of the run as columns of strings or floats, by name.
fn table(path: &str) -> Vec<applearner_pipeline::arrow::array::RecordBatch> {
    let path = run().join(path);
    read_parquet(path.to_str().unwrap(), std::fs::read(&path).unwrap().into()).unwrap()
}

fn summary(stage: &str) -> serde_json::Value {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run().join(stage).join("_stage.json")).unwrap()).unwrap();
    record["summary"].clone()
}

#[test]
fn patches_go_to_each_workloads_owner_with_its_kind() {
    let patches = std::fs::read_to_string(run().join("plan/patches.yaml")).unwrap();
    let targets: Vec<(String, String)> = patches
        .split("---\n")
        .skip(1)
        .map(|doc| {
            let field = |name: &str| doc.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().to_string();
            (field("kind: "), field("  name: "))
        })
        .collect();
    for expected in [
        ("Deployment", "web"),
        ("Deployment", "cart"),
        ("Deployment", "api"),
        ("StatefulSet", "db"),
        ("DaemonSet", "agent"),
        ("CronJob", "report"),
        ("Pod", "debug-shell"),
    ] {
        assert!(targets.contains(&(expected.0.into(), expected.1.into())), "{expected:?} in {targets:?}");
    }
    // The CronJob's containers are under its job template; no workload is assumed a Deployment.
    assert!(patches.contains("kind: CronJob\nmetadata:\n  name: report\n  namespace: shop\nspec:\n  jobTemplate:\n"));
    assert!(!patches.contains("Owner unknown"), "{patches}");
    let vpa = std::fs::read_to_string(run().join("plan/vpa.yaml")).unwrap();
    assert!(vpa.contains("    kind: StatefulSet\n    name: db\n") && !vpa.contains("kind: Pod"), "{vpa}");
}

/// Per workload (and `""`: all of them) at the configured budget, the model's and the
/// matched oracle's replay of `line`.
fn replays(line: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for b in table("plan/plan_backtest.parquet") {
        let t = "plan_backtest";
        let (lines, methods, variants, keys) = (
            strings(&b, t, "line").unwrap(),
            strings(&b, t, "method").unwrap(),
            strings(&b, t, "variant").unwrap(),
            strings(&b, t, "key").unwrap(),
        );
        let budgets = applearner_pipeline::columns::column(
            &b,
            t,
            "changes_per_day_allowed",
            &applearner_pipeline::arrow::datatypes::DataType::UInt32,
        )
        .unwrap();
        let budgets = budgets.as_any().downcast_ref::<applearner_pipeline::arrow::array::UInt32Array>().unwrap();
        let (provisioned, risk) = (floats(&b, t, "provisioned_hours").unwrap(), floats(&b, t, "risk_pct").unwrap());
        for i in 0..b.num_rows() {
            if lines[i] == line && budgets.value(i) == 24 && ["calibrated", "matched"].contains(&variants[i].as_str()) {
                let e = out.entry(keys[i].clone()).or_default();
                e.insert(format!("{}_provisioned", methods[i]), provisioned[i]);
                e.insert(format!("{}_risk", methods[i]), risk[i]);
            }
        }
    }
    out
}

/// One pod's request: never the sum of the replicas. The shop's replicated Deployments are
/// planned per pod, each step's busiest replica, and what the plan reserves over the test
/// part is set beside what a per-pod oracle reserves: perfect foresight on the same series
/// and budget, at the risk the plan ran at on that workload.
#[test]
fn replicated_deployments_are_sized_as_one_pod_near_a_per_pod_oracle() {
    let recs = table("plan/recommendations.parquet");
    let t = "recommendations";
    let mut planned = BTreeMap::new();
    for b in &recs {
        let (keys, cpu) = (strings(b, t, "key").unwrap(), floats(b, t, "planned_cpu_request_cores").unwrap());
        let replicas = applearner_pipeline::columns::column(
            b,
            t,
            "replicas",
            &applearner_pipeline::arrow::datatypes::DataType::UInt32,
        )
        .unwrap();
        let replicas = replicas.as_any().downcast_ref::<applearner_pipeline::arrow::array::UInt32Array>().unwrap();
        for i in 0..b.num_rows() {
            planned.insert(keys[i].clone(), (cpu[i], replicas.value(i)));
        }
    }
    // web's three pods share about 0.8 cores at the daily peak: one pod needs about a third.
    let (web, replicas) = planned["shop/web/app"];
    assert_eq!(replicas, 3);
    assert!(web < 0.45, "one web pod planned at {web} cores: the replicas were summed");
    // Against the per-pod oracle at the same risk: the fleet within 10 %; a workload whose
    // pods' noise no forecast can know (web's 8 %, db's 10 % a step) up to 15 % (the oracle
    // sets each hour at the highest step it will see; a plan must cover the noise it cannot).
    let replays = replays("cpu_request");
    for (key, bound) in [("", 1.10), ("shop/web/app", 1.15), ("shop/cart/app", 1.15), ("shop/db/postgres", 1.15)] {
        let r = &replays[key];
        let ratio = r["model_provisioned"] / r["oracle_provisioned"];
        assert_eq!(r["model_risk"], r["oracle_risk"], "{key}: the oracle runs at the plan's risk");
        assert!(ratio < bound, "{key:?}: the per-pod request reserves {ratio:.3}× the per-pod oracle");
    }
}

/// The HPA-scaled Deployment keeps its scale point: the target moves with the request so that
/// the usage per pod at which it scales out stays where it is, and the replay over the data
/// shows the same steps above it before and after.
#[test]
fn the_hpa_scale_point_is_kept_and_replayed() {
    let t = "hpas";
    let b = &table("plan/hpas.parquet")[0];
    let (keys, actions) = (strings(b, t, "key").unwrap(), strings(b, t, "action").unwrap());
    assert_eq!(keys, ["shop/api/app"]);
    let get = |name: &str| floats(b, t, name).unwrap()[0];
    assert_eq!(get("target_pct"), 60.0);
    assert_eq!(get("request"), 0.5);
    let (before, after) = (get("scale_point"), get("planned_scale_point"));
    assert!((before - 0.3).abs() < 1e-9, "{before}");
    if actions[0] == "target changed with the request" {
        assert_ne!(get("planned_target_pct"), 60.0);
        assert!((after - before).abs() / before < 0.02, "scale point {before} → {after}");
        let patches = std::fs::read_to_string(run().join("plan/patches.yaml")).unwrap();
        let target = format!("averageUtilization: {}", get("planned_target_pct"));
        assert!(
            patches.contains("kind: HorizontalPodAutoscaler\nmetadata:\n  name: api\n") && patches.contains(&target)
        );
    } else {
        assert!(actions[0].starts_with("request kept"), "{}", actions[0]);
        assert_eq!((get("planned_request"), after), (0.5, before));
    }
    let above = |name: &str| {
        let c =
            applearner_pipeline::columns::column(b, t, name, &applearner_pipeline::arrow::datatypes::DataType::UInt32)
                .unwrap();
        c.as_any().downcast_ref::<applearner_pipeline::arrow::array::UInt32Array>().unwrap().value(0)
    };
    let (now, planned) = (above("above_target_steps"), above("planned_above_target_steps"));
    // The plan ahead carries the budget and the factor on from the test part: the scale point
    // is kept within 10 % (it was 2 % when the plan ahead started afresh).
    assert!(now > 0 && now.abs_diff(planned) * 10 <= now, "steps above the scale point: {now} now, {planned} planned");
}

/// Namespace totals (one pod × replicas) beside the quota, and the bad kube-state-metrics
/// input counted and said: an owner series of a pod without usage, an HPA of a workload
/// without pods, a quota of a namespace without workloads.
#[test]
fn namespace_totals_meet_their_quota_and_bad_kube_state_metrics_input_is_counted() {
    let t = "namespaces";
    let b = &table("plan/namespaces.parquet")[0];
    let (ns, resource) = (strings(b, t, "namespace").unwrap(), strings(b, t, "resource").unwrap());
    let (hard, planned) = (floats(b, t, "quota_hard").unwrap(), floats(b, t, "planned").unwrap());
    let row = (0..b.num_rows()).find(|&i| ns[i] == "shop" && resource[i] == "requests.cpu").unwrap();
    assert_eq!(hard[row], 6.0);
    assert!(planned[row] > 0.0 && planned[row] < hard[row], "{}", planned[row]);
    assert!(!ns.contains(&"empty".to_string()));
    let clean = summary("clean");
    assert_eq!(clean["owner_series_without_usage"], 1);
    assert_eq!(clean["hpas_without_usage"], 1);
    assert_eq!(clean["hpas"], 1);
    assert_eq!(clean["quota_namespaces_without_workloads"], 1);
    assert_eq!(clean["workloads_without_owner"], 0);
    let warnings = clean["warnings"].to_string();
    assert!(warnings.contains("1 kube_pod_owner series name pods without usage"), "{warnings}");
    assert!(warnings.contains("1 HPAs scale workloads without usage"), "{warnings}");
    assert!(warnings.contains("1 namespaces have a ResourceQuota but no workload"), "{warnings}");
    assert_eq!(summary("plan")["namespaces_over_quota"], serde_json::json!([]));
}
