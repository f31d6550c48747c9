#!/usr/bin/env bash
# The host-memory plan checked at start (rl/job_memory.h): each rank's
# weights, training state, activations and KV cache, summed over the ranks
# sharing a node, against the limit (here TAU2_MEMORY_LIMIT); the micro-batch
# size it counts is the longest sequence the job can train on; a longer
# trajectory met during training is checked again before it runs.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"
host=$(hostname)

# with_limit LIMIT COMMAND...: COMMAND (a function too) with TAU2_MEMORY_LIMIT
# in its environment and its ranks'.
with_limit() {
  local limit=$1; shift
  export TAU2_MEMORY_LIMIT=$limit
  "$@"
  local rc=$?
  unset TAU2_MEMORY_LIMIT
  return $rc
}

# plan_mib: the MiB a refused run's message says the ranks would take.
plan_mib() {
  sed -n 's/.* would take \([0-9.]*\) MiB.*/\1/p' "$TMP/err" | head -1
}

expect_exit "a malformed TAU2_MEMORY_LIMIT is refused" 2 \
  "TAU2_MEMORY_LIMIT: '12Q' is not a memory size" with_limit 12Q "$BIN" inputs/tiny.json \
  --output-dir "$TMP/r0"

# One rank over the limit: refused before anything loads, naming the parts.
tiny_config "$TMP/cfg.json" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=2 global_batch_size=8
expect_exit "one rank over the limit is refused" 2 \
  "fields 'model', 'max_tokens_per_gpu' and 'rollout_batch_size': the rank on $host would take" \
  with_limit 1M "$BIN" "$TMP/cfg.json" --output-dir "$TMP/r1"
grep -qF "more than the 1.0 MiB of memory it may use" "$TMP/err"
check "the message gives the limit" $?
for part in "weights" "training state" "activations of 16384 tokens" "KV cache"; do
  grep -qF "$part " "$TMP/err"
  check "the message gives the $part" $?
done
[ ! -e "$TMP/r1" ]
check "the refused plan left no run directory" $?
one=$(plan_mib)

# Two ranks on this node: their plans add up.
expect_exit "two ranks over the limit are refused, summed" 2 "the 2 ranks of this job on $host would take" \
  with_limit 1M mpirun_np 2 "$BIN" "$TMP/cfg.json" --output-dir "$TMP/r2"
two=$(plan_mib)
python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if 1.5 * a < b < 2.5 * a else 1)" \
  "$one" "$two"
check "two ranks plan about twice one rank's memory ($one, $two MiB)" $?

# A limit between one rank's plan and two ranks' sum: one rank gets past
# the check (as far as a run directory another process holds), two do not.
limit=$(python3 -c "import sys; print('%.1fM' % ((float(sys.argv[1]) + float(sys.argv[2])) / 2))" "$one" "$two")
holder=$(hold_run_dir "$TMP/held")
expect_exit "one rank within the limit passes the check" 2 "is in use by another job" \
  with_limit $limit "$BIN" "$TMP/cfg.json" --output-dir "$TMP/held"
grep -qF "host memory: 1 rank on $host plan $one MiB of ${limit%M} MiB" "$TMP/out"
check "the plan is printed at start" $?
expect_exit "two ranks within one rank's limit are refused" 2 "the 2 ranks of this job on $host would take" \
  with_limit $limit mpirun_np 2 "$BIN" "$TMP/cfg.json" --output-dir "$TMP/held"
kill $holder
wait $holder 2>/dev/null

# An eval job: each engine rank's full weights and KV cache.
eval_config "$TMP/eval.json" small output_dir=\"$TMP/e1\"
expect_exit "an eval job over the limit is refused" 2 \
  "fields 'model' and 'kv_cache_tokens' (or the datasets' sizes): the rank on $host would take" \
  with_limit 1M "$BIN" "$TMP/eval.json"
[ ! -e "$TMP/e1" ]
check "the refused eval job left no output directory" $?

# The local user's server ranks are counted on their node: the user
# model's fp32 weights and the server's KV cache, from its config.json
# before anything loads (here a Qwen3-4B-shaped config without weights:
# about 15 GiB of weights, refused under 8 GiB with the user model named).
tiny_config "$TMP/local.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=1 \
  n_samples_per_prompt=2 global_batch_size=2 user=\"local\" user_sim_ranks=1
expect_exit "a trainer and a user-simulator rank over the limit are refused, summed" 2 \
  "'rollout_batch_size': the 2 ranks of this job on $host would take" \
  with_limit 1M mpirun_np 2 "$BIN" "$TMP/local.json" --output-dir "$TMP/u1"
mkdir -p "$TMP/user4b"
python3 - "$TAU2_SOURCE_DIR/inputs/tiny_model/config.json" "$TMP/user4b/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
         num_key_value_heads=8, head_dim=128, vocab_size=151936, eos_token_id=151645)
