#!/usr/bin/env bash
# Rollout vs train time and the trainer's idle fraction, synchronous vs
# asynchronous, on the tiny run (inputs/tiny.json without its SFT phase):
# 3 ranks, 1 trainer + 2 rollout engines, max_staleness 0 and 1. The anchor
# is the synchronous run of the same config measured here; the line to read
# is the wall-clock ratio and the trainer's idle fraction.
#
#   bash benchmarks/bench_job.sh [BUILD_DIR] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
STEPS=${2:-6}
BIN=$BUILD/tau2_hpc
MPI=(mpiexec --oversubscribe)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive TAU2_SOURCE_DIR=$PWD
source tests/job/lib.sh
for s in 0 1; do
  tiny_config "$TMP/s$s.json" sft_data=null num_rollout=$STEPS colocate=false data_parallel=1 rollout_groups=2 \
    max_staleness=$s save_interval=0 rollout_max_response_len=768 rollout_max_turn_len=96
  start=$(date +%s.%N)
  "${MPI[@]}" -n 3 "$BIN" "$TMP/s$s.json" --output-dir "$TMP/r$s" >"$TMP/log$s" 2>&1
  end=$(date +%s.%N)
  python3 -c "print($end - $start)" >"$TMP/wall$s"
done
python3 - "$TMP" <<'PY'
import json, sys
d = sys.argv[1]
res = {}
for s in (0, 1):
    rows = [json.loads(l) for l in open(f"{d}/r{s}/metrics.jsonl") if l.strip()]
    g = [r for r in rows if r["phase"] == "grpo"]
    roll = sum(r["perf/rollout_time"] for r in g)
    train = sum(r["perf/train_time"] for r in g)
    wait = sum(r["perf/trainer_wait_time"] for r in g)
    wall = float(open(f"{d}/wall{s}").read())
    res[s] = wall
    print(f"max_staleness {s}: {len(g)} steps, wall {wall:.1f} s | rollout {roll:.1f} s, train {train:.1f} s, "
          f"trainer idle {wait:.1f} s = {100 * wait / max(wait + train, 1e-9):.0f}% of its time | "
          f"staleness {[r['rollout/staleness'] for r in g]}")
print(f"async / sync wall-clock: {res[1] / res[0]:.2f}x ({res[0] / res[1]:.2f}x faster)")
PY
