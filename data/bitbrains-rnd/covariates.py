#!/usr/bin/env python3
"""Adds each Bitbrains VM's disk and network throughput to bitbrains-rnd, as cAdvisor counters.

    python3 data/bitbrains-rnd/covariates.py REPO ../shared/datasets/bitbrains-rnd

REPO is a git clone of https://github.com/JessieRayeBauer/Time-Series-Forecasting- holding
commit 0901a0da3024507c7732c782621e590077abca64 (the source of the usage series). Each VM's
`rnd/2013-7/<n>.csv` gives disk read and write and network received and transmitted
throughput in KB/s per sample; this integrates them into byte counters, as cAdvisor exports
them (`container_fs_reads_bytes_total`, `container_fs_writes_bytes_total` per container,
`container_network_receive_bytes_total`, `container_network_transmit_bytes_total` per pod
and interface, without a container label), with the usage series' labels and row filtering
(duplicate timestamps keep the first row; rows with no CPU and no memory provisioned are
dropped). Each counter starts at 0 at a VM's first row and grows by round(KB/s x 1024 x the
seconds since the previous row), so a rate over it gives back the source's bytes per second.

It writes them as OpenMetrics, backfills them with `promtool tsdb create-blocks-from
openmetrics`, serves the blocks with Debian's `prometheus`, and saves the `query_range`
answer of each of ingest.prometheus's default live covariate queries (copied from
stages/ingest/src/live.rs) over the usage answers' weekly chunks, named as a live pull names
them, under `query_range/<folder>/`. It then reads every saved point back against the
counter it must hold (the last source row at or before the step, within the 5-minute
lookback) and writes `manifest-covariates.json` with the counts; any mismatch fails.
"""
import gzip, json, os, subprocess, sys, tempfile, urllib.parse, urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local_prometheus import backfill_and_serve

COMMIT = "0901a0da3024507c7732c782621e590077abca64"
STEP = 300
# Source column (0-based, after splitting on ';') → (metric family, folder, default query name).
COUNTERS = {
    7: ("container_fs_reads_bytes", "disk_read_bytes"),
    8: ("container_fs_writes_bytes", "disk_write_bytes"),
    9: ("container_network_receive_bytes", "network_receive_bytes"),
    10: ("container_network_transmit_bytes", "network_transmit_bytes"),
}
C = 'container!="", container!="POD"'
QUERIES = {
    "container_fs_reads_bytes_total": f"sum by (namespace, pod, container) (container_fs_reads_bytes_total{{{C}}})",
    "container_fs_writes_bytes_total": f"sum by (namespace, pod, container) (container_fs_writes_bytes_total{{{C}}})",
    "container_network_receive_bytes_total": "sum by (namespace, pod) (container_network_receive_bytes_total)",
    "container_network_transmit_bytes_total": "sum by (namespace, pod) (container_network_transmit_bytes_total)",
}


def rows(repo, n):
    """The kept rows of VM n: (timestamp s, [counter per COUNTERS column])."""
    text = subprocess.run(["git", "-C", repo, "show", f"{COMMIT}:rnd/2013-7/{n}.csv"], check=True,
                          capture_output=True, text=True).stdout
    seen, out = set(), []
    for line in text.splitlines()[1:]:
        f = [x.strip() for x in line.split(";")]
        ts = int(f[0])
        if ts in seen or (float(f[2]) == 0 and float(f[5]) == 0):
            continue
        seen.add(ts)
        out.append((ts, [float(f[c]) for c in COUNTERS]))
    counters, total, last = [], [0] * len(COUNTERS), None
    for ts, rates in out:
        if last is not None:
            total = [t + round(r * 1024 * (ts - last)) for t, r in zip(total, rates)]
        counters.append((ts, list(total)))
        last = ts
    return counters


def labels(family, pod):
    if family.startswith("container_network"):
        return f'namespace="bitbrains-rnd",pod="{pod}",interface="eth0"'
    return f'namespace="bitbrains-rnd",pod="{pod}",container="vm",node="bitbrains"'


