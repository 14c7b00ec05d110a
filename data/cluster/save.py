#!/usr/bin/env python3
"""Backfills the generated cluster into Debian's Prometheus and saves its answers.

    python3 data/cluster/save.py data/cluster/query_range

Runs generate.py, backfills its OpenMetrics with `promtool tsdb create-blocks-from
openmetrics`, serves the blocks with `prometheus` on a free loopback port, and saves the
`/api/v1/query_range` answer of each of ingest.prometheus's default live queries (step 5m
over the four days; the PromQL is copied from stages/ingest/src/live.rs, and the full-tier
test `tests/cluster.rs` checks that a live pull gives the same series) as
`<query name>.json.gz`. Each series' `__name__` is set to the query's name, as a live pull
names it; queries that find nothing here (restarts, OOM kills, throttling) are not saved.
"""
import gzip, json, os, subprocess, sys, tempfile, urllib.parse, urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local_prometheus import backfill_and_serve

HERE = os.path.dirname(os.path.abspath(__file__))
START, END, STEP = 1793577600, 1793577600 + 4 * 86400 - 300, 300
C = 'container!="", container!="POD"'
BY = "by (namespace, pod, container)"
QUERIES = {
    "container_cpu_usage_cores": f"sum by (namespace, pod, container, node) (rate(container_cpu_usage_seconds_total{{{C}}}[5m]))",
    "container_memory_working_set_bytes": f"sum by (namespace, pod, container, node) (container_memory_working_set_bytes{{{C}}})",
    "kube_pod_container_resource_requests": 'max by (namespace, pod, container, resource) (kube_pod_container_resource_requests{resource=~"cpu|memory"})',
    "kube_pod_container_resource_limits": 'max by (namespace, pod, container, resource) (kube_pod_container_resource_limits{resource=~"cpu|memory"})',
    "kube_pod_container_status_restarts_total": f"max {BY} (kube_pod_container_status_restarts_total)",
    "kube_pod_container_status_last_terminated_reason": f'max {BY} (kube_pod_container_status_last_terminated_reason{{reason="OOMKilled"}})',
    "kube_pod_owner": "max by (namespace, pod, owner_kind, owner_name) (kube_pod_owner)",
    "kube_replicaset_owner": "max by (namespace, replicaset, owner_kind, owner_name) (kube_replicaset_owner)",
    "kube_job_owner": "max by (namespace, job_name, owner_kind, owner_name) (kube_job_owner)",
    "kube_horizontalpodautoscaler_info": "max by (namespace, horizontalpodautoscaler, scaletargetref_kind, scaletargetref_name) (kube_horizontalpodautoscaler_info)",
    "kube_horizontalpodautoscaler_spec_target_metric": "max by (namespace, horizontalpodautoscaler, metric_name, metric_target_type) (kube_horizontalpodautoscaler_spec_target_metric)",
    "kube_horizontalpodautoscaler_status_current_replicas": "max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_current_replicas)",
    "kube_horizontalpodautoscaler_status_desired_replicas": "max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_desired_replicas)",
    "kube_resourcequota": "max by (namespace, resourcequota, resource, type) (kube_resourcequota)",
    "container_cpu_cfs_throttled_ratio": f"sum {BY} (rate(container_cpu_cfs_throttled_periods_total{{{C}}}[5m])) / sum {BY} (rate(container_cpu_cfs_periods_total{{{C}}}[5m]))",
}


def main(target):
    with tempfile.TemporaryDirectory() as tmp:
        om = os.path.join(tmp, "cluster.om")
        with open(om, "wb") as f:
            subprocess.run([sys.executable, os.path.join(HERE, "generate.py")], stdout=f, check=True)
        server, base, _ = backfill_and_serve(om, tmp)
        try:
            os.makedirs(target, exist_ok=True)
            for name, query in QUERIES.items():
                params = urllib.parse.urlencode({"query": query, "start": START, "end": END, "step": STEP})
                answer = json.load(urllib.request.urlopen(f"{base}/api/v1/query_range?{params}"))
                result = answer["data"]["result"]
                if not result:
                    print(name, "no series: not saved")
                    continue
                for series in result:
                    series["metric"] = {"__name__": name, **series["metric"]}
                result.sort(key=lambda s: sorted(s["metric"].items()))
                with gzip.GzipFile(os.path.join(target, f"{name}.json.gz"), "wb", mtime=0) as f:
                    f.write(json.dumps(answer, separators=(",", ":")).encode())
                print(name, len(result), "series", sum(len(s["values"]) for s in result), "points")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main(sys.argv[1])
