#!/usr/bin/env bash
# Issue 43's GPU check, prepared for the day a GPU is lent: it builds nothing. Run it from a
# checkout (it reads configs/ and data/) with a folder holding the two binaries, built where
# the Rust toolchain is:
#
#   cargo build --release --features cuda --bin applearner --bench stages
#   mkdir -p gpu && cp target/release/applearner gpu/ \
#     && cp "$(ls -t target/release/deps/stages-* | grep -v '\.d$' | head -1)" gpu/stages \
#     && strip gpu/* && zstd -19 --rm gpu/* && ls -l gpu   # each must be under 64 MiB to travel
#
# Stripped, `applearner` is about 229 MB; compressed, 42 MB. The script decompresses what it
# is given.
#
#   benches/gpu_check.sh gpu out            # on the GPU machine
#   DEVICE=cpu benches/gpu_check.sh BIN out # the same checks on the CPU, as it is tested here
#
# DATA is the Bitbrains dataset (default ../shared/datasets/bitbrains-rnd); PYTHON, a Python
# with torch, pandas and pyarrow, runs the reference beside the suite (on the CPU: the
# reference script has no device option). It writes out/card.txt (the card), out/suite.jsonl
# (the suite's LSTM 2×64 at batch 256, then at 4,096) and out/store (configs/bitbrains.yaml
# trained on DEVICE for 3 epochs and backtested on the CPU), and fails unless the training
# loss fell, the model loaded on the CPU and its forecasts are finite.
set -euo pipefail
out=$(realpath -m "$2")
bin=$(realpath "$1")
if [ -e "$bin/applearner.zst" ]; then
  mkdir -p "$out/bin"
  for f in applearner stages; do zstd -d -q -f "$bin/$f.zst" -o "$out/bin/$f" && chmod +x "$out/bin/$f"; done
  bin="$out/bin"
fi
device=${DEVICE:-cuda}
data=${DATA:-../shared/datasets/bitbrains-rnd}
mkdir -p "$out"
if [ "$device" != cpu ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/card.txt"
fi

suite=("$bin/stages" --scales 1 --stages ingest,clean,features,train,predict --device "$device")
peer=()
if [ -n "${PYTHON:-}" ]; then peer=(--peer "$PYTHON"); fi
"${suite[@]}" "${peer[@]}" > "$out/suite.jsonl"
"${suite[@]}" --batch 4096 >> "$out/suite.jsonl"

# Trained on DEVICE, the model is then loaded by the backtest on the CPU.
"$bin/applearner" -q run configs/bitbrains.yaml --until evaluate --run-id gpu-check \
  --set store="$out/store" --set variables.data="$data" --set train.device="$device" \
  --set train.train.epochs=3 --set evaluate.device=cpu > "$out/run.txt"

python3 - "$out/store/gpu-check" <<'PY'
import sys
import pyarrow.compute as pc
import pyarrow.parquet as pq

run = sys.argv[1]
loss = pq.read_table(f"{run}/train/metrics.parquet").column("train_loss").to_pylist()
assert len(loss) >= 2 and loss[-1] < loss[0], f"the training loss did not fall: {loss}"
f = pq.read_table(f"{run}/evaluate/forecasts.parquet")
model = f.filter(pc.equal(f["method"], "model"))
finite = pc.all(pc.is_finite(model["forecast"])).as_py()
assert model.num_rows > 0 and finite, f"{model.num_rows} model forecasts, all finite: {finite}"
print(f"ok: training loss {loss[0]:.4f} -> {loss[-1]:.4f} over {len(loss)} epochs; "
      f"{model.num_rows} forecasts from the CPU, all finite")
PY
