#!/usr/bin/env python3
"""GENERATED data: a small Kubernetes cluster, seeded, as the raw series Prometheus scrapes.

    python3 data/cluster/generate.py > cluster.om       # OpenMetrics, for promtool backfill

Nothing here is measured: the real datasets lack replicas, owners, HPAs and quotas, so this
script makes them, four days from 2026-11-02T00:00Z, the same bytes on every run:

- shop/web       Deployment, 3 overlapping replicas sharing a daily load
- shop/cart      Deployment, 2 replicas, rolled out to a new ReplicaSet on day 2 (overlap)
- shop/api       Deployment scaled by the HPA `api` on 60 % CPU utilization (2–8 replicas
                 that follow the load; pods come and go as it scales)
- shop/db        StatefulSet db-0, db-1 (memory growing)
- monitoring/agent DaemonSet, one pod on each of three nodes
- shop/report    CronJob every 8 hours, each run 3 hours
- shop/debug-shell a bare pod
- bad input, counted by the pipeline and never merged: a kube_pod_owner series of a pod with
  no usage (shop/ghost-…), an HPA `legacy` scaling a Deployment with no pods, and a
  ResourceQuota in namespace `empty`, which has no workloads.

Series: cAdvisor's container_cpu_usage_seconds_total (every 2 minutes) and
container_memory_working_set_bytes (every 5), kube-state-metrics' requests, limits,
kube_pod_owner, kube_replicaset_owner, kube_job_owner, the HPA's info, target, current and
desired replicas, and kube_resourcequota (every 5 minutes).
"""
import math
import random
import sys

SEED = 39
START = 1793577600  # 2026-11-02T00:00:00Z
DAYS = 4
END = START + DAYS * 86400
MIN, SCRAPE = 60, 300
MI = 1 << 20
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NODES = ["node-a", "node-b", "node-c"]

rng = random.Random(SEED)


def suffix(n):
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def daily(t):
    """0 at 02:00, 1 at 14:00."""
    return 0.5 - 0.5 * math.cos(2 * math.pi * ((t - START) / 86400 - 2 / 24))


class Pod:
    def __init__(self, ns, name, owner, start, end, requests, limits, container="app"):
        self.ns, self.name, self.owner, self.container = ns, name, owner, container
        self.start, self.end = start, end
        self.node = NODES[len(pods) % len(NODES)]
        self.requests, self.limits = requests, limits
        self.cpu, self.memory = {}, {}  # minute → cores, bytes

    def alive(self, t):
        return self.start <= t < self.end


pods = []


def pod(*args, **kwargs):
    p = Pod(*args, **kwargs)
    pods.append(p)
    return p


def minutes(start=START, end=END):
    return range(start, end, MIN)


# shop/web: three replicas share the load.
web = [pod("shop", f"web-5f55b6cf68-{suffix(5)}", ("ReplicaSet", "web-5f55b6cf68"), START, END,
           {"cpu": 0.2, "memory": 256 * MI}, {"memory": 512 * MI}) for _ in range(3)]
for t in minutes():
    load = 0.45 + 0.35 * daily(t) + 0.03 * rng.gauss(0, 1)
    for p in web:
        p.cpu[t] = max(0.01, load / 3 * (1 + 0.08 * rng.gauss(0, 1)))
        p.memory[t] = (150 + 40 * daily(t) + 5 * rng.gauss(0, 1)) * MI

# shop/cart: a rollout on day 2, the new ReplicaSet's pods up 10 minutes before the old go.
rollout = START + 2 * 86400
cart = [pod("shop", f"cart-6d8f7b9c4d-{suffix(5)}", ("ReplicaSet", "cart-6d8f7b9c4d"), START, rollout + 600,
            {"cpu": 0.15, "memory": 200 * MI}, {}) for _ in range(2)]
cart += [pod("shop", f"cart-7b8c9d4f6b-{suffix(5)}", ("ReplicaSet", "cart-7b8c9d4f6b"), rollout - 600, END,
             {"cpu": 0.15, "memory": 200 * MI}, {}) for _ in range(2)]
for t in minutes():
    live = [p for p in cart if p.alive(t)]
    load = 0.2 + 0.15 * daily(t) + 0.02 * rng.gauss(0, 1)
    for p in live:
        p.cpu[t] = max(0.005, load / len(live) * (1 + 0.1 * rng.gauss(0, 1)))
        p.memory[t] = (120 + 10 * rng.gauss(0, 1)) * MI

