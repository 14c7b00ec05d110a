//! What kube-state-metrics says of each workload and namespace, beside its usage:
//! - the object that owns its pods: `kube_pod_owner` (a pod's ReplicaSet, StatefulSet,
//!   DaemonSet, Job, or `<none>` for a bare pod), `kube_replicaset_owner` (a ReplicaSet's
//!   Deployment) and `kube_job_owner` (a Job's CronJob);
//! - the HorizontalPodAutoscaler scaling that owner (`kube_horizontalpodautoscaler_info`'s
//!   target ref) with its utilization targets and replicas;
//! - each namespace's ResourceQuotas (`kube_resourcequota`).
//!
//! A workload whose pods name no owner or several, an HPA or owner series that matches no
//! usage, and a quota of a namespace without workloads are counted, never guessed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use applearner_contracts::tables::{quotas as qt, workloads as wt};
use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::identity::{Identity, SeriesLabels};
use crate::resample::Scope;
use applearner_contracts::summaries::CleanSummary;

/// The roles ingest gives kube-state-metrics' object series.
pub const ROLES: [&str; 8] = [
    "pod_owner",
    "replicaset_owner",
    "job_owner",
    "hpa_info",
    "hpa_target",
    "hpa_replicas",
    "hpa_desired_replicas",
    "quota",
];

/// Roles whose latest value is read (the others are links: their labels say it all).
pub fn valued(role: &str) -> bool {
    matches!(role, "hpa_target" | "hpa_replicas" | "hpa_desired_replicas" | "quota")
}

/// A workload's owner: its kind (`Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job`,
/// `ReplicaSet`, `Pod`) and name.
pub type Owner = (String, String);

/// The HPA scaling a workload: its name, its utilization targets in % (CPU, memory), whether
/// it also scales on other metrics, and its latest current and desired replicas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hpa {
    pub name: String,
    pub targets: [Option<f64>; 2],
    pub other_metrics: bool,
    pub replicas: Option<f64>,
    pub desired: Option<f64>,
}

/// What is known of one usage key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    pub owner: Option<Owner>,
    pub pods: usize,
    pub hpa: Option<Hpa>,
}

/// One quota line: (namespace, quota, resource, type) → latest value.
pub type Quotas = BTreeMap<(String, String, String, String), f64>;

/// `(namespace, name)` → the owners its series name.
type Links = BTreeMap<(String, String), BTreeSet<Owner>>;

fn label<'s>(s: &'s SeriesLabels, name: &str) -> Option<&'s String> {
    s.labels.get(name)
}

/// The series of one owner role as links from `(namespace, <child label>)`.
fn links(series: &[SeriesLabels], role: &str, child: &str) -> Links {
    let mut out = Links::new();
    for s in series.iter().filter(|s| s.role == role) {
        if let (Some(ns), Some(name), Some(kind), Some(owner)) =
            (label(s, "namespace"), label(s, child), label(s, "owner_kind"), label(s, "owner_name"))
        {
            out.entry((ns.clone(), name.clone())).or_default().insert((kind.clone(), owner.clone()));
        }
    }
    out
}

/// The owner a pod's controller chain ends at: a ReplicaSet's Deployment, a Job's CronJob,
/// the pod itself where it has none. `None` where kube-state-metrics names none or several.
fn owner_of(ns: &str, pod: &str, [pods, sets, jobs]: &[Links; 3]) -> Option<Owner> {
    let one = |links: &Links, name: &str| -> Option<Owner> {
        let owners = links.get(&(ns.to_string(), name.to_string()))?;
        if owners.len() == 1 { owners.first().cloned() } else { None }
    };
    let (kind, name) = one(pods, pod)?;
    let parent = match kind.as_str() {
        "<none>" => return Some(("Pod".into(), pod.into())),
        "ReplicaSet" => one(sets, &name),
        "Job" => one(jobs, &name),
        _ => None,
    };
    // A ReplicaSet without a Deployment (a Job without a CronJob) is its own owner.
    Some(parent.filter(|(k, _)| k != "<none>").unwrap_or((kind, name)))
}

