#!/usr/bin/env bash
# The "local" user: the job's last user_sim_ranks ranks serve the user
# model over MPI (llm/mpi_server.h) and the rollout engines ask them through
# the same client as an api user.
#  1. GRPO, colocated: 1 training rank + 1 user-simulator rank; the user answers.
#  2. An eval job with 2 engines + 1 server, and with 1 engine + 1 server:
#     the episodes complete and the results are the same (each request is
#     seeded, the server's replies do not depend on what else it runs).
#  3. A user model that does not load: exit 2 naming it, nothing written.
# Two and four episodes: small enough for the sanitizer run.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"

tiny_config "$TMP/grpo.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=1 \
  n_samples_per_prompt=2 global_batch_size=2 num_rollout=1 rollout_max_response_len=192 rollout_max_turn_len=48 \
  user=\"local\" user_sim_ranks=1 user_max_tokens=24 user_temperature=0.7
job_ok "GRPO with the local user (2 ranks: 1 trains, 1 serves) exits 0" "$TMP/log.g" 2 "$BIN" "$TMP/grpo.json" --output-dir "$TMP/g"
turns=$(metric "$TMP/g" grpo rollout/user_turns 0 2>/dev/null)
episodes=$(metric "$TMP/g" grpo rollout/episodes 0 2>/dev/null)
python3 -c "import sys; sys.exit(0 if float('${turns:-0}') > 0 and float('${episodes:-0}') == 2 else 1)"
check "2 episodes with user turns from the user-simulator rank (turns ${turns:-none})" $?

python3 - "$TMP/eval.json" "$TAU2_SOURCE_DIR" "$TMP/mock.jsonl" <<'PY'
import json, sys
out, src, mock = sys.argv[1:4]
json.dump({"job": "eval", "model": f"{src}/inputs/tiny_model", "seed": 3, "max_steps": 12,
           "rollout_max_turn_len": 48, "user": "local", "user_sim_ranks": 1, "user_max_tokens": 24,
           "user_temperature": 0.7,
           "eval": {"defaults": {"max_response_len": 192, "n_samples_per_eval_prompt": 2},
                    "datasets": [{"name": "mock", "path": f"{mock}@[0:2]"}]}}, open(out, "w"))
PY
job_ok "eval job with the local user on 3 ranks exits 0" "$TMP/log.e3" 3 "$BIN" "$TMP/eval.json" --output-dir "$TMP/e3"
mpirun_np 2 "$BIN" "$TMP/eval.json" --output-dir "$TMP/e2" >"$TMP/log.e2" 2>&1
check "eval job with the local user on 2 ranks exits 0" $?
python3 - "$TMP/e3/eval/model/mock" "$TMP/e2/eval/model/mock" <<'PY'
import json, sys
a = json.load(open(sys.argv[1] + "/results.json"))
b = json.load(open(sys.argv[2] + "/results.json"))
assert a["total_episodes"] == 4 and a["infrastructure_errors"] == 0, (a["total_episodes"], a["infrastructure_errors"])
ta = [json.loads(l) for l in open(sys.argv[1] + "/trajectories.jsonl")]
users = sum(1 for t in ta for m in t["messages"] if m["role"] == "user")
assert users >= 4, users
assert a == b
assert open(sys.argv[1] + "/trajectories.jsonl").read() == open(sys.argv[2] + "/trajectories.jsonl").read()
PY
check "the local user's episodes complete, the same on 2 engines and on 1" $?
# A user model that does not load (its weights cut short): the server rank
# says so, naming the field, and the job ends (exit 2) before writing
# anything, in a GRPO job and in an eval job.
mkdir -p "$TMP/cut"
cp inputs/tiny_model/* "$TMP/cut/"
truncate -s 400000 "$TMP/cut/model.safetensors"
tiny_config "$TMP/grpo_cut.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=1 \
  n_samples_per_prompt=2 global_batch_size=2 num_rollout=1 user=\"local\" user_sim_ranks=1 \
  user_model=\"$TMP/cut\"
expect_exit "GRPO: a local user model that does not load is refused" 2 \
  "field 'user_model' (the local user's model): $TMP/cut/model.safetensors" \
  mpirun_np 2 "$BIN" "$TMP/grpo_cut.json" --output-dir "$TMP/gc"
[ ! -e "$TMP/gc" ]
check "the refused GRPO job left no run directory" $?
[ "$(grep -c "the local user's model" "$TMP/err")" -eq 1 ]
check "the refusal is said once" $?
# the user's model is the policy's (no user_model): said once, by the rank that loads it first
tiny_config "$TMP/grpo_cut2.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=1 \
  n_samples_per_prompt=2 global_batch_size=2 num_rollout=1 user=\"local\" user_sim_ranks=1 model=\"$TMP/cut\"
expect_exit "GRPO: the policy's model (the user's too) that does not load is refused" 2 \
  "field 'model'" mpirun_np 2 "$BIN" "$TMP/grpo_cut2.json" --output-dir "$TMP/gc2"
[ "$(grep -c "$TMP/cut/model.safetensors" "$TMP/err")" -eq 1 ]
check "the refusal is said once" $?
python3 - "$TMP/eval.json" "$TMP/eval_cut.json" "$TMP/cut" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["user_model"] = sys.argv[3]
json.dump(c, open(sys.argv[2], "w"))
PY
expect_exit "eval: a local user model that does not load is refused" 2 \
  "field 'user_model' (the local user's model): $TMP/cut/model.safetensors" \
  mpirun_np 2 "$BIN" "$TMP/eval_cut.json" --output-dir "$TMP/ec"
[ ! -e "$TMP/ec" ]
check "the refused eval job left no output directory" $?
finish test_job_ranks_local_user
