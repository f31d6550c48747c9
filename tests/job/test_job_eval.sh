#!/usr/bin/env bash
# The eval job (doc/eval.md): several datasets (row slices, metadata
# overrides, per-dataset sampling, n = 4) on the mock domain and a real one;
# results.json, trajectories.jsonl and the metrics row, pass@k and pass^k
# recomputed from the episodes; datasets that cannot resolve are rejected
# at start naming the dataset. Then periodic evaluation in a GRPO run
# (eval_interval), its TensorBoard events and its report.
# test_job_resume_eval.sh runs the same evaluation on 2 ranks and through a kill.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh

eval_config "$TMP/eval.json" small

"$BIN" "$TMP/eval.json" --output-dir "$TMP/a" >"$TMP/log.a" 2>&1
check "eval job on 1 rank exits 0" $?
python3 - "$TMP/a/eval/model" "$TMP/a/metrics.jsonl" <<'PY' >"$TMP/check.a" 2>&1
import json, sys
from math import comb
d, metrics = sys.argv[1:3]
want = {"mock": (1, 4, "mock", "base"), "mock_t1": (1, 1, "mock", "base"), "airline": (1, 2, "airline", "test")}
row = [json.loads(l) for l in open(metrics)][-1]
assert row["phase"] == "eval" and row["step"] == 0, row
for name, (tasks, n, dom, split) in want.items():
    r = json.load(open(f"{d}/{name}/results.json"))
    assert r["total_tasks"] == tasks and r["n_samples"] == n, (name, r["total_tasks"], r["n_samples"])
    assert r["domain"] == dom and r["task_split"] == split, (name, r["domain"], r["task_split"])
    assert len(r["results"]) == tasks * n
    # slices: mock is row 0, mock_t1 the second-to-last row, airline row 1 of ids.jsonl
    ids = sorted({x["task_id"] for x in r["results"]})
    exp = {"mock": ["create_task_1"], "mock_t1": ["impossible_task_1"], "airline": ["6"]}[name]
    assert ids == exp, (name, ids)
    for k in ["checkpoint", "total_episodes", "successes", "pass_at_1", "avg_reward", "avg_steps",
              "avg_partial_score", "truncated_ratio", "termination_counts", "pass_at_k", "pass_hat_k"]:
        assert k in r, (name, k)
    # pass@k and pass^k from the per-episode successes, by the formulas
    per = {}
    for x in r["results"]:
        for k in ["task_id", "task_index", "reward", "success", "steps", "status", "error", "partial_score", "reward_info"]:
            assert k in x, (name, k)
        per.setdefault(x["task_id"], []).append(x["success"])
    for k in r["pass_at_k"]:
        kk = int(k)
        at = sum(1 - comb(len(v) - sum(v), kk) / comb(len(v), kk) for v in per.values()) / len(per)
        hat = sum(comb(sum(v), kk) / comb(len(v), kk) for v in per.values()) / len(per)
        assert abs(r["pass_at_k"][k] - at) < 1e-12 and abs(r["pass_hat_k"][k] - hat) < 1e-12, (name, k)
        assert abs(row[f"eval/{name}-pass@{k}"] - at) < 1e-12 and abs(row[f"eval/{name}-pass^{k}"] - hat) < 1e-12
    assert abs(row[f"eval/{name}"] - r["avg_reward"]) < 1e-12
    assert sum(row[f"eval/{name}/termination/{t}"] for t in r["termination_counts"]) == len(r["results"])
    assert name != "mock" or sorted(r["pass_at_k"]) == ["1", "2", "4"]
    traj = [json.loads(l) for l in open(f"{d}/{name}/trajectories.jsonl")]
    assert len(traj) == len(r["results"]) and all(t["messages"] for t in traj), name
    assert traj[0]["messages"][0]["role"] == "assistant", traj[0]["messages"][0]
print("ok")
PY
rc=$?; check "results.json, trajectories and metrics hold ($(tail -1 "$TMP/check.a"))" $rc

# τ²-bench's results file, one per domain of a dataset (here a dataset spans two): the Results and
# SimulationRun fields, the same episodes and rewards as results.json, τ²-bench's termination names, and
# pass^k from its simulations as τ²-bench computes it. (tests/check_tau2_results.py loads the same files
# with τ²-bench's own models where its sources are at hand.)
printf '%s\n' '{"index": 0, "metadata": {"domain": "mock", "task_split": "base", "task_id": "impossible_task_1"}}' \
  '{"index": 1, "metadata": {"domain": "airline", "task_split": "test", "task_id": "6"}}' \
  '{"index": 2, "metadata": {"domain": "mock", "task_split": "base", "task_id": "impossible_task_1"}}' >"$TMP/mixed.jsonl"
