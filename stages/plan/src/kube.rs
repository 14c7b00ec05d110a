//! Plans that fit the objects they go to: each workload's owner (from clean.resample's
//! `workloads` table), the HorizontalPodAutoscaler scaling it, and its namespace's quotas.
//!
//! An HPA scaling on CPU or memory utilization scales out when a pod's usage passes target ×
//! request. Changing the request alone moves that point (a lower request scales out
//! sooner), so the plan either changes the target with it, keeping usage × 100 / request at
//! the same usage (as StormForge does), or leaves the request as it is and says why.

use super::*;
use applearner_contracts::tables::{hpas as ht, namespaces as nt, quotas as qt, workloads as wt};
use applearner_pipeline::arrow::array::{Array, AsArray};
use applearner_pipeline::arrow::datatypes::DataType;

/// The HPA scaling a workload: its name, utilization targets in % (CPU, memory), and whether
/// it also scales on other metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hpa {
    pub name: String,
    pub targets: [Option<f64>; 2],
    pub other_metrics: bool,
}

/// What kube-state-metrics says of a key: its owner (kind, name) and HPA.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Known {
    pub owner: Option<(String, String)>,
    pub hpa: Option<Hpa>,
}

pub type Workloads = BTreeMap<String, Known>;

/// clean.resample's `workloads` table.
pub fn read_workloads(batches: &[RecordBatch]) -> Result<Workloads, BoxError> {
    let mut out = Workloads::new();
    for b in batches {
        let text = |name: &str| -> Result<Vec<Option<String>>, BoxError> {
            let c = applearner_pipeline::columns::column(b, wt::NAME, name, &DataType::Utf8)?;
            Ok(c.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect())
        };
        let number = |name: &str| -> Result<Vec<Option<f64>>, BoxError> {
            let c = applearner_pipeline::columns::column(b, wt::NAME, name, &DataType::Float64)?;
            let c = c.as_primitive::<applearner_pipeline::arrow::datatypes::Float64Type>();
            Ok((0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i))).collect())
        };
        let (keys, kinds, names, hpas) = (text(wt::KEY)?, text(wt::OWNER_KIND)?, text(wt::OWNER_NAME)?, text(wt::HPA)?);
        let (cpu, memory) = (number(wt::HPA_CPU_TARGET_PCT)?, number(wt::HPA_MEMORY_TARGET_PCT)?);
        let other = applearner_pipeline::columns::column(b, wt::NAME, wt::HPA_OTHER_METRICS, &DataType::Boolean)?;
        let other = other.as_boolean();
        for i in 0..b.num_rows() {
            let hpa =
                hpas[i].clone().map(|name| Hpa { name, targets: [cpu[i], memory[i]], other_metrics: other.value(i) });
            let known = Known { owner: kinds[i].clone().zip(names[i].clone()), hpa };
            out.insert(keys[i].clone().unwrap_or_default(), known);
        }
    }
    Ok(out)
}

/// How one HPA's target for one resource is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaDecision {
    pub key: String,
    pub hpa: String,
    pub resource: Resource,
    /// The target (%) and request now, and as planned (the request now where it is kept).
    pub target: f64,
    pub planned_target: f64,
    pub request: Option<f64>,
    pub planned_request: Option<f64>,
    /// `target changed with the request` or why the request is kept.
    pub action: String,
    /// Steps of the data whose usage (the busiest pod's) is above the scale point now and as
    /// planned: equal when the scale point is kept.
    pub above_now: usize,
    pub above_planned: usize,
}

impl HpaDecision {
    /// The usage per pod at which the HPA scales out, now and as planned.
    pub fn scale_points(&self) -> [Option<f64>; 2] {
        [self.request.map(|r| r * self.target / 100.0), self.planned_request.map(|r| r * self.planned_target / 100.0)]
    }
}

/// Keeps the scale point of every HPA scaling on CPU or memory utilization, on every stretch
/// of the plan (see [`decide`]): where the target cannot follow the request, the request is
/// left as it is now. Returns the decisions for each workload's first stretch, replayed
/// against its usage.
pub fn keep_scale_points(
    plan: &mut [WorkloadPlan],
    lines: &[&Line],
    allocation: &Allocation,
    workloads: &Workloads,
    seen: &BTreeMap<String, Seen>,
    max_target: f64,
) -> Vec<HpaDecision> {
    let mut out: Vec<HpaDecision> = Vec::new();
    for w in plan.iter_mut() {
        let Some(hpa) = workloads.get(&w.key).and_then(|k| k.hpa.as_ref()) else { continue };
        for (resource, target) in Resource::ALL.into_iter().zip(hpa.targets).filter_map(|(r, t)| Some((r, t?))) {
            let Some(line) = lines.iter().position(|l| l.resource == resource && l.name.ends_with("request")) else {
                continue;
            };
            let now = allocation.get(&w.key).and_then(|s| s.get(lines[line].name)).and_then(|p| p.last()).map(|p| p.1);
            let Some((planned_target, action)) = decide(hpa, target, now, w.values[line], max_target) else { continue };
            if planned_target == target {
                w.values[line] = now;
            }
            w.hpa = Some(hpa.name.clone());
            // The first stretch's decision is the one reported (and patched now).
            if !out.iter().any(|d| d.key == w.key && d.resource == resource) {
                let d = HpaDecision {
                    key: w.key.clone(),
                    hpa: hpa.name.clone(),
                    resource,
                    target,
                    planned_target,
                    request: now,
                    planned_request: w.values[line],
                    action,
                    above_now: 0,
                    above_planned: 0,
                };
                let values = seen.get(&w.key).and_then(|s| s.values.as_ref()).map(|v| v[resource.index()].as_slice());
                out.push(d.replayed(values));
            }
        }
    }
    out
}