json.dump(c, open(sys.argv[2], "w"))
PY
tiny_config "$TMP/local4b.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=1 \
  n_samples_per_prompt=2 global_batch_size=2 user=\"local\" user_sim_ranks=1 user_model=\"$TMP/user4b\"
expect_exit "a 4B user model's server is refused by its plan, before it loads" 2 \
  "and 'user_model': the 2 ranks of this job on $host would take" \
  with_limit 8G mpirun_np 2 "$BIN" "$TMP/local4b.json" --output-dir "$TMP/u2"
grep -qE "weights 1[56]\.[0-9] GiB" "$TMP/err"
check "the message counts the user model's weights" $?
[ ! -e "$TMP/u1" ] && [ ! -e "$TMP/u2" ]
check "the refused plans left no run directory" $?
eval_config "$TMP/eval_local.json" small output_dir=\"$TMP/e2\" user=\"local\" user_sim_ranks=1 \
  user_model=\"$TAU2_SOURCE_DIR/inputs/tiny_model\"
expect_exit "an eval job's engine and user-simulator rank are summed" 2 \
  "and 'kv_cache_tokens' (or the datasets' sizes): the 2 ranks of this job on $host would take" \
  with_limit 1M mpirun_np 2 "$BIN" "$TMP/eval_local.json"
grep -qF "'user_model'" "$TMP/err"
check "the eval job's message names the user model" $?

# The activations counted are for the longest sequence the job trains on
# when it exceeds max_tokens_per_gpu: an episode's prompt and budget...
tiny_config "$TMP/long.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null max_tokens_per_gpu=64 \
  rollout_max_response_len=1024
expect_exit "a GRPO job counts its prompt and episode budget" 2 \
  "fields 'model', 'rollout_max_response_len' and 'rollout_batch_size'" \
  with_limit 1M "$BIN" "$TMP/long.json" --output-dir "$TMP/r3"
tokens=$(sed -n 's/.*activations of \([0-9]*\) tokens.*/\1/p' "$TMP/err")
[ "${tokens:-0}" -gt 1024 ]
check "the counted sequence is longer than the episode budget ($tokens tokens)" $?
# ... or the SFT data's longest conversation (a retail one of inputs/tiny_tasks.jsonl)
tiny_config "$TMP/sft.json" max_tokens_per_gpu=64 rollout_max_response_len=64
expect_exit "an SFT phase counts its longest conversation" 2 "fields 'model', 'sft_data' and 'rollout_batch_size'" \
  with_limit 1M "$BIN" "$TMP/sft.json" --output-dir "$TMP/r4"

# A trajectory longer than counted at start (here a user turn longer than
# the one-token turn budget the opening allows): checked again before the
# update, and refused with the sizes when the plan no longer fits.
head -1 "$TMP/mock.jsonl" >"$TMP/one.jsonl"
tiny_config "$TMP/turn.json" prompt_data=\"$TMP/one.jsonl\" sft_data=null rollout_max_turn_len=1 \
  rollout_max_response_len=1 max_tokens_per_gpu=1 num_rollout=1 rollout_batch_size=1 n_samples_per_prompt=2 \
  global_batch_size=2
expect_exit "(the plan of the short-turn job)" 2 "would take" with_limit 1M "$BIN" "$TMP/turn.json" \
  --output-dir "$TMP/r5"
limit=$(python3 -c "import sys; print('%.1fM' % (float(sys.argv[1]) + 0.1))" "$(plan_mib)")
expect_exit "a longer trajectory that no longer fits ends the job with the sizes" 1 \
  "tokens in $TMP/r5/rollouts/step_000000.h5 is longer than the" \
  with_limit $limit "$BIN" "$TMP/turn.json" --output-dir "$TMP/r5"
grep -qF "lower 'rollout_max_response_len'" "$TMP/err"
check "the message names the field to lower" $?
# the cpu_mirror device's own activations are host memory, checked the same way
tiny_config "$TMP/turnm.json" prompt_data=\"$TMP/one.jsonl\" sft_data=null rollout_max_turn_len=1 \
  rollout_max_response_len=1 max_tokens_per_gpu=1 num_rollout=1 rollout_batch_size=1 n_samples_per_prompt=2 \
  global_batch_size=2 train_device=\"cpu_mirror\"
expect_exit "(the plan of the short-turn job on the cpu_mirror device)" 2 "would take" \
  with_limit 1M "$BIN" "$TMP/turnm.json" --output-dir "$TMP/r7"
limit=$(python3 -c "import sys; print('%.1fM' % (float(sys.argv[1]) + 0.1))" "$(plan_mib)")
expect_exit "on the cpu_mirror device too, a longer trajectory that no longer fits ends the job" 1 \
  "tokens in $TMP/r7/rollouts/step_000000.h5 is longer than the" \
  with_limit $limit "$BIN" "$TMP/turnm.json" --output-dir "$TMP/r7"
expect_exit "with room for it the same job runs" 0 "" "$BIN" "$TMP/turn.json" --output-dir "$TMP/r6"
finish test_job_memory