eval_config "$TMP/mixed.json" small max_steps=6 \
  eval="{\"defaults\": {\"n_samples_per_eval_prompt\": 2, \"max_response_len\": 120}, \"datasets\": [{\"name\": \"mixed\", \"path\": \"$TMP/mixed.jsonl\"}]}"
"$BIN" "$TMP/mixed.json" --output-dir "$TMP/m" >"$TMP/log.m" 2>&1
check "eval job on a two-domain dataset exits 0" $?
python3 - "$TMP/a/eval/model" "$TMP/m/eval/model" <<'PY' >"$TMP/check.t2" 2>&1
import json, os, sys
from math import comb
REASONS = {"user_stop", "agent_stop", "max_steps", "timeout", "too_many_errors", "agent_error", "user_error",
           "infrastructure_error", "context_window_exceeded", "unexpected_error"}
def check(d, name, domains):
    r = json.load(open(f"{d}/{name}/results.json"))
    files = sorted(f for f in os.listdir(f"{d}/{name}") if f.startswith("tau2_"))
    assert files == sorted(f"tau2_{x}.json" for x in domains), (name, files)
    seen = 0
    for dom in domains:
        t = json.load(open(f"{d}/{name}/tau2_{dom}.json"))
        info = t["info"]
        assert info["environment_info"]["domain_name"] == dom and info["environment_info"]["policy"], name
        assert info["num_trials"] == r["n_samples"] and info["max_steps"] > 0 and info["max_errors"] > 0
        assert info["agent_info"]["implementation"] and info["user_info"]["implementation"] == "gold_user"
        mine = [x for x in r["results"] if x["domain"] == dom]
        ids = [x["id"] for x in t["tasks"]]
        assert ids == list(dict.fromkeys(x["task_id"] for x in mine)), (name, dom, ids)
        sims = t["simulations"]
        assert len(sims) == len(mine) and len({s["id"] for s in sims}) == len(sims), (name, dom)
        for s, x in zip(sims, mine):
            assert s["task_id"] == x["task_id"] and s["trial"] == x["sample"], (name, s["id"])
            assert s["reward_info"]["reward"] == x["reward"] and s["reward_info"] == x["reward_info"], s["id"]
            assert s["termination_reason"] in REASONS, s["termination_reason"]
            want = "context_window_exceeded" if x["status"] == "truncated" else x["status"]
            assert s["termination_reason"] == want and s["info"]["status"] == x["status"], s["id"]
            assert s["messages"] and all("role" in m for m in s["messages"]), s["id"]
            assert s["start_time"] <= s["end_time"] and s["start_time"][:4].isdigit() and s["duration"] >= 0, s["id"]
        # pass^k as τ²-bench's metrics compute it: per task, comb(successes, k) / comb(trials, k)
        if len(domains) == 1:
            per = {}
            for s in sims:
                per.setdefault(s["task_id"], []).append(s["reward_info"]["reward"] > 1 - 1e-6)
            for k, v in r["pass_hat_k"].items():
                hat = sum(comb(sum(x), int(k)) / comb(len(x), int(k)) for x in per.values()) / len(per)
                assert abs(hat - v) < 1e-12, (name, k)
        seen += len(sims)
    assert seen == len(r["results"]), name
a, m = sys.argv[1:3]
for name, dom in [("mock", "mock"), ("mock_t1", "mock"), ("airline", "airline")]:
    check(a, name, [dom])
