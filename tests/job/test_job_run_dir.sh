#!/usr/bin/env bash
# The run directory: made only once the config holds (a refused config
# leaves nothing behind), checked for being makeable before the setup, and
# held by one job at a time (a second job on it exits 2 naming the holder,
# and writes nothing there; the lock goes with the holder's process).
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"

# Refused during the setup (after the layout): no run directory.
tiny_config "$TMP/bad.json" prompt_data=\"$TMP/none.jsonl\"
expect_exit "a missing prompt_data is refused" 2 "field 'prompt_data'" "$BIN" "$TMP/bad.json" --output-dir "$TMP/r1"
[ ! -e "$TMP/r1" ]
check "the refused config left no run directory" $?
expect_exit "two ranks: a missing prompt_data is refused" 2 "field 'prompt_data'" \
  mpirun_np 2 "$BIN" "$TMP/bad.json" --output-dir "$TMP/r2"
[ ! -e "$TMP/r2" ]
check "two ranks: the refused config left no run directory" $?

tiny_config "$TMP/kv.json" prompt_data=\"$TMP/mock.jsonl\" kv_cache_tokens=1000000000
expect_exit "a KV cache budget beyond the machine's memory is refused" 2 \
  "'kv_cache_tokens': the rank on $(hostname) would take" "$BIN" "$TMP/kv.json" --output-dir "$TMP/r3"
[ ! -e "$TMP/r3" ]
check "the refused KV budget left no run directory" $?

cp -r inputs/tiny_model "$TMP/huge_model"
python3 - "$TMP/huge_model/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["intermediate_size"] = 2000000000  # terabytes of training state
json.dump(c, open(sys.argv[1], "w"))
PY
tiny_config "$TMP/huge.json" prompt_data=\"$TMP/mock.jsonl\" model=\"$TMP/huge_model\"
expect_exit "a training state beyond the machine's memory is refused" 2 \
  "fields 'model', 'max_tokens_per_gpu' and 'rollout_batch_size': the rank on $(hostname) would take" \
  "$BIN" "$TMP/huge.json" --output-dir "$TMP/r4"
[ ! -e "$TMP/r4" ]
check "the refused model left no run directory" $?
tiny_config "$TMP/acts.json" prompt_data=\"$TMP/mock.jsonl\" max_tokens_per_gpu=2000000000
expect_exit "micro-batch activations beyond the machine's memory are refused" 2 \
  "activations of 2000000000 tokens" "$BIN" "$TMP/acts.json" --output-dir "$TMP/r5"

# An output_dir that cannot be made: refused before the model loads.
touch "$TMP/file"
tiny_config "$TMP/ok.json" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=4 global_batch_size=16 sft_num_epoch=1 \
  num_rollout=3 save_interval=1
expect_exit "an --output-dir under a file is refused, naming the option" 2 \
  "ok.json: --output-dir: $TMP/file: exists and is not a directory" "$BIN" "$TMP/ok.json" --output-dir "$TMP/file/run"
tiny_config "$TMP/under_file.json" prompt_data=\"$TMP/mock.jsonl\" output_dir=\"$TMP/file/run\"
expect_exit "an output_dir under a file is refused, naming the field" 2 \
  "under_file.json: field 'output_dir': $TMP/file: exists and is not a directory" "$BIN" "$TMP/under_file.json"
tiny_config "$TMP/cache_file.json" prompt_data=\"$TMP/mock.jsonl\" llm_cache_dir=\"$TMP/file\"
expect_exit "an llm_cache_dir that is a file is refused, naming the field" 2 \
  "cache_file.json: field 'llm_cache_dir': $TMP/file: exists and is not a directory" \
  "$BIN" "$TMP/cache_file.json" --output-dir "$TMP/cache_run"
