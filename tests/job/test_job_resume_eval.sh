#!/usr/bin/env bash
# The eval job of test_job_eval.sh on 1 and 2 ranks: the same results (an
# episode depends on its seed stream, not on its engine); and a 2-rank run
# killed with SIGKILL mid-evaluation: the rerun resumes from the finished
# tasks and ends with the results of the uninterrupted run.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh

# eval_config OUT [KEY=JSON...]: the test's eval job.
eval_config() {
  local out=$1; shift
  python3 - "$TAU2_SOURCE_DIR" "$out" "$TMP" "$@" <<'PY'
import json, sys
src, out, tmp = sys.argv[1:4]
cfg = {
  "job": "eval", "model": f"{src}/inputs/tiny_model", "seed": 7, "max_steps": 16,
  "rollout_max_turn_len": 96,
  "eval": {
    "round_episodes": 2,
    "defaults": {"temperature": 0.8, "max_response_len": 400, "n_samples_per_eval_prompt": 4},
    "datasets": [
      {"name": "mock", "path": f"{src}/inputs/tiny_tasks.jsonl@[0:2]"},
      {"name": "mock_t1", "path": f"{src}/inputs/tiny_tasks.jsonl@[-2:-1]", "temperature": 1.0,
       "n_samples_per_eval_prompt": 1},
      {"name": "airline", "path": f"{tmp}/ids.jsonl@[1:]",
       "n_samples_per_eval_prompt": 2,
       "metadata_overrides": {"domain": "airline", "task_split": "test", "max_turns": 8}}]}}
for kv in sys.argv[4:]:
    k, v = kv.split("=", 1)
    cfg[k] = json.loads(v)
json.dump(cfg, open(out, "w"), indent=1)
PY
}
printf '{"index": 0, "metadata": {"task_id": "2"}}\n{"index": 1, "metadata": {"task_id": "6"}}\n{"index": 2, "metadata": {"task_id": "8"}}\n' >"$TMP/ids.jsonl"
eval_config "$TMP/eval.json"

"$BIN" "$TMP/eval.json" --output-dir "$TMP/a" >"$TMP/log.a" 2>&1
check "eval job on 1 rank exits 0" $?

# 2 ranks: the same results (an episode depends on its seed stream, not on its engine).
mpirun_np 2 "$BIN" "$TMP/eval.json" --output-dir "$TMP/b" >"$TMP/log.b" 2>&1
check "eval job on 2 ranks exits 0" $?
same_results() {
  python3 - "$1" "$2" <<'PY'
import json, sys
for name in ["mock", "mock_t1", "airline"]:
    a = json.load(open(f"{sys.argv[1]}/{name}/results.json"))
    b = json.load(open(f"{sys.argv[2]}/{name}/results.json"))
    assert a == b, name
    ta = open(f"{sys.argv[1]}/{name}/trajectories.jsonl").read()
    tb = open(f"{sys.argv[2]}/{name}/trajectories.jsonl").read()
    assert ta == tb, name
PY
}
same_results "$TMP/a/eval/model" "$TMP/b/eval/model"
check "2 ranks give the results of 1" $?

# SIGKILL one rank after the first round is saved; the rerun resumes.
mpirun_np 2 "$BIN" "$TMP/eval.json" --output-dir "$TMP/c" >"$TMP/log.c1" 2>&1 &
launcher=$!
killed=0
for _ in $(seq 1 3000); do
  if [ -f "$TMP/c/eval/model/episodes.jsonl" ] && [ "$(wc -l <"$TMP/c/eval/model/episodes.jsonl")" -ge 2 ]; then
    pid=$(pgrep -f -n "tau2_hpc $TMP/eval.json --output-dir $TMP/c" | head -1)
    if [ -n "$pid" ]; then kill -9 "$pid"; killed=1; fi
    break
  fi
  sleep 0.05
done
wait $launcher
check "a rank was killed mid-evaluation" $((1 - killed))
if [ -f "$TMP/c/eval/model/mock/results.json" ]; then resumed_early=1; else resumed_early=0; fi
check "the killed evaluation wrote no results" $resumed_early
mpirun_np 2 "$BIN" "$TMP/eval.json" --output-dir "$TMP/c" >"$TMP/log.c2" 2>&1
check "rerunning exits 0" $?
grep -q "resuming, [1-9][0-9]* of 5 tasks done" "$TMP/log.c2"
check "the rerun resumed ($(grep -o 'resuming.*' "$TMP/log.c2"))" $?
same_results "$TMP/a/eval/model" "$TMP/c/eval/model"
check "resumed results equal the uninterrupted run's" $?
lines=$(wc -l <"$TMP/c/eval/model/episodes.jsonl")
check "episodes.jsonl holds each task once ($lines lines)" $((lines != 5))

finish test_job_resume_eval