/// The planned target and why, for `target` with the request `now` and as `planned`: the
/// target follows the request (`target × now / planned`, a whole %) where that stays within
/// 1–`max_target` %; otherwise, where the request now is unknown, or where the HPA also scales
/// on other metrics, the target stays (and the caller keeps the request). `None` where the
/// plan sets no such request.
fn decide(hpa: &Hpa, target: f64, now: Option<f64>, planned: Option<f64>, max_target: f64) -> Option<(f64, String)> {
    if hpa.other_metrics {
        return Some((target, "request kept: the HPA also scales on other metrics".into()));
    }
    let Some(now) = now else {
        return Some((target, "request left unset: no request now, so no scale point to keep".into()));
    };
    let t = (target * now / planned?).round();
    Some(if (1.0..=max_target).contains(&t) {
        (t, "target changed with the request".into())
    } else {
        (target, format!("request kept: the scale point needs a target of {t} %, above {max_target} %"))
    })
}

impl HpaDecision {
    /// With the steps of `values` (the busiest pod's usage) above the scale point now and as
    /// planned.
    fn replayed(mut self, values: Option<&[f64]>) -> HpaDecision {
        let above = |p: Option<f64>| match (p, values) {
            (Some(p), Some(v)) => v.iter().filter(|v| **v > p).count(),
            _ => 0,
        };
        let [now, planned] = self.scale_points();
        (self.above_now, self.above_planned) = (above(now), above(planned));
        self
    }
}

/// One HPA patch per workload whose targets change, keeping its scale points.
pub(super) fn hpa_patches(now: &[&WorkloadPlan], decisions: &[HpaDecision]) -> String {
    let mut out = String::new();
    for w in now {
        let mine: Vec<&HpaDecision> = decisions.iter().filter(|d| d.key == w.key).collect();
        let Some(name) = &w.hpa else { continue };
        if !mine.iter().any(|d| d.planned_target != d.target) {
            continue;
        }
        let _ = write!(out, "---\n# Keeps the HPA's scale point per pod:");
        for d in &mine {
            let [before, after] = d.scale_points().map(|p| p.map_or("?".to_string(), |p| quantity(d.resource, p)));
            let _ = write!(out, " {} {before} → {after};", d.resource.name());
        }
        let _ = write!(
            out,
            "\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: {name}\n  namespace: {}\nspec:\n  metrics:\n",
            w.namespace
        );
        for d in mine {
            let _ = write!(
                out,
                "    - type: Resource\n      resource:\n        name: {}\n        target:\n          type: Utilization\n          averageUtilization: {}\n",
                d.resource.name(),
                d.planned_target
            );
        }
    }
    out
}

fn quantity(resource: Resource, v: f64) -> String {
    if resource == Resource::Cpu { format_cpu(v) } else { format_memory((v / MIB).round() * MIB) }
}

/// kube_resourcequota's latest values: (namespace, resource, type) → the tightest over the
/// namespace's quotas.
pub type Quotas = BTreeMap<(String, String, String), f64>;

pub fn read_quotas(batches: &[RecordBatch]) -> Result<Quotas, BoxError> {
    let mut out = Quotas::new();
    for b in batches {
        let (ns, resource, kind) = (
            strings(b, qt::NAME, qt::NAMESPACE)?,
            strings(b, qt::NAME, qt::RESOURCE)?,
            strings(b, qt::NAME, qt::TYPE)?,
        );
        let value = floats(b, qt::NAME, qt::VALUE)?;
        for i in 0..b.num_rows() {
            let e = out.entry((ns[i].clone(), resource[i].clone(), kind[i].clone())).or_insert(f64::INFINITY);
            *e = e.min(value[i]);
        }
    }
    Ok(out)
}

/// The quota resources a plan's totals are set beside, by line (as in [`at::LINES`]).
const QUOTA_RESOURCES: [&str; 4] = ["requests.cpu", "limits.cpu", "requests.memory", "limits.memory"];

