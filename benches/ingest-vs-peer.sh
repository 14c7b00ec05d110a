#!/usr/bin/env bash
# Ingest throughput beside the reference stack, in one run on one machine:
#   benches/ingest-vs-peer.sh [DATASET]     (default ../shared/datasets/bitbrains-rnd)
# The reference (../shared/bench/torch_peer.py) needs a venv once:
#   python3 -m venv .bench-venv && .bench-venv/bin/pip install torch pandas pyarrow numpy
# It prints the reference's JSON line (all its stages; compare `ingest_mb_per_s`), then ours.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:-../shared/datasets/bitbrains-rnd}
cargo bench --bench ingest --no-run -q
.bench-venv/bin/python ../shared/bench/torch_peer.py "$dataset" --step 300 --threads 2
cargo bench -q --bench ingest -- "$dataset"