check(m, "mixed", ["mock", "airline"])
t = json.load(open(f"{m}/mixed/tau2_mock.json"))
assert [x["id"] for x in t["tasks"]] == ["impossible_task_1"] and len(t["simulations"]) == 4, "a task held by two rows"
print("ok")
PY
rc=$?; check "τ²-bench's results files hold ($(tail -1 "$TMP/check.t2"))" $rc
# replay --results scores every simulation of those files again: the rewards the eval recorded.
for f in "$TMP"/a/eval/model/*/tau2_*.json "$TMP"/m/eval/model/mixed/tau2_*.json; do
  "$BIN" replay --results "$f" >"$TMP/replayed.jsonl" 2>"$TMP/replayed.err"
  rc=$?; check "replay --results $(basename "$(dirname "$f")")/$(basename "$f") exits 0" $rc
  n=$(python3 -c "import json, sys; print(len(json.load(open(sys.argv[1]))['simulations']))" "$f")
  [ "$(grep -c '"equal": true' "$TMP/replayed.jsonl")" -eq "$n" ] &&
    grep -q "reward equal to the file's on $n, different on 0" "$TMP/replayed.err"
  rc=$?; check "replay --results: the $n rewards of $(basename "$f") again ($(cat "$TMP/replayed.err"))" $rc
done

# Datasets that cannot resolve, bad slices: exit 2 at start, naming the dataset.
printf '{"index": 0, "metadata": {"task_id": "2"}}\n' >"$TMP/nodomain.jsonl"
eval_config "$TMP/bad1.json" small eval="{\"datasets\": [{\"name\": \"multi_domain\", \"path\": \"$TMP/nodomain.jsonl\"}]}"
expect_exit "a dataset without a domain is named" 2 "eval dataset 'multi_domain': $TMP/nodomain.jsonl:1: metadata.domain: missing" \
  "$BIN" "$TMP/bad1.json" --output-dir "$TMP/x"
eval_config "$TMP/bad2.json" small eval="{\"datasets\": [{\"name\": \"a\", \"path\": \"$TMP/ids.jsonl@[0:x]\"}]}"
expect_exit "a malformed slice" 2 "field 'eval.datasets[0].path': expected" "$BIN" "$TMP/bad2.json" --output-dir "$TMP/x"
eval_config "$TMP/bad5.json" small eval="{\"datasets\": [{\"name\": \"..\", \"path\": \"$TMP/ids.jsonl\"}]}"
expect_exit "a dataset named '..' (a directory above its own)" 2 "field 'eval.datasets[0].name': expected" \
  "$BIN" "$TMP/bad5.json" --output-dir "$TMP/x"
eval_config "$TMP/bad3.json" small eval="{\"datasets\": [{\"name\": \"a\", \"path\": \"$TMP/ids.jsonl\", \"metadata_overrides\": {\"domain\": \"airline\", \"task_splt\": \"test\"}}]}"
expect_exit "an unknown override key, the nearest suggested" 2 "task_split" "$BIN" "$TMP/bad3.json" --output-dir "$TMP/x"
eval_config "$TMP/bad4.json" small eval="{\"datasets\": [{\"name\": \"a\", \"path\": \"$TMP/ids.jsonl\", \"metadata_overrides\": {\"domain\": \"airline\"}}]}"
expect_exit "a dataset without a task split is named" 2 "eval dataset 'a'" "$BIN" "$TMP/bad4.json" --output-dir "$TMP/x"
eval_config "$TMP/bad5.json" small rollout_tensor_parallel=2
expect_exit "engines of several ranks are refused" 2 "field 'rollout_tensor_parallel'" "$BIN" "$TMP/bad5.json" --output-dir "$TMP/x"
test ! -e "$TMP/x/eval"
check "a rejected config writes nothing" $?

# The eval job's own TensorBoard events and report.
PY3=/usr/bin/python3; [ -x "$PY3" ] || PY3=python3
for f in "$TMP"/a/tb/events.out.tfevents.*; do $PY3 tests/read_tb_events.py "$f"; done >"$TMP/tb.jsonl"
check "the eval job's TensorBoard events decode" $?
python3 - "$TMP/tb.jsonl" "$TMP/a/metrics.jsonl" <<'PY'
import json, sys
got = {(e["step"], e["tag"]): e["value"] for e in map(json.loads, open(sys.argv[1])) if "tag" in e}
row = [json.loads(l) for l in open(sys.argv[2])][-1]
for k, v in row.items():
    if k != "step" and isinstance(v, (int, float)):
        assert abs(got[(row["step"], k)] - v) <= 1e-6 * max(1.0, abs(v)), k
assert (0, "eval/mock-pass^4") in got
PY
check "the eval metrics are TensorBoard scalars" $?
"$BIN" report "$TMP/a" --output "$TMP/a.html" >"$TMP/out" 2>&1
check "report of the eval job's run exits 0" $?
grep -q "airline" "$TMP/a.html" && grep -q "impossible_task_1" "$TMP/a.html"
check "the eval report holds its datasets and trajectories" $?

finish test_job_eval