[ ! -e "$TMP/cache_run" ]; check "the refused run made no run directory" $?
# SFT conversations longer than the model's context (here 256 tokens): refused at start, naming the
# trace (the file's line, or the oracle's task)
mkdir -p "$TMP/short"
cp inputs/tiny_model/* "$TMP/short/"
python3 -c "import json, sys; c = json.load(open(sys.argv[1])); c['max_position_embeddings'] = 256
json.dump(c, open(sys.argv[1], 'w'))" "$TMP/short/config.json"
tiny_config "$TMP/short_oracle.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=\"oracle\" model=\"$TMP/short\"
expect_exit "an oracle trace longer than the model's context is refused" 2 \
  "field 'sft_data': the oracle trace of task create_task_1: " "$BIN" "$TMP/short_oracle.json" --output-dir "$TMP/so"
tiny_config "$TMP/short_sft.json" prompt_data=\"$TMP/mock.jsonl\" model=\"$TMP/short\"
expect_exit "an SFT file's trace longer than the model's context is refused" 2 \
  "longer than the model's context (max_position_embeddings 256)" "$BIN" "$TMP/short_sft.json" --output-dir "$TMP/ss"
[ ! -e "$TMP/so" ] && [ ! -e "$TMP/ss" ]; check "the refused runs made no run directory" $?
# an eval job's output directory, the same for its own outputs
eval_config "$TMP/eval_kind.json" small
mkdir -p "$TMP/ekind"; touch "$TMP/ekind/eval"
expect_exit "an eval job's output directory whose eval is a file is refused" 2 "--output-dir: $TMP/ekind/eval" \
  "$BIN" "$TMP/eval_kind.json" --output-dir "$TMP/ekind"
# What the run directory holds, each of the wrong kind: refused before any work, nothing made there.
for entry in ckpt rollouts tb metrics.jsonl; do
  rm -rf "$TMP/kind"; mkdir -p "$TMP/kind"
  if [ "$entry" = metrics.jsonl ]; then mkdir "$TMP/kind/$entry"; else touch "$TMP/kind/$entry"; fi
  expect_exit "a run directory whose $entry is of the wrong kind is refused" 2 "--output-dir: $TMP/kind/$entry" \
    "$BIN" "$TMP/ok.json" --output-dir "$TMP/kind"
  made=$(find "$TMP/kind" -mindepth 1 ! -name "$entry" ! -name .lock | wc -l)
  check "nothing made beside it ($made)" "$made"
done

# A directory another process holds (its description in the lock file).
holder=$(hold_run_dir "$TMP/held")
expect_exit "a held run directory is refused, naming the holder" 2 \
  "$TMP/held is in use by another job (grpo job other.json, pid 1 on n001" \
  mpirun_np 2 "$BIN" "$TMP/ok.json" --output-dir "$TMP/held"
left=$(ls -A "$TMP/held" | grep -v '^\.lock' | wc -l)
check "the refused job wrote nothing in the held directory ($left)" "$left"
eval_config "$TMP/eval.json" small output_dir=\"$TMP/held\"
expect_exit "an eval job into a held directory is refused" 2 "is in use by another job" "$BIN" "$TMP/eval.json"
kill $holder
wait $holder 2>/dev/null

# A job's own lock: a second job started while it runs is refused; the
# first, stopped meanwhile, goes on and ends well.
"$BIN" "$TMP/ok.json" --output-dir "$TMP/run" >"$TMP/log.a" 2>&1 &
first=$!
for _ in $(seq 1 3000); do grep -qs "pid $first on" "$TMP/run/.lock" && break; sleep 0.02; done
kill -STOP $first
expect_exit "a second job on a running job's directory is refused" 2 "is in use by another job (grpo job $TMP/ok.json, pid $first" \
  "$BIN" "$TMP/ok.json" --output-dir "$TMP/run"
kill -CONT $first
wait $first
check "the running job ends well" $?
# the lock went with the first job: the same command again starts (resumes)
expect_exit "the directory is free again once the job ended" 0 "" "$BIN" "$TMP/ok.json" --output-dir "$TMP/run"

# export's output directory is checked before the checkpoint is read
expect_exit "export into a file is refused" 2 "export: --output: $TMP/file: exists and is not a directory" \
  "$BIN" export --checkpoint "$TMP/run" --output "$TMP/file"
expect_exit "export under a missing directory is refused" 2 "export: --output: the directory $TMP/no: No such file" \
  "$BIN" export --checkpoint "$TMP/run" --output "$TMP/no/model"
mkdir -p "$TMP/half/model.safetensors"
expect_exit "export over a folder named as its weights is refused" 2 \
  "export: --output: $TMP/half/model.safetensors: is a directory" \
  "$BIN" export --checkpoint "$TMP/run" --output "$TMP/half"
[ ! -e "$TMP/half/config.json" ]; check "the refused export wrote no config.json" $?
expect_exit "export into a new directory" 0 "" "$BIN" export --checkpoint "$TMP/run" --output "$TMP/model"
finish test_job_run_dir
