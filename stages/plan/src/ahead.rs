//! The plan ahead: requests per workload and interval past the end of the data, and the
//! Kubernetes objects that apply it (strategic-merge patches, VPA recommendations).

use super::*;
use applearner_contracts::tables::forecasts;

/// `35m`, or whole cores.
pub fn format_cpu(cores: f64) -> String {
    let m = (cores * 1000.0).round() as i64;
    if m % 1000 == 0 { format!("{}", m / 1000) } else { format!("{m}m") }
}

/// `64Mi` when a whole number of MiB, else bytes.
pub fn format_memory(bytes: f64) -> String {
    let b = bytes.round() as i64;
    if b % (1 << 20) == 0 { format!("{}Mi", b >> 20) } else { format!("{b}") }
}

/// One workload's plan ahead: each line's value (by line index; `None` where its resource
/// is not forecast), set from the end of the data and held for 24 h / the change budget.
pub struct WorkloadPlan {
    pub key: String,
    pub namespace: String,
    pub workload: String,
    pub container: String,
    pub from: i64,
    pub until: i64,
    pub values: Vec<Option<f64>>,
    /// The object that owns the workload's pods (kind, name), where kube-state-metrics says.
    pub owner: Option<(String, String)>,
    /// The HPA scaling it, whose scale points the plan keeps.
    pub hpa: Option<String>,
}

/// Whether an owner runs to completion (a Job, or a CronJob's Jobs).
pub fn is_job(owner: &Option<(String, String)>) -> bool {
    owner.as_ref().is_some_and(|o| o.0 == "Job" || o.0 == "CronJob")
}

impl WorkloadPlan {
    /// What a patch goes to: API version, kind and name, and the path of its pod spec; a
    /// workload without a known owner is assumed a Deployment named after its pods.
    pub fn target(&self) -> (&'static str, &str, &str, &'static str) {
        let Some((kind, name)) = &self.owner else {
            return ("apps/v1", "Deployment", &self.workload, "spec:\n  template:\n    spec:\n");
        };
        let (api, path) = match kind.as_str() {
            "CronJob" => ("batch/v1", "spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n"),
            "Job" => ("batch/v1", "spec:\n  template:\n    spec:\n"),
            "Pod" => ("v1", "spec:\n"),
            _ => ("apps/v1", "spec:\n  template:\n    spec:\n"),
        };
        (api, kind, name, path)
    }

    /// Requests and limits as `[cpu, memory]`.
    pub fn of(&self, lines: &[&Line], kind: &str) -> [Option<f64>; 2] {
        let mut out = [None; 2];
        for (l, v) in lines.iter().zip(&self.values) {
            if l.name.ends_with(kind) {
                out[l.resource.index()] = *v;
            }
        }
        out
    }
}

/// The plan ahead: per workload with a forecast from the end of its data, each line's loop
/// carried on from the test part (or the last refresh) over the forecast's decisions (hourly
/// within a day-long horizon): its rule × the workload's factor, floored and rounded, under
/// the change budget already used; a limit never below its request. One row per stretch of
/// unchanged values, in time order.
pub(super) fn forward_plan(
    timelines: &Timelines,
    lines: &[&Line],
    configured: &[&Outcome],
    budget: u32,
    workloads: &Workloads,
) -> Vec<WorkloadPlan> {
    let mut out = Vec::new();
    for (key, tl) in timelines {
        let ahead =
            |r: Resource| tl.get(&(r.name().to_string(), forecasts::AHEAD.to_string())).filter(|t| !t.at.is_empty());
        let Some(first) = ahead(Resource::Cpu).or(ahead(Resource::Memory)) else { continue };
        let per_line = in_force(key, lines, configured);
        let parts: Vec<&str> = key.splitn(3, '/').collect();
        let (namespace, workload, container) = match parts.as_slice() {
            [n, w, c] => (n.to_string(), w.to_string(), c.to_string()),
            _ => (String::new(), key.clone(), key.clone()),
        };
        // A single decision holds for the change budget's hold; hourly ones for their hour.
        let decisions = first.at.len();
        let span = if decisions == 1 { hold_ms(budget) } else { DECISION_MS };
        let mut rows: Vec<WorkloadPlan> = Vec::new();
        for d in 0..decisions {
            let mut values: Vec<Option<f64>> =
                per_line.iter().map(|v| v.as_ref().and_then(|v| v.get(d).copied())).collect();
            limits_at_least_requests(lines, &mut values);
            let (from, until) = (first.at[d], first.at[d] + span);
            match rows.last_mut() {
                Some(last) if last.values == values => last.until = until,
                _ => rows.push(WorkloadPlan {
                    key: key.clone(),
                    namespace: namespace.clone(),
                    workload: workload.clone(),
                    container: container.clone(),
                    from,
                    until,
                    values,
                    owner: workloads.get(key).and_then(|k| k.owner.clone()),
                    hpa: None,
                }),
            }
        }
        out.extend(rows);
    }
    out
}

