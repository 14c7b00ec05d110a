"""Cuts the shipped slice of bitbrains-rnd from the project's dataset collection.

    python3 data/bitbrains-rnd/cut.py ../shared/datasets/bitbrains-rnd data/bitbrains-rnd

Keeps four VMs over two days of one saved query_range chunk, for the usage, allocation and
covariate answers alike: every kept series and point unchanged, the answers' envelope
(status, resultType) as saved.
"""
import gzip, json, os, sys

SOURCE, TARGET = sys.argv[1], sys.argv[2]
CHUNK = "20130707T220500Z_20130714T220000Z.json.gz"
PODS = {"vm-0001", "vm-0004", "vm-0018", "vm-0084"}
START, END = 1373241600, 1373414400  # 2013-07-08T00:00:00Z, 2013-07-10T00:00:00Z
FOLDERS = ["cpu_cores", "memory_bytes", "cpu_requests", "cpu_limits", "memory_requests", "memory_limits",
           "disk_read_bytes", "disk_write_bytes", "network_receive_bytes", "network_transmit_bytes"]

for folder in FOLDERS:
    with gzip.open(os.path.join(SOURCE, "query_range", folder, CHUNK)) as f:
        answer = json.load(f)
    kept = []
    for series in answer["data"]["result"]:
        if series["metric"]["pod"] in PODS:
            values = [v for v in series["values"] if START <= v[0] <= END]
            kept.append({"metric": series["metric"], "values": values})
    answer["data"]["result"] = sorted(kept, key=lambda s: s["metric"]["pod"])
    os.makedirs(os.path.join(TARGET, "query_range", folder), exist_ok=True)
    out = os.path.join(TARGET, "query_range", folder, "20130708T000000Z_20130710T000000Z.json.gz")
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        f.write(json.dumps(answer, separators=(",", ":")).encode())
    changes = {s["metric"]["pod"]: sum(a[1] != b[1] for a, b in zip(s["values"], s["values"][1:])) for s in kept}
    print(folder, len(kept), "series", sum(len(s["values"]) for s in kept), "points; changes", changes)
