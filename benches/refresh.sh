#!/usr/bin/env bash
# Hourly refreshes of configs/bitbrains-refresh.yaml, checked against one replay of the same
# hours. A weekly-style training run on the data up to 2013-07-20T22:00Z (two thirds)
# publishes the model and starts the loop's state; then REFRESHES (default 48) refreshes, an
# hour apart, each reading the data up to its hour and continuing from the state the last
# left; then one replay of the same period in a fresh store. The last refresh's state and plan
# must equal the replay's. Prints the wall time of each refresh (seconds) and the result.
#
#   cargo build && benches/refresh.sh            # about 3 min of training, then the refreshes
set -euo pipefail
bin=${APPLEARNER:-${CARGO_TARGET_DIR:-target}/debug/applearner}
work=${WORK:-/tmp/applearner-refresh}
refreshes=${REFRESHES:-48}
config=configs/bitbrains-refresh.yaml
start=2013-07-20T22:00:00Z
rm -rf "$work" && mkdir -p "$work"
hour() { date -u -d "$start + $1 hour" +%Y-%m-%dT%H:%M:%SZ; }
run() { "$bin" -q run "$config" --set "variables.model=$work/model" "$@" > /dev/null; }

run --set "store=$work/loop" --set "variables.until=$start" \
  --set train.use_model=null --set "train.publish=$work/model"
for h in $(seq 1 "$refreshes"); do
  t0=$(date +%s.%N)
  run --set "store=$work/loop" --set "variables.until=$(hour "$h")"
  echo "refresh $h at $(hour "$h"): $(echo "$(date +%s.%N) - $t0" | bc) s"
done
run --set "store=$work/replay" --set "variables.until=$(hour "$refreshes")"
python3 - "$work" <<'PY'
import glob, sys
import pyarrow.parquet as pq
work = sys.argv[1]
def last_state(store):
    path = sorted(glob.glob(f"{store}/state/bitbrains/*.parquet"))[-1]
    return path, pq.read_table(path).sort_by([("key", "ascending"), ("line", "ascending")])
def last_plan(store):
    runs = sorted(glob.glob(f"{store}/*/plan/plan.parquet"), key=lambda p: p.split("/")[-3])
    return pq.read_table(runs[-1]).sort_by([("key", "ascending"), ("from", "ascending")])
(lp, loop), (rp, replay) = last_state(f"{work}/loop"), last_state(f"{work}/replay")
print(f"state: {lp} ({loop.num_rows} rows) against {rp} ({replay.num_rows} rows)")
exact = [c for c in loop.column_names if c != "factor"]
same_state = loop.select(exact).equals(replay.select(exact))
f, g = loop.column("factor").to_pylist(), replay.column("factor").to_pylist()
factor_gap = max(abs(a - b) / abs(b) for a, b in zip(f, g)) if f and len(f) == len(g) else float("inf")
same_plan = last_plan(f"{work}/loop").equals(last_plan(f"{work}/replay"))
print(f"same values, times and changes in force: {same_state}; factors within {factor_gap:.1e} (relative); same plan: {same_plan}")
if not (same_state and same_plan and factor_gap < 1e-9):
    a, b = loop.to_pylist(), replay.to_pylist()
    for x, y in [(x, y) for x, y in zip(a, b) if x != y][:5]:
        print("refreshes:", x, "\nreplay:   ", y)
    sys.exit(1)
PY
