#!/usr/bin/env bash
# The api user's models per prompt row and their rotation (doc/user_sim.md,
# "Which model plays the customer"), in a GRPO job and an eval job, against
# the fault server's scripted mode (the user ends each conversation at once,
# the judge says every assertion is met):
#  1. GRPO: a row's user_model / user_api_key_var beat the config's; the
#     config's list rotates over the samples of a group; each episode's
#     task_ref in the rollout buffer names its user model;
#  2. eval: the row beats the dataset's metadata_overrides, which beat the
#     config; trajectories.jsonl and results.json name each episode's model;
#  3. errors at start (exit 2) naming the file, the row and the field: a key
#     variable that is unset, user fields on a row for a gold user, a
#     per-row model for the local user, a list of models for the local user.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
export TAU2_TEST_ROW_KEY="sk-row-$$-$RANDOM-never-written"

"$TAU2_FAULT_SERVER" --port 0 --script met >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
PORT=""
for _ in $(seq 1 300); do
  PORT=$(grep -oE '127\.0\.0\.1:[0-9]+' "$TMP/server.log" | head -1 | cut -d: -f2)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ]
check "the scripted fault server starts" $?
URL="http://127.0.0.1:$PORT/v1"

cat >"$TMP/rows.jsonl" <<'EOF'
{"index": 0, "metadata": {"domain": "mock", "task_split": "base", "task_id": "create_task_1"}}
{"index": 1, "metadata": {"domain": "mock", "task_split": "base", "task_id": "update_task_1", "user_model": "row-x"}}
{"index": 2, "metadata": {"domain": "mock", "task_split": "base", "task_id": "create_task_1_nl_eval", "user_model": ["row-a", "row-b"], "user_api_key_var": "TAU2_TEST_ROW_KEY"}}
EOF

# 1. GRPO, one step over the three rows, two samples each
tiny_config "$TMP/grpo.json" prompt_data=\"$TMP/rows.jsonl\" sft_data=null rollout_batch_size=3 \
  n_samples_per_prompt=2 global_batch_size=6 num_rollout=1 rollout_max_response_len=64 rollout_max_turn_len=16 \
  user=\"api\" user_model='["cfg-a", "cfg-b"]' user_base_url=\"$URL\" user_timeout_s=10
job_ok "GRPO with per-row user models exits 0" "$TMP/log.g" 1 "$BIN" "$TMP/grpo.json" --output-dir "$TMP/g"
h5dump -d /task_ref "$TMP"/g/rollouts/step_*.h5 >"$TMP/refs.txt" 2>&1
python3 - "$TMP/refs.txt" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
refs = [json.loads(m) for m in re.findall(r'^\s*\(\d+\): "(\{.*\})",?$', text, re.M)]
got = sorted((r["task_id"], r["sample"], r["user_model"]) for r in refs)
want = sorted([("create_task_1", 0, "cfg-a"), ("create_task_1", 1, "cfg-b"),
               ("update_task_1", 0, "row-x"), ("update_task_1", 1, "row-x"),
               ("create_task_1_nl_eval", 0, "row-a"), ("create_task_1_nl_eval", 1, "row-b")])
print(got)
sys.exit(0 if got == want else 1)
PY
check "each episode's task_ref names the model of its row and sample" $?

# 2. eval: the dataset's override between the row and the config
python3 - "$TMP/eval.json" "$TAU2_SOURCE_DIR" "$TMP/rows.jsonl" "$URL" <<'PY'
import json, sys
out, src, rows, url = sys.argv[1:5]
json.dump({"job": "eval", "model": f"{src}/inputs/tiny_model", "seed": 3, "max_steps": 10,
           "rollout_max_turn_len": 16, "user": "api", "user_model": "cfg-a", "user_base_url": url,
           "eval": {"defaults": {"max_response_len": 64, "n_samples_per_eval_prompt": 2},
                    "datasets": [{"name": "rows", "path": rows,
                                  "metadata_overrides": {"user_model": ["ds-a", "ds-b"]}}]}},
          open(out, "w"), indent=1)
