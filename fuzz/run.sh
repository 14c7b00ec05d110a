#!/usr/bin/env bash
# Fuzzes every parser of outside input for SECONDS each (default 600) with libFuzzer, seeded
# from the real files in ../shared/datasets, and prints each target's executions and
# findings (FUZZ_JOBS targets at a time, one core each). Not part of CI. Crashing inputs
# land in fuzz/artifacts/<target>/: fix the parser and add the input to its unit tests.
#
#   fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
datasets=${APPLEARNER_DATASETS:-../shared/datasets}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
rm -rf fuzz/corpus && python3 fuzz/seeds.py "$datasets" fuzz/corpus
mkdir -p fuzz/logs
# Fuzzing wants quick builds, not the release profile's link-time optimisation.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_STRIP=false
# Each target is one libFuzzer process (one core); FUZZ_JOBS of them run at once.
fuzz_one() {
  local target=$1 seconds=$2 status=0
  # -timeout: an input that takes 10 s counts as a hang; -rss_limit_mb: as a memory blow-up.
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
    > "fuzz/logs/$target.log" 2>&1 || status=$?
  execs=$(grep -m1 '^stat::number_of_executed_units' "fuzz/logs/$target.log" | awk '{print $2}')
  found=$(ls "fuzz/artifacts/$target" 2>/dev/null | wc -l)
  echo "{\"target\": \"$target\", \"seconds\": $seconds, \"executions\": ${execs:-0}, \"exit\": $status, \"findings\": $found}"
}
export -f fuzz_one
# Built once up front, so the parallel runs do not race to build.
cargo +nightly fuzz build
printf '%s\n' answer legacy text config | xargs -P "${FUZZ_JOBS:-1}" -I{} bash -c "fuzz_one {} $seconds"
