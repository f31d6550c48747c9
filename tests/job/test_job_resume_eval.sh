#!/usr/bin/env bash
# The eval job of test_job_eval.sh on 1 and 2 ranks: the same results (an
# episode depends on its seed stream, not on its engine); and a 2-rank run
# killed with SIGKILL mid-evaluation: the rerun resumes from the finished
# tasks and ends with the results of the uninterrupted run. Then periodic
# evaluation in a GRPO run (eval_interval): its metrics rows, TensorBoard
# events and report.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh

eval_config "$TMP/eval.json" full

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
    # τ²-bench's results file: the same, but for when it ran
    def untimed(path):
        t = json.load(open(path))
        t.pop("timestamp")
        for sim in t["simulations"]:
            assert sim["start_time"] and sim["end_time"], path
            for k in ["timestamp", "start_time", "end_time", "duration"]:
                sim.pop(k)
        return t
    dom = "airline" if name == "airline" else "mock"
    assert untimed(f"{sys.argv[1]}/{name}/tau2_{dom}.json") == untimed(f"{sys.argv[2]}/{name}/tau2_{dom}.json"), name
PY
}
same_results "$TMP/a/eval/model" "$TMP/b/eval/model"
check "2 ranks give the results of 1" $?

# SIGKILL one rank after the first round is saved; the rerun resumes.
mpirun_np 2 "$BIN" "$TMP/eval.json" --output-dir "$TMP/c" >"$TMP/log.c1" 2>&1 &
launcher=$!
two_done() { [ -f "$TMP/c/eval/model/episodes.jsonl" ] && [ "$(wc -l <"$TMP/c/eval/model/episodes.jsonl")" -ge 2 ]; }
killed=$(signal_rank_when KILL $launcher "tau2_hpc $TMP/eval.json --output-dir $TMP/c" two_done)
wait $launcher
check "a rank was killed mid-evaluation" $((1 - killed))
if [ -f "$TMP/c/eval/model/mock/results.json" ]; then resumed_early=1; else resumed_early=0; fi
check "the killed evaluation wrote no results" $resumed_early
mpirun_np 2 "$BIN" "$TMP/eval.json" --output-dir "$TMP/c" >"$TMP/log.c2" 2>&1
check "rerunning exits 0" $?
grep -q "resuming, [1-9][0-9]* of 5 tasks done" "$TMP/log.c2"
rc=$?; check "the rerun resumed ($(grep -o 'resuming.*' "$TMP/log.c2"))" $rc
same_results "$TMP/a/eval/model" "$TMP/c/eval/model"
check "resumed results equal the uninterrupted run's" $?
lines=$(wc -l <"$TMP/c/eval/model/episodes.jsonl")
check "episodes.jsonl holds each task once ($lines lines)" $((lines != 5))

# Periodic evaluation in a GRPO run: before the first step, every
# eval_interval steps and after the last, into the training metrics.
mock_tasks "$TMP/mock.jsonl"
tiny_config "$TMP/grpo.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=2 n_samples_per_prompt=2 global_batch_size=4 num_rollout=3 eval_interval=2 rollout_max_response_len=400 rollout_max_turn_len=96 max_steps=16 \
  eval="{\"round_episodes\": 4, \"defaults\": {\"n_samples_per_eval_prompt\": 2}, \"datasets\": [{\"name\": \"mock2\", \"path\": \"$TMP/mock.jsonl@[0:2]\"}]}"
"$BIN" "$TMP/grpo.json" --output-dir "$TMP/g" >"$TMP/log.g" 2>&1
check "GRPO run with eval_interval exits 0" $?
steps=$(python3 -c "
import json
print(' '.join(str(r['step']) for r in map(json.loads, open('$TMP/g/metrics.jsonl')) if r.get('phase') == 'eval'))")
check "evaluations at steps 0, 2, 3 ($steps)" $([ "$steps" = "0 2 3" ]; echo $?)
test -f "$TMP/g/eval/step_000003/mock2/results.json"
check "the last evaluation's results exist" $?

# The run's TensorBoard events, read by an independent protobuf decoder.
PY3=/usr/bin/python3; [ -x "$PY3" ] || PY3=python3
for f in "$TMP"/g/tb/events.out.tfevents.*; do $PY3 tests/read_tb_events.py "$f"; done >"$TMP/tb.jsonl"
check "the TensorBoard events decode" $?
python3 - "$TMP/tb.jsonl" "$TMP/g/metrics.jsonl" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
got = {(e["step"], e["tag"]): e["value"] for e in ev if "tag" in e}
rows = [json.loads(l) for l in open(sys.argv[2])]
n = 0
for r in rows:
    for k, v in r.items():
        if k == "step" or not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        assert abs(got[(r["step"], k)] - v) <= 1e-6 * max(1.0, abs(v)), (r["step"], k)
        n += 1
assert ("eval/mock2-pass@1" in {t for _, t in got}) and n > 50, n
PY
check "every numeric metric is a TensorBoard scalar at its step" $?

# The report of the real run: evaluations and trajectories in the page.
"$BIN" report "$TMP/g" >"$TMP/out" 2>&1
check "report of the GRPO run exits 0" $?
grep -q "step_000003" "$TMP/g/report.html" && grep -q "mock2" "$TMP/g/report.html"
check "the report holds the evaluations" $?

# The eval job on the run's checkpoint (a run directory: its ckpt/latest).
eval_config "$TMP/ckpt_eval.json" small checkpoint=\"$TMP/g\"
"$BIN" "$TMP/ckpt_eval.json" --output-dir "$TMP/ce" >"$TMP/log.ce" 2>&1
check "eval job on a checkpoint exits 0" $?
python3 - "$TMP/ce/eval/step_000003/mock/results.json" "$TMP/g/ckpt/step_000003.h5" "$TMP/ce/metrics.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["step"] == 3 and r["checkpoint"] == sys.argv[2], (r["step"], r["checkpoint"])
row = [json.loads(l) for l in open(sys.argv[3])][-1]
assert row["step"] == 3 and row["eval/tag"] == "step_000003", row
PY
check "its results name the checkpoint and its step" $?

finish test_job_resume_eval