PY
job_ok "eval with per-row user models exits 0" "$TMP/log.e" 1 "$BIN" "$TMP/eval.json" --output-dir "$TMP/e"
python3 - "$TMP/e/eval/model/rows" <<'PY'
import json, sys
d = sys.argv[1]
want = {("create_task_1", 0): "ds-a", ("create_task_1", 1): "ds-b", ("update_task_1", 0): "row-x",
        ("update_task_1", 1): "row-x", ("create_task_1_nl_eval", 0): "row-a", ("create_task_1_nl_eval", 1): "row-b"}
traj = [json.loads(l) for l in open(f"{d}/trajectories.jsonl")]
res = json.load(open(f"{d}/results.json"))["results"]
ok = True
for rows in (traj, res):
    got = {(t["task_id"], t["sample"]): t.get("user_model") for t in rows}
    print(got)
    ok = ok and got == want
# the NL task's assertions were judged (scripted: met) and counted in its reward
nl = [t for t in traj if t["task_id"] == "create_task_1_nl_eval"]
ok = ok and all(t["reward_info"]["nl_assertion_judged"] for t in nl)
sys.exit(0 if ok else 1)
PY
check "trajectories.jsonl and results.json name each episode's user model" $?

kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null
hits=$(grep -rl -- "$TAU2_TEST_ROW_KEY" "$TMP/g" "$TMP/e" "$TMP/log.g" "$TMP/log.e" 2>/dev/null | wc -l)
check "the row's API key is in no file the runs wrote ($hits)" "$hits"

# 3. errors at start
printf '{"index": 0, "metadata": {"task_id": "create_task_1"}}\n{"index": 1, "metadata": {"task_id": "update_task_1", "user_api_key_var": "TAU2_TEST_UNSET_KEY_%s"}}\n' $$ >"$TMP/bad_key.jsonl"
unset "TAU2_TEST_UNSET_KEY_$$"
tiny_config "$TMP/bad_key.json" prompt_data=\"$TMP/bad_key.jsonl\" default_domain=\"mock\" sft_data=null \
  rollout_batch_size=2 n_samples_per_prompt=2 global_batch_size=4 num_rollout=1 user=\"api\" \
  user_model=\"m\" user_base_url=\"$URL\"
expect_exit "a row's unset key variable" 2 "bad_key.jsonl:2: metadata.user_api_key_var: the environment variable" \
  "$BIN" "$TMP/bad_key.json" --output-dir "$TMP/x1"

tiny_config "$TMP/gold.json" prompt_data=\"$TMP/rows.jsonl\" sft_data=null rollout_batch_size=2 \
  n_samples_per_prompt=2 global_batch_size=4 num_rollout=1 user=\"gold\"
expect_exit "user fields on a row for the gold user" 2 \
  "rows.jsonl:2: metadata.user_model: per-row user fields need user \"api\" (the user is \"gold\")" \
  "$BIN" "$TMP/gold.json" --output-dir "$TMP/x2"

tiny_config "$TMP/local.json" prompt_data=\"$TMP/rows.jsonl\" sft_data=null rollout_batch_size=2 \
  n_samples_per_prompt=2 global_batch_size=4 num_rollout=1 user=\"local\" user_sim_ranks=1
expect_exit "a per-row model for the local user" 2 \
  "rows.jsonl:2: metadata.user_model: the \"local\" user cannot change models per row" \
  mpirun_np 2 "$BIN" "$TMP/local.json" --output-dir "$TMP/x3"

tiny_config "$TMP/local_list.json" prompt_data=\"$TMP/rows.jsonl\" sft_data=null rollout_batch_size=2 \
  n_samples_per_prompt=2 global_batch_size=4 num_rollout=1 user=\"local\" user_sim_ranks=1 \
  user_model='["a", "b"]'
expect_exit "a list of models for the local user" 2 "field 'user_model': expected one model directory" \
  "$BIN" "$TMP/local_list.json" --output-dir "$TMP/x4"
finish test_job_user_routes