/// Per usage key of `scope` (containers, not nodes): its owner where its pods agree on one,
/// its pods, and the HPA scaling that owner. `latest` holds each valued series' latest value.
/// Everything is resolved over all keys, then kept for the scope's; a shard counts the
/// series and HPAs whose pod or HPA name falls in it, so that the shards add up.
pub fn workloads(
    series: &[SeriesLabels],
    identities: &[Identity],
    usage: &[SeriesLabels],
    latest: &HashMap<u64, f64>,
    scope: Scope<'_>,
    counts: &mut CleanSummary,
) -> BTreeMap<String, Workload> {
    let mine = |name: &str| scope.holds(name);
    let links = [
        links(series, "pod_owner", "pod"),
        links(series, "replicaset_owner", "replicaset"),
        links(series, "job_owner", "job_name"),
    ];
    let mut members: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for (i, s) in identities.iter().zip(usage) {
        if let (Some(ns), Some(pod)) = (label(s, "namespace"), label(s, "pod")) {
            members.entry(i.key.as_str()).or_default().insert((ns.as_str(), pod.as_str()));
        }
    }
    let used: BTreeSet<(&str, &str)> = members.values().flatten().copied().collect();
    for ((ns, pod), owners) in links[0].iter().filter(|((_, pod), _)| mine(pod)) {
        counts.owner_series += owners.len() as u64;
        if !used.contains(&(ns.as_str(), pod.as_str())) {
            counts.owner_series_without_usage += owners.len() as u64;
        }
    }
    let mut all: BTreeMap<String, Workload> = BTreeMap::new();
    for (key, pods) in members {
        let owners: BTreeSet<Option<Owner>> = pods.iter().map(|(ns, pod)| owner_of(ns, pod, &links)).collect();
        let owner = if owners.len() == 1 { owners.into_iter().next().flatten() } else { None };
        all.insert(key.to_string(), Workload { owner, pods: pods.len(), hpa: None });
    }
    attach_hpas(series, latest, &mut all, &mine, counts);
    all.retain(|key, _| mine(key));
    counts.workloads_without_owner += all.values().filter(|w| w.owner.is_none()).count() as u64;
    all
}

/// Each HPA attached to the workloads whose owner it scales (namespace, kind and name).
fn attach_hpas(
    series: &[SeriesLabels],
    latest: &HashMap<u64, f64>,
    workloads: &mut BTreeMap<String, Workload>,
    mine: &dyn Fn(&str) -> bool,
    counts: &mut CleanSummary,
) {
    let mut hpas: BTreeMap<(String, String), (Option<Owner>, Hpa)> = BTreeMap::new();
    for s in series.iter().filter(|s| s.role.starts_with("hpa_")) {
        let (Some(ns), Some(name)) = (label(s, "namespace"), label(s, "horizontalpodautoscaler")) else { continue };
        let (target, hpa) = hpas.entry((ns.clone(), name.clone())).or_default();
        hpa.name = name.clone();
        let value = latest.get(&s.series_id).copied();
        match s.role.as_str() {
            "hpa_info" => {
                *target = label(s, "scaletargetref_kind").cloned().zip(label(s, "scaletargetref_name").cloned());
            }
            "hpa_replicas" => hpa.replicas = value,
            "hpa_desired_replicas" => hpa.desired = value,
            _ => {
                let utilization = label(s, "metric_target_type").is_some_and(|t| t == "utilization");
                match label(s, "metric_name").map(String::as_str) {
                    Some("cpu") if utilization => hpa.targets[0] = value,
                    Some("memory") if utilization => hpa.targets[1] = value,
                    _ => hpa.other_metrics = true,
                }
            }
        }
    }
    for ((ns, _), (target, hpa)) in hpas {
        let scales = |key: &str, w: &Workload| {
            key.split('/').next() == Some(ns.as_str()) && target.is_some() && w.owner == target
        };
        let scaled: Vec<String> = workloads.iter().filter(|(k, w)| scales(k, w)).map(|(k, _)| k.clone()).collect();
        if mine(&hpa.name) {
            if scaled.is_empty() { counts.hpas_without_usage += 1 } else { counts.hpas += 1 }
        }
        for key in scaled {
            workloads.get_mut(&key).expect("listed").hpa = Some(hpa.clone());
        }
    }
}