/// Per line, the value in force at each decision ahead, as the line's loop decided it (`None`
/// where the line's resource is not forecast).
fn in_force(key: &str, lines: &[&Line], configured: &[&Outcome]) -> Vec<Option<Vec<f64>>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let walked = configured.iter().find(|o| o.line == i)?.walks.get(key)?;
            // Whole nanocores and bytes: 83 × 5m is 0.415, not 0.41500000000000004.
            Some(
                walked
                    .ahead
                    .iter()
                    .map(|v| if l.resource == Resource::Cpu { (v * 1e9).round() / 1e9 } else { v.round() })
                    .collect(),
            )
        })
        .collect()
}

/// A limit is never below its resource's request.
pub(super) fn limits_at_least_requests(lines: &[&Line], values: &mut [Option<f64>]) {
    for (i, l) in lines.iter().enumerate().filter(|(_, l)| l.name.ends_with("limit")) {
        let request = lines.iter().position(|r| r.resource == l.resource && r.name.ends_with("request"));
        if let (Some(v), Some(Some(req))) = (values[i], request.map(|r| values[r])) {
            values[i] = Some(v.max(req));
        }
    }
}

/// `cpu: 35m, memory: 64Mi` for the resources planned.
pub(super) fn quantities(values: [Option<f64>; 2]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(c) = values[0] {
        out.push((Resource::Cpu.name(), format_cpu(c)));
    }
    if let Some(m) = values[1] {
        out.push((Resource::Memory.name(), format_memory(m)));
    }
    out
}

/// One strategic-merge patch per workload, to the object that owns its pods, as a
/// multi-document YAML file.
pub(super) fn patches(plan: &[&WorkloadPlan], lines: &[&Line], configured: &[&Outcome]) -> String {
    let sizing: Vec<String> =
        configured.iter().map(|o| format!("{} from {}", lines[o.line].name, o.rule.label())).collect();
    let mut out = format!(
        "# Container resources planned by AppLearner ({}; k calibrated on validation), one pod's size.\n\
         # Apply one workload: kubectl patch KIND NAME -n NAMESPACE --type strategic --patch-file <(its document)\n\
         # or all of them: kubectl apply --server-side --field-manager=applearner -f patches.yaml\n\
         # On Kubernetes ≥ 1.33 (InPlacePodVerticalScaling) a resize needs no restart: kubectl patch pod --subresource resize.\n",
        sizing.join("; "),
    );
    for w in plan {
        let (requests, limits) = (w.of(lines, "request"), w.of(lines, "limit"));
        let (api, kind, name, path) = w.target();
        out.push_str("---\n");
        match (&w.owner, kind) {
            (None, _) => {
                out.push_str("# Owner unknown (no kube_pod_owner series): assumed a Deployment named after the pods.\n")
            }
            (_, "Job") => out.push_str("# A Job's pod template cannot change: set these where the Job is created.\n"),
            (_, "Pod") => out.push_str("# A bare pod: resize it in place (kubectl patch pod --subresource resize).\n"),
            _ => {}
        }
        let indent = " ".repeat(path.lines().count() * 2);
        let _ = write!(
            out,
            "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {}\n{path}{indent}containers:\n{indent}  - name: {}\n{indent}    resources:\n{indent}      requests:\n",
            w.namespace, w.container,
        );
        for (name, q) in quantities(requests) {
            let _ = writeln!(out, "{indent}        {name}: {q}");
        }
        if limits.iter().any(Option::is_some) {
            let _ = writeln!(out, "{indent}      limits:");
            for (name, q) in quantities(limits) {
                let _ = writeln!(out, "{indent}        {name}: {q}");
            }
        }
    }
    out
}

/// VerticalPodAutoscaler objects in recommendation form, updates off: VPA-aware tooling
/// (dashboards, Goldilocks-style reports) reads the plan where it reads VPA's.
pub(super) fn vpa_objects(plan: &[&WorkloadPlan], lines: &[&Line]) -> String {
    let mut out = String::from(
        "# AppLearner's plan as VerticalPodAutoscaler recommendations (updateMode Off: nothing is evicted).\n",
    );
    let map = |values: [Option<f64>; 2]| {
        let inner: Vec<String> = quantities(values).into_iter().map(|(n, q)| format!("{n}: {q}")).collect();
        format!("{{{}}}", inner.join(", "))
    };
    // A VPA targets a controller; a bare pod has none.
    for w in plan.iter().filter(|w| w.target().1 != "Pod") {
        let requests = w.of(lines, "request");
        // VPA's bounds: the request, and the limit where one is planned.
        let limits = w.of(lines, "limit");
        let upper = [0, 1].map(|r| limits[r].or(requests[r]));
        let (api, kind, name, _) = w.target();
        let _ = write!(
            out,
            "---\napiVersion: autoscaling.k8s.io/v1\nkind: VerticalPodAutoscaler\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  targetRef:\n    apiVersion: {api}\n    kind: {kind}\n    name: {name}\n  updatePolicy:\n    updateMode: \"Off\"\nstatus:\n  recommendation:\n    containerRecommendations:\n      - containerName: {}\n        target: {}\n        uncappedTarget: {}\n        lowerBound: {}\n        upperBound: {}\n",
            w.workload,
            w.namespace,
            w.container,
            map(requests),
            map(requests),
            map(requests),
            map(upper),
        );
    }
    out
}