def expected(series, t):
    """The counter a query at step t sees: the last row in [t - 5m, t] (Prometheus 2's
    lookback includes its start)."""
    lo, hi = 0, len(series)
    while lo < hi:
        mid = (lo + hi) // 2
        if series[mid][0] <= t:
            lo = mid + 1
        else:
            hi = mid
    return series[lo - 1] if lo and series[lo - 1][0] >= t - STEP else None


def main(repo, dataset):
    manifest = json.load(open(os.path.join(dataset, "manifest.json")))
    chunks = [(f["start"], f["end"], os.path.basename(f["file"])) for f in manifest["files"]
              if f["file"].startswith("query_range/cpu_cores/")]
    vms = {f"vm-{n:04d}": rows(repo, n) for n in range(1, 101)}
    with tempfile.TemporaryDirectory() as tmp:
        om = os.path.join(tmp, "covariates.om")
        with open(om, "w") as f:
            for c, (family, _) in enumerate(COUNTERS.values()):
                f.write(f"# TYPE {family} counter\n")
                for pod, series in vms.items():
                    for ts, values in series:
                        f.write(f"{family}_total{{{labels(family, pod)}}} {values[c]} {ts}\n")
            f.write("# EOF\n")
        server, base, blocks = backfill_and_serve(om, tmp)
        files, verification = [], {}
        try:
            for c, (family, folder) in enumerate(COUNTERS.values()):
                name = f"{family}_total"
                check = verification.setdefault(name, {"ok": 0, "bad": 0, "missing": 0, "extra": 0})
                os.makedirs(os.path.join(dataset, "query_range", folder), exist_ok=True)
                for start, end, chunk in chunks:
                    params = urllib.parse.urlencode({"query": QUERIES[name], "start": start, "end": end, "step": STEP})
                    body = urllib.request.urlopen(f"{base}/api/v1/query_range?{params}").read()
                    answer = json.loads(body)
                    result = answer["data"]["result"]
                    for s in result:
                        s["metric"] = {"__name__": name, **s["metric"]}
                        series = vms[s["metric"]["pod"]]
                        got = {int(t): v for t, v in s["values"]}
                        for t in range(start, end + 1, STEP):
                            row = expected(series, t)
                            if row is None:
                                check["extra"] += t in got
                            elif t not in got:
                                check["missing"] += 1
                            else:
                                check["ok" if float(got[t]) == row[1][c] else "bad"] += 1
                    result.sort(key=lambda s: sorted(s["metric"].items()))
                    path = os.path.join("query_range", folder, chunk)
                    with gzip.GzipFile(os.path.join(dataset, path), "wb", mtime=0) as f:
                        f.write(json.dumps(answer, separators=(",", ":")).encode())
                    files.append({"file": path, "query": QUERIES[name], "start": start, "end": end,
                                  "step": f"{STEP}s", "series": len(result),
                                  "points": sum(len(s["values"]) for s in result)})
                print(name, check)
        finally:
            server.terminate()
            server.wait()
    version = subprocess.run(["prometheus", "--version"], capture_output=True, text=True)
    out = {"made_by": "data/bitbrains-rnd/covariates.py (AppLearner repository)",
           "source": f"https://github.com/JessieRayeBauer/Time-Series-Forecasting-, commit {COMMIT}, rnd/2013-7/<1..100>.csv",
           "prometheus": (version.stdout or version.stderr).splitlines()[0],
           "counters": {f"{fam}_total": f"column {col}: KB/s x 1024 x seconds since the previous row, summed from 0"
                        for col, (fam, _) in COUNTERS.items()},
           "backfill_blocks": blocks, "files": files, "verification": verification}
    with open(os.path.join(dataset, "manifest-covariates.json"), "w") as f:
        json.dump(out, f, indent=1)
    if any(v["bad"] or v["missing"] or v["extra"] for v in verification.values()):
        raise SystemExit(f"read-back mismatch: {verification}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
