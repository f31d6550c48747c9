#!/usr/bin/env bash
# Oracle episodes + evaluation per second per core, tau2_hpc against
# τ²-bench's Python measured in the same run.
#   TAU2_SRC=/path/to/tau2-bench/src bash benchmarks/run_bench_oracle.sh [build-dir]
# Without TAU2_SRC only tau2_hpc is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
data=${TAU2_DATA_DIR:-../shared/tau2-data}
anchor=()
if [ -n "${TAU2_SRC:-}" ]; then
  python3 benchmarks/bench_oracle_tau2.py --tau2-src "$TAU2_SRC" --data-dir "$data" --seconds "${SECONDS_PER_DOMAIN:-5}" \
    > "$build/tau2_anchor.json"
  anchor=(--anchor "$build/tau2_anchor.json")
fi
"$build/bench_oracle" --data-dir "$data" --seconds "${SECONDS_PER_DOMAIN:-5}" "${anchor[@]}"