/// Per namespace with workloads and quota resource (by line): the total now and as planned,
/// one pod's value × replicas over the workloads that have both.
fn totals(recs: &[Recommendation]) -> BTreeMap<(String, usize), [f64; 2]> {
    let mut out: BTreeMap<(String, usize), [f64; 2]> = BTreeMap::new();
    for r in recs.iter().filter(|r| !r.node) {
        let ns = r.key.split('/').next().unwrap_or_default().to_string();
        for line in 0..4 {
            if let (Some(now), Some(planned)) = (r.current[line], r.planned[line]) {
                let n = f64::from(r.replicas);
                let t = out.entry((ns.clone(), line)).or_default();
                (t[0], t[1]) = (t[0] + now * n, t[1] + planned * n);
            }
        }
    }
    out
}

fn quota(quotas: &Quotas, ns: &str, line: usize, kind: &str) -> f64 {
    quotas.get(&(ns.to_string(), QUOTA_RESOURCES[line].to_string(), kind.to_string())).copied().unwrap_or(f64::NAN)
}

/// The namespace totals beside their quotas.
pub(super) fn namespaces_table(recs: &[Recommendation], quotas: &Quotas) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let rows: Vec<((String, usize), [f64; 2])> = totals(recs).into_iter().collect();
    TableBuilder::default()
        .strings(nt::NAMESPACE, rows.iter().map(|((ns, _), _)| ns.clone()))
        .strings(nt::RESOURCE, rows.iter().map(|((_, l), _)| QUOTA_RESOURCES[*l].to_string()))
        .floats(nt::CURRENT, rows.iter().map(|(_, t)| t[0]).collect())
        .floats(nt::PLANNED, rows.iter().map(|(_, t)| t[1]).collect())
        .floats(nt::QUOTA_HARD, rows.iter().map(|((ns, l), _)| quota(quotas, ns, *l, "hard")).collect())
        .floats(nt::QUOTA_USED, rows.iter().map(|((ns, l), _)| quota(quotas, ns, *l, "used")).collect())
        .finish()
}

/// The namespace totals the plan would put above their quota's hard limit.
pub(super) fn over_quota(recs: &[Recommendation], quotas: &Quotas) -> Vec<String> {
    let over = totals(recs).into_iter().filter(|((ns, l), t)| t[1] > quota(quotas, ns, *l, "hard"));
    over.map(|((ns, l), t)| {
        format!("{ns} {}: {} planned, {} hard", QUOTA_RESOURCES[l], t[1], quota(quotas, &ns, l, "hard"))
    })
    .collect()
}

/// The `hpas` table: per workload scaled by an HPA and resource it targets, how its scale
/// point is kept, and the data's steps above it now and as planned.
pub(super) fn hpas_table(decisions: &[HpaDecision]) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let d = decisions;
    let nan = f64::NAN;
    let points = |i: usize| d.iter().map(|d| d.scale_points()[i].unwrap_or(nan)).collect();
    TableBuilder::default()
        .strings(ht::KEY, d.iter().map(|d| d.key.clone()))
        .strings(ht::HPA, d.iter().map(|d| d.hpa.clone()))
        .strings(ht::RESOURCE, d.iter().map(|d| d.resource.name().to_string()))
        .floats(ht::TARGET_PCT, d.iter().map(|d| d.target).collect())
        .floats(ht::PLANNED_TARGET_PCT, d.iter().map(|d| d.planned_target).collect())
        .floats(ht::REQUEST, d.iter().map(|d| d.request.unwrap_or(nan)).collect())
        .floats(ht::PLANNED_REQUEST, d.iter().map(|d| d.planned_request.unwrap_or(nan)).collect())
        .floats(ht::SCALE_POINT, points(0))
        .floats(ht::PLANNED_SCALE_POINT, points(1))
        .u32s(ht::ABOVE_TARGET_STEPS, d.iter().map(|d| d.above_now as u32).collect())
        .u32s(ht::PLANNED_ABOVE_TARGET_STEPS, d.iter().map(|d| d.above_planned as u32).collect())
        .strings(ht::ACTION, d.iter().map(|d| d.action.clone()))
        .finish()
}

/// Jobs and CronJobs run to completion: a forecast across their runs says little of the
/// next one, so each request is the runs' peak (the highest usage any run reached; the busiest
/// replica of a parallel Job), and a limit never below it. Returns how many were sized so.
pub fn size_jobs(plan: &mut [WorkloadPlan], lines: &[&Line], seen: &BTreeMap<String, Seen>) -> usize {
    let mut keys = std::collections::BTreeSet::new();
    for w in plan.iter_mut().filter(|w| is_job(&w.owner)) {
        let Some(s) = seen.get(&w.key) else { continue };
        for (i, l) in lines.iter().enumerate() {
            let Some(peak) = s.max[l.resource.index()] else { continue };
            let policy = Policy { floor: l.floor, step: l.step, min_change: 0.0, changes_per_day: 1 };
            let peak = policy.round(peak);
            w.values[i] = if l.name.ends_with("request") { Some(peak) } else { w.values[i].map(|v| v.max(peak)) };
        }
        keys.insert(w.key.clone());
    }
    keys.len()
}
