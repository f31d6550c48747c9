#!/usr/bin/env bash
# Not yet registered with ctest (the GRPO criterion does not hold yet; see
# doc/job.md, "The tiny run"). Run it by hand:
#   TAU2_SOURCE_DIR=$PWD TAU2_MPIEXEC="mpiexec --oversubscribe -n" OMP_NUM_THREADS=1 \
#     OMPI_MCA_btl_vader_single_copy_mechanism=none bash tests/job/learning_tiny.sh build/tau2_hpc
#
# The product's own demo learns: `mpirun -np 8 tau2_hpc inputs/tiny.json`
# (a tiny Qwen3 on CPU; SFT on oracle traces, then GRPO on four mock tasks
# and one retail task). Asserted, with the numbers stated here:
#   SFT    the mean loss of the last epoch is at most 1/5 of the first's
#   GRPO   the mean raw reward of the last two steps is at least 0.2 above
#          that of the first two (seed 1234)
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh

mpirun_np 8 "$BIN" inputs/tiny.json --output-dir "$TMP/run" >"$TMP/log" 2>&1
rc=$?
check "tiny run exits 0" $rc
[ $rc -eq 0 ] || tail -30 "$TMP/log"
python3 - "$TMP/run/metrics.jsonl" inputs/tiny_tasks.jsonl <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n_conv = sum(1 for l in open(sys.argv[2]) if l.strip())
sft = [r["train/loss"] for r in rows if r["phase"] == "sft"]
grpo = [r["rollout/raw_reward"] for r in rows if r["phase"] == "grpo"]
first, last = sum(sft[:n_conv]) / n_conv, sum(sft[-n_conv:]) / n_conv
r0, r1 = sum(grpo[:2]) / 2, sum(grpo[-2:]) / 2
print("SFT loss: first epoch %.4f, last epoch %.4f (%.1fx)" % (first, last, first / last))
print("GRPO raw reward: first two steps %.3f, last two %.3f (+%.3f)" % (r0, r1, r1 - r0))
print("per step:", " ".join("%.3f" % r for r in grpo))
ok = first >= 5 * last and r1 - r0 >= 0.2
sys.exit(0 if ok else 1)
PY
check "SFT loss falls 5x and GRPO raises the raw reward by 0.2" $?
finish test_job_learning