# shop/api: the HPA keeps 60 % of a 500m request per pod, as Kubernetes' controller does:
# desired = ⌈current × utilization / target⌉ outside a 10 % tolerance, out at once, in only
# after 15 minutes of lower desire (its stabilization window). The load wanders (AR(1)).
API_REQUEST, API_TARGET, API_MIN, API_MAX = 0.5, 60, 2, 8
api_pods, hpa = [], {}
current, low_for, wander = API_MIN, 0, 0.0
for t in minutes():
    wander = 0.9 * wander + 0.05 * rng.gauss(0, 1)
    load = max(0.2, 1.0 + 0.9 * daily(t) + wander)
    ratio = load / (current * API_REQUEST) / (API_TARGET / 100)
    desired = current if abs(ratio - 1) <= 0.1 else math.ceil(current * ratio)
    desired = min(API_MAX, max(API_MIN, desired))
    low_for = low_for + 1 if desired < current else 0
    if desired > current or low_for >= 15:
        current, low_for = desired, 0
    live = [p for p in api_pods if p.end > t]
    while len(live) < current:
        p = pod("shop", f"api-84cbf6c798-{suffix(5)}", ("ReplicaSet", "api-84cbf6c798"), t, END,
                {"cpu": API_REQUEST, "memory": 512 * MI}, {"memory": 1024 * MI})
        api_pods.append(p)
        live.append(p)
    while len(live) > current:
        live.pop().end = t
    hpa[t] = (current, desired)
    for p in live:
        p.cpu[t] = max(0.01, load / len(live) * (1 + 0.05 * rng.gauss(0, 1)))
        p.memory[t] = (300 + 100 * p.cpu[t] + 10 * rng.gauss(0, 1)) * MI

# shop/db: a StatefulSet whose memory grows 2 % a day.
db = [pod("shop", f"db-{i}", ("StatefulSet", "db"), START, END, {"cpu": 0.25, "memory": 1536 * MI},
          {"memory": 2048 * MI}, container="postgres") for i in range(2)]
for t in minutes():
    for p in db:
        p.cpu[t] = max(0.01, 0.15 + 0.05 * daily(t) + 0.02 * rng.gauss(0, 1))
        p.memory[t] = 1024 * MI * (1 + 0.02 * (t - START) / 86400) + 8 * MI * rng.gauss(0, 1)

# monitoring/agent: a DaemonSet, one pod a node.
agents = [pod("monitoring", f"agent-{suffix(5)}", ("DaemonSet", "agent"), START, END,
              {"cpu": 0.05, "memory": 64 * MI}, {"memory": 128 * MI}, container="agent") for _ in NODES]
for i, p in enumerate(agents):
    p.node = NODES[i]
for t in minutes():
    for p in agents:
        p.cpu[t] = max(0.001, 0.03 + 0.005 * rng.gauss(0, 1))
        p.memory[t] = (60 + 2 * rng.gauss(0, 1)) * MI

# shop/report: a CronJob at 01:00, 09:00 and 17:00, each run three hours.
jobs = []
for scheduled in range(START + 3600, END - 3 * 3600, 8 * 3600):
    job = f"report-{scheduled // 60}"
    p = pod("shop", f"{job}-{suffix(5)}", ("Job", job), scheduled, scheduled + 3 * 3600,
            {"cpu": 0.5, "memory": 512 * MI}, {"memory": 1024 * MI})
    jobs.append((job, scheduled))
    for t in minutes(p.start, p.end):
        done = (t - p.start) / (p.end - p.start)
        p.cpu[t] = max(0.05, 0.6 + 0.1 * rng.gauss(0, 1))
        p.memory[t] = (200 + 400 * done + 10 * rng.gauss(0, 1)) * MI

# shop/debug-shell: a bare pod.
debug = pod("shop", "debug-shell", ("<none>", "<none>"), START, END, {"cpu": 0.01, "memory": 32 * MI}, {})
for t in minutes():
    debug.cpu[t] = max(0.0005, 0.002 + 0.0005 * rng.gauss(0, 1))
    debug.memory[t] = (20 + rng.gauss(0, 1)) * MI


def labels(**kv):
    return ",".join(f'{k}="{v}"' for k, v in kv.items())


def family(name, series):
    """One OpenMetrics family: series as (labels, [(t, value)])."""
    out = [f"# TYPE {name} gauge"]
    for lab, points in series:
        out.extend(f"{name}{{{lab}}} {v:.6g} {t}" for t, v in points)
    return out


def every(start, end, step=SCRAPE):
    return range(start - start % step + (step if start % step else 0), end, step)


def pod_labels(p, **extra):
    return labels(namespace=p.ns, pod=p.name, container=p.container, **extra)


