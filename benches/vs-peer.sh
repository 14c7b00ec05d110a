#!/usr/bin/env bash
# Ingest, resample and training throughput beside the reference stack, in one run on one machine:
#   benches/vs-peer.sh [DATASET [STEP_SECONDS]]   (default ../shared/datasets/bitbrains-rnd 300)
# The reference (../shared/bench/torch_peer.py) needs a venv once:
#   python3 -m venv .bench-venv && .bench-venv/bin/pip install torch pandas pyarrow numpy
# It prints the reference's JSON line (all its stages; compare `ingest_mb_per_s` and
# `resample_s`, `train_samples_per_s`), then ours for ingest, clean.resample and train.fit.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:-../shared/datasets/bitbrains-rnd}
step=${2:-300}
cargo bench --bench stages --no-run -q
.bench-venv/bin/python ../shared/bench/torch_peer.py "$dataset" --step "$step" --threads 2
cargo bench -q --bench stages -- ingest "$dataset"
cargo bench -q --bench stages -- resample "$dataset" --step "$step"
cargo bench -q --bench stages -- train "$dataset" --step "$step"
