//! The plan ahead: requests per workload and interval past the end of the data, and the
//! Kubernetes objects that apply it (strategic-merge patches, VPA recommendations).

use super::*;

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

/// One interval of the plan ahead: CPU and memory requests and the memory limit, for the
/// resources the model forecasts.
pub struct Planned {
    pub from: i64,
    pub until: i64,
    pub requests: [Option<f64>; 2],
    pub limit: Option<f64>,
}

/// One workload's plan ahead.
pub struct WorkloadPlan {
    pub key: String,
    pub namespace: String,
    pub workload: String,
    pub container: String,
    pub intervals: Vec<Planned>,
    /// Over the whole horizon, from the lowest and highest quantile: VPA's bounds.
    pub lower: [Option<f64>; 2],
    pub upper: [Option<f64>; 2],
}

impl WorkloadPlan {
    /// What to set now to cover every interval planned: requests and memory limit.
    pub fn peak(&self) -> ([Option<f64>; 2], Option<f64>) {
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.intervals.iter().fold(([None; 2], None), |(r, l), i| {
            ([max(r[0], i.requests[0]), max(r[1], i.requests[1])], max(l, i.limit))
        })
    }
}

pub(super) fn forward_plan(
    future: &ByKey,
    sources: &[(String, f64); 2],
    interval_ms: i64,
    policies: [&Policy; 2],
    limit_factor: f64,
    columns: &[String],
) -> Vec<WorkloadPlan> {
    let mut keys: Vec<&String> = future.keys().map(|(k, _)| k).collect();
    keys.dedup();
    let quantiles: Vec<&String> = columns.iter().filter(|c| *c != "forecast").collect();
    // Bounds from the lowest and highest quantile forecast (the point forecast if none).
    let (lo, hi) = match (quantiles.first(), quantiles.last()) {
        (Some(lo), Some(hi)) => (lo.as_str(), hi.as_str()),
        _ => ("forecast", "forecast"),
    };
    let mut out = Vec::new();
    for key in keys {
        let forecasts = RESOURCES.map(|r| future.get(&(key.clone(), r.to_string())));
        let Some(first) = forecasts.iter().flatten().next() else { continue };
        let ivs = intervals(first, interval_ms);
        let peak = |f: &Forecasts, iv: &Interval, column: &str, m: f64| {
            iv.cells.iter().map(|&(n, h)| f.columns[column][n][h]).fold(f64::MIN, f64::max) * (1.0 + m)
        };
        let request =
            |r: usize, iv: &Interval| forecasts[r].map(|f| policies[r].round(peak(f, iv, &sources[r].0, sources[r].1)));
        let intervals = ivs
            .iter()
            .map(|iv| {
                let requests = [request(0, iv), request(1, iv)];
                Planned {
                    from: iv.start,
                    until: iv.cells.last().map_or(iv.start, |&(n, h)| first.times[n][h]),
                    requests,
                    limit: requests[1].map(|m| policies[1].round(m * limit_factor)),
                }
            })
            .collect();
        let bound = |column: &str| {
            [0, 1].map(|r| {
                forecasts[r]
                    .map(|f| policies[r].round(ivs.iter().map(|iv| peak(f, iv, column, 0.0)).fold(f64::MIN, f64::max)))
            })
        };
        let parts: Vec<&str> = key.splitn(3, '/').collect();
        let (namespace, workload, container) = match parts.as_slice() {
            [n, w, c] => (n.to_string(), w.to_string(), c.to_string()),
            _ => (String::new(), key.clone(), key.clone()),
        };
        out.push(WorkloadPlan {
            key: key.clone(),
            namespace,
            workload,
            container,
            intervals,
            lower: bound(lo),
            upper: bound(hi),
        });
    }
    out
}

/// `cpu: 35m, memory: 64Mi` for the resources planned.
pub(super) fn quantities(values: [Option<f64>; 2]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(c) = values[0] {
        out.push(("cpu", format_cpu(c)));
    }
    if let Some(m) = values[1] {
        out.push(("memory", format_memory(m)));
    }
    out
}

/// One strategic-merge patch per workload, as a multi-document YAML file.
pub(super) fn patches(plan: &[WorkloadPlan], sources: &[(String, f64); 2]) -> String {
    let mut out = format!(
        "# Container resources planned by AppLearner (CPU from the {} forecast, memory from the {} forecast),\n\
         # each the peak over every interval planned.\n\
         # Apply one workload: kubectl patch deployment NAME -n NAMESPACE --type strategic --patch-file <(its document)\n\
         # or all of them: kubectl apply --server-side --field-manager=applearner -f patches.yaml\n\
         # Workloads are assumed to be Deployments; change `kind` for StatefulSets and DaemonSets.\n",
        label(&sources[0].0, sources[0].1),
        label(&sources[1].0, sources[1].1),
    );
    for w in plan {
        let (requests, limit) = w.peak();
        let _ = write!(
            out,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  template:\n    spec:\n      containers:\n        - name: {}\n          resources:\n            requests:\n",
            w.workload, w.namespace, w.container,
        );
        for (name, q) in quantities(requests) {
            let _ = writeln!(out, "              {name}: {q}");
        }
        if let Some(limit) = limit {
            let _ = write!(out, "            limits:\n              memory: {}\n", format_memory(limit));
        }
    }
    out
}

/// VerticalPodAutoscaler objects in recommendation form, updates off: VPA-aware tooling
/// (dashboards, Goldilocks-style reports) reads the plan where it reads VPA's.
pub(super) fn vpa_objects(plan: &[WorkloadPlan]) -> String {
    let mut out = String::from(
        "# AppLearner's plan as VerticalPodAutoscaler recommendations (updateMode Off: nothing is evicted).\n",
    );
    let map = |values: [Option<f64>; 2]| {
        let inner: Vec<String> = quantities(values).into_iter().map(|(n, q)| format!("{n}: {q}")).collect();
        format!("{{{}}}", inner.join(", "))
    };
    for w in plan {
        let (requests, _) = w.peak();
        let _ = write!(
            out,
            "---\napiVersion: autoscaling.k8s.io/v1\nkind: VerticalPodAutoscaler\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  targetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: {}\n  updatePolicy:\n    updateMode: \"Off\"\nstatus:\n  recommendation:\n    containerRecommendations:\n      - containerName: {}\n        target: {}\n        uncappedTarget: {}\n        lowerBound: {}\n        upperBound: {}\n",
            w.workload,
            w.namespace,
            w.workload,
            w.container,
            map(requests),
            map(requests),
            map(w.lower),
            map(w.upper),
        );
    }
    out
}
