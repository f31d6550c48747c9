#!/usr/bin/env bash
# The product's own demo learns: `mpirun -np 8 tau2_hpc inputs/tiny.json`
# (a tiny Qwen3 on CPU; SFT on the oracle traces of four mock tasks and one
# retail task, then GRPO on the same five tasks, seed 1234). Asserted, with
# the numbers stated here:
#   SFT    the mean loss of the last epoch is at most 1/5 of the first's
#   GRPO   the mean raw reward on the five training tasks rises by at least
#          0.2 between the evaluation before the first GRPO step and the one
#          after the last (16 episodes per task at the rollout temperature;
#          both evaluations draw the same random numbers)
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh

job_ok "tiny run exits 0" "$TMP/log" 8 "$BIN" inputs/tiny.json --output-dir "$TMP/run"
python3 - "$TMP/run/metrics.jsonl" inputs/tiny_tasks.jsonl <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n_conv = sum(1 for l in open(sys.argv[2]) if l.strip())
sft = [r["train/loss"] for r in rows if r["phase"] == "sft"]
evals = [r for r in rows if r["phase"] == "eval"]
grpo = [r["rollout/raw_reward"] for r in rows if r["phase"] == "grpo"]
first, last = sum(sft[:n_conv]) / n_conv, sum(sft[-n_conv:]) / n_conv
e0, e1 = evals[0]["eval/tiny_tasks"], evals[-1]["eval/tiny_tasks"]
print("SFT loss: first epoch %.4f, last epoch %.4f (%.1fx)" % (first, last, first / last))
print("GRPO: training tasks' raw reward %.3f at step %d, %.3f at step %d (%+.3f)"
      % (e0, evals[0]["step"], e1, evals[-1]["step"], e1 - e0))
print("rollout raw reward per step:", " ".join("%.2f" % r for r in grpo))
ok_sft = first >= 5 * last
ok_grpo = len(evals) >= 2 and e1 - e0 >= 0.2
sys.exit(0 if ok_sft and ok_grpo else 1)
PY
check "SFT loss falls 5x and GRPO raises the training tasks' raw reward by 0.2" $?
finish test_job_learning
