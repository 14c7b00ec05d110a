"""Seed corpora for the fuzz targets, cut from the real files in ../shared/datasets:
small enough to mutate quickly, real in shape (labels, timestamps, values, quirks)."""
import glob
import gzip
import json
import os
import sys

data, out = sys.argv[1], sys.argv[2]


def write(target, name, text):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "w") as f:
        f.write(text)


for i, path in enumerate(sorted(glob.glob(f"{data}/*/query_range/*/*.json.gz"))[:6]):
    answer = json.load(gzip.open(path))
    series = answer["data"]["result"] = answer["data"]["result"][:3]
    for s in series:
        s["values"] = s["values"][:16]
    write("answer", f"matrix-{i}.json", json.dumps(answer))
    # The same series as an instant query's vector answer.
    vector = [{"metric": s["metric"], "value": s["values"][-1]} for s in series]
    write("answer", f"vector-{i}.json", json.dumps({"status": "success", "data": {"resultType": "vector", "result": vector}}))

for path in sorted(glob.glob(f"{data}/*/legacy/*.json.gz")):
    dump = json.load(gzip.open(path))
    small = {}
    for key in list(dump)[:3]:
        small[key] = [dict(chunk, data=chunk["data"][:16]) for chunk in dump[key][:2]]
    write("legacy", os.path.basename(path)[: -len(".gz")], json.dumps(small))

for path in sorted(glob.glob(f"{data}/*/promtool-dump.txt.gz")):
    lines = gzip.open(path, "rt").read().splitlines()
    write("text", "promtool-dump.txt", "\n".join(lines[:40] + lines[-40:]) + "\n")
    # The same samples as OpenMetrics, the format promtool backfills.
    metric = lines[0].split("{")[1] if lines else ""
    om = ["# TYPE container_memory_working_set_bytes gauge"]
    om += ["container_memory_working_set_bytes{" + l.split("{", 1)[1].split(", ", 1)[1] for l in lines[:40] if ", " in l]
    write("text", "openmetrics.txt", "\n".join(om) + "\n# EOF\n")

for path in sorted(glob.glob("configs/*.yaml")):
    write("config", os.path.basename(path), open(path).read())
