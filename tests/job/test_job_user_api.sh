#!/usr/bin/env bash
# GRPO rollouts with the policy model as the user, then with the api user
# (an OpenAI-compatible user simulator):
#  1. against `tau2_hpc serve` on 127.0.0.1 (the tiny model plays the
#     customer): the episodes complete and the user answered;
#  2. against a loopback endpoint that drops connections, answers 429 with
#     Retry-After, 500 and 503, slow and malformed replies: the run
#     completes, every episode is either in the rollout statistics or
#     counted as an infrastructure error, and the API key is in no file
#     the run wrote.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"
export TAU2_TEST_USER_KEY="sk-test-$$-$RANDOM-never-written"

# start_server LOG CMD...: run a server in the background, wait for its
# "listening on"/"serving" line; sets SERVER_PID and SERVER_PORT.
start_server() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  SERVER_PORT=""
  for _ in $(seq 1 300); do
    SERVER_PORT=$(grep -oE '(127\.0\.0\.1|localhost):[0-9]+' "$log" | head -1 | cut -d: -f2)
    [ -n "$SERVER_PORT" ] && return 0
    sleep 0.1
  done
  return 1
}

# 0. the policy itself plays the customer
tiny_config "$TMP/policy.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=2 \
  n_samples_per_prompt=2 global_batch_size=4 num_rollout=1 rollout_max_response_len=192 rollout_max_turn_len=48 \
  user=\"policy\" user_max_tokens=24 user_temperature=0.7
"$BIN" "$TMP/policy.json" --output-dir "$TMP/p" >"$TMP/log.p" 2>&1
check "GRPO with the policy as the user exits 0" $?
turns=$(metric "$TMP/p" grpo rollout/user_turns 0 2>/dev/null)
python3 -c "import sys; sys.exit(0 if float('${turns:-0}') > 0 else 1)"
check "the policy user answered (turns ${turns:-none})" $?

# 1. tau2_hpc serve as the user simulator
start_server "$TMP/serve.log" "$BIN" serve --model inputs/tiny_model --port 0 --host 127.0.0.1
check "tau2_hpc serve starts" $?
tiny_config "$TMP/serve.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=2 \
  n_samples_per_prompt=2 global_batch_size=4 num_rollout=1 rollout_max_response_len=192 rollout_max_turn_len=48 \
  user=\"api\" user_model=\"tiny\" user_base_url=\"http://127.0.0.1:$SERVER_PORT/v1\" \
  user_api_key_var=\"TAU2_TEST_USER_KEY\" user_max_tokens=24 user_temperature=0.7
"$BIN" "$TMP/serve.json" --output-dir "$TMP/a" >"$TMP/log.a" 2>&1
check "GRPO with the api user against tau2_hpc serve exits 0" $?
turns=$(metric "$TMP/a" grpo rollout/user_turns 0 2>/dev/null)
episodes=$(metric "$TMP/a" grpo rollout/episodes 0 2>/dev/null)
python3 -c "import sys; sys.exit(0 if float('${turns:-0}') > 0 and float('${episodes:-0}') == 4 else 1)"
check "4 episodes completed with user turns from the server (turns ${turns:-none})" $?
kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null

# 2. a faulty endpoint
start_server "$TMP/fault.log" "$TAU2_FAULT_SERVER" --port 0 --seed 7 \
  --mix ok=6,drop=1,429=1,500=1,503=1,slow=1,malformed=1 --retry-after 1 --slow 3
check "the fault server starts" $?
tiny_config "$TMP/fault.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=4 \
  n_samples_per_prompt=2 global_batch_size=8 num_rollout=2 rollout_max_response_len=160 rollout_max_turn_len=32 \
  user=\"api\" user_model=\"sim\" user_base_url=\"http://127.0.0.1:$SERVER_PORT/v1\" \
  user_api_key_var=\"TAU2_TEST_USER_KEY\" user_timeout_s=1 user_max_retries=2 llm_cache_dir=\"$TMP/b/llm_cache\"
job_ok "GRPO against the faulty endpoint exits 0" "$TMP/log.b" 1 "$BIN" "$TMP/fault.json" --output-dir "$TMP/b"
python3 - "$TMP/b/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip() and '"grpo"' in l]
ok = len(rows) == 2
for r in rows:
    n = r["rollout/episodes"] + r["rollout/infrastructure_errors"]
    print("step", r["rollout/step"], "episodes", r["rollout/episodes"], "infrastructure errors",
          r["rollout/infrastructure_errors"], "user turns", r["rollout/user_turns"])
    ok = ok and n == 8
sys.exit(0 if ok else 1)
PY
check "every episode finished or was counted as an infrastructure error" $?
kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null
grep -c . "$TMP/fault.log" >/dev/null
hits=$(grep -rl -- "$TAU2_TEST_USER_KEY" "$TMP/a" "$TMP/b" "$TMP/log.a" "$TMP/log.b" 2>/dev/null | wc -l)
check "the API key is in no file the runs wrote ($hits)" "$hits"
finish test_job_user_api