lines = []
cpu = []
for p in pods:
    counter, points = 0.0, []
    for t in minutes(p.start, p.end):
        counter += p.cpu[t] * MIN
        if t % 120 == 0:
            points.append((t, counter))
    cpu.append((pod_labels(p, node=p.node), points))
lines += family("container_cpu_usage_seconds_total", cpu)
lines += family("container_memory_working_set_bytes",
                [(pod_labels(p, node=p.node), [(t, p.memory[t - t % MIN]) for t in every(p.start, p.end)]) for p in pods])
for kind in ["requests", "limits"]:
    series = []
    for p in pods:
        for resource, v in getattr(p, kind).items():
            unit = "core" if resource == "cpu" else "byte"
            series.append((pod_labels(p, resource=resource, unit=unit), [(t, v) for t in every(p.start, p.end)]))
    lines += family(f"kube_pod_container_resource_{kind}", series)
ghost = ("shop", f"ghost-6c7d8f9b5c-{suffix(5)}", ("ReplicaSet", "ghost-6c7d8f9b5c"), START, END)
owners = [(labels(namespace=p.ns, pod=p.name, owner_kind=p.owner[0], owner_name=p.owner[1], owner_is_controller="true"),
           [(t, 1) for t in every(p.start, p.end)]) for p in pods]
owners.append((labels(namespace=ghost[0], pod=ghost[1], owner_kind=ghost[2][0], owner_name=ghost[2][1],
                      owner_is_controller="true"), [(t, 1) for t in every(ghost[3], ghost[4])]))
lines += family("kube_pod_owner", owners)
sets = {}
for p in pods:
    if p.owner[0] == "ReplicaSet":
        first, last = sets.get(p.owner[1], (p.start, p.end))
        sets[p.owner[1]] = (min(first, p.start), max(last, p.end))
lines += family("kube_replicaset_owner", [
    (labels(namespace="shop", replicaset=rs, owner_kind="Deployment", owner_name=rs.rsplit("-", 1)[0], owner_is_controller="true"),
     [(t, 1) for t in every(first, last)]) for rs, (first, last) in sorted(sets.items())])
lines += family("kube_job_owner", [
    (labels(namespace="shop", job_name=job, owner_kind="CronJob", owner_name="report", owner_is_controller="true"),
     [(t, 1) for t in every(scheduled, min(END, scheduled + 4 * 3600))]) for job, scheduled in jobs])
hpas = [("api", "api"), ("legacy", "legacy")]
all_steps = list(every(START, END))
lines += family("kube_horizontalpodautoscaler_info", [
    (labels(namespace="shop", horizontalpodautoscaler=h, scaletargetref_api_version="apps/v1",
            scaletargetref_kind="Deployment", scaletargetref_name=target), [(t, 1) for t in all_steps]) for h, target in hpas])
lines += family("kube_horizontalpodautoscaler_spec_target_metric", [
    (labels(namespace="shop", horizontalpodautoscaler=h, metric_name="cpu", metric_target_type="utilization"),
     [(t, API_TARGET) for t in all_steps]) for h, _ in hpas])
lines += family("kube_horizontalpodautoscaler_status_current_replicas", [
    (labels(namespace="shop", horizontalpodautoscaler="api"), [(t, hpa[t][0]) for t in all_steps]),
    (labels(namespace="shop", horizontalpodautoscaler="legacy"), [(t, 1) for t in all_steps])])
lines += family("kube_horizontalpodautoscaler_status_desired_replicas", [
    (labels(namespace="shop", horizontalpodautoscaler="api"), [(t, hpa[t][1]) for t in all_steps]),
    (labels(namespace="shop", horizontalpodautoscaler="legacy"), [(t, 1) for t in all_steps])])


def used(ns, resource, t):
    kind, name = resource.split(".")
    return sum(getattr(p, kind).get(name, 0) for p in pods if p.ns == ns and p.alive(t))


quotas = [("shop", "compute", "requests.cpu", 6), ("shop", "compute", "requests.memory", 8 * 1024 * MI),
          ("shop", "compute", "limits.memory", 12 * 1024 * MI), ("empty", "compute", "requests.cpu", 2)]
series = []
for ns, name, resource, hard in quotas:
    series.append((labels(namespace=ns, resourcequota=name, resource=resource, type="hard"), [(t, hard) for t in all_steps]))
    series.append((labels(namespace=ns, resourcequota=name, resource=resource, type="used"),
                   [(t, used(ns, resource, t)) for t in all_steps]))
lines += family("kube_resourcequota", series)
lines.append("# EOF")
sys.stdout.write("\n".join(lines) + "\n")