/// The quota lines of the namespaces of `scope` (a shard holds the namespaces whose name
/// falls in it); those of namespaces without usage keys (of any shard) are counted.
pub fn quotas(
    series: &[SeriesLabels],
    latest: &HashMap<u64, f64>,
    identities: &[Identity],
    scope: Scope<'_>,
    counts: &mut CleanSummary,
) -> Quotas {
    let namespaces: BTreeSet<&str> = identities.iter().filter_map(|i| i.key.split('/').next()).collect();
    let mut out = Quotas::new();
    for s in series.iter().filter(|s| s.role == "quota") {
        let get = |name: &str| label(s, name).cloned().unwrap_or_default();
        let ns = get("namespace");
        if let Some(v) = latest.get(&s.series_id)
            && scope.holds(&ns)
        {
            out.insert((ns, get("resourcequota"), get("resource"), get("type")), *v);
        }
    }
    let without: BTreeSet<&str> = out.keys().map(|k| k.0.as_str()).filter(|ns| !namespaces.contains(ns)).collect();
    counts.quota_namespaces_without_workloads += without.len() as u64;
    out
}

pub fn workloads_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let number = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new(wt::KEY, DataType::Utf8, false),
        text(wt::OWNER_KIND),
        text(wt::OWNER_NAME),
        Field::new(wt::PODS, DataType::UInt32, false),
        text(wt::HPA),
        number(wt::HPA_CPU_TARGET_PCT),
        number(wt::HPA_MEMORY_TARGET_PCT),
        Field::new(wt::HPA_OTHER_METRICS, DataType::Boolean, true),
        number(wt::HPA_REPLICAS),
        number(wt::HPA_DESIRED_REPLICAS),
    ]))
}

/// The `workloads` table: one row per key, in key order.
pub fn workloads_table(workloads: &BTreeMap<String, Workload>) -> Result<RecordBatch, BoxError> {
    let w: Vec<&Workload> = workloads.values().collect();
    let text = |f: &dyn Fn(&Workload) -> Option<String>| -> ArrayRef {
        Arc::new(w.iter().map(|w| f(w)).collect::<StringArray>())
    };
    let number = |f: &dyn Fn(&Hpa) -> Option<f64>| -> ArrayRef {
        Arc::new(w.iter().map(|w| w.hpa.as_ref().and_then(f)).collect::<Float64Array>())
    };
    let other: ArrayRef = Arc::new(
        w.iter()
            .map(|w| w.hpa.as_ref().map(|h| h.other_metrics))
            .collect::<applearner_pipeline::arrow::array::BooleanArray>(),
    );
    Ok(RecordBatch::try_new(
        workloads_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(workloads.keys())),
            text(&|w| w.owner.as_ref().map(|o| o.0.clone())),
            text(&|w| w.owner.as_ref().map(|o| o.1.clone())),
            Arc::new(UInt32Array::from_iter_values(w.iter().map(|w| w.pods as u32))),
            text(&|w| w.hpa.as_ref().map(|h| h.name.clone())),
            number(&|h| h.targets[0]),
            number(&|h| h.targets[1]),
            other,
            number(&|h| h.replicas),
            number(&|h| h.desired),
        ],
    )?)
}

pub fn quotas_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text(qt::NAMESPACE),
        text(qt::QUOTA),
        text(qt::RESOURCE),
        text(qt::TYPE),
        Field::new(qt::VALUE, DataType::Float64, false),
    ]))
}

/// The `quotas` table: one row per namespace, quota, resource and type, in that order.
pub fn quotas_table(quotas: &Quotas) -> Result<RecordBatch, BoxError> {
    let part = |f: fn(&(String, String, String, String)) -> &String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(quotas.keys().map(f)))
    };
    Ok(RecordBatch::try_new(
        quotas_schema(),
        vec![
            part(|k| &k.0),
            part(|k| &k.1),
            part(|k| &k.2),
            part(|k| &k.3),
            Arc::new(Float64Array::from_iter_values(quotas.values().copied())),
        ],
    )?)
}
