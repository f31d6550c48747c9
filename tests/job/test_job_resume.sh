#!/usr/bin/env bash
# A rank killed with SIGKILL mid-run: rerunning the same command resumes
# from the last checkpoint, no checkpoint is corrupt, no temporary file is
# left, and the final weights are bit-identical to an uninterrupted run
# (CPU, synchronous, 2 ranks; SFT then GRPO, a checkpoint every step).
# Then a clean stop: SIGUSR1 to one rank (as Slurm's --signal sends ahead of
# the time limit) ends the job after its current step with a checkpoint and
# exit 0, and the rerun ends with the same weights.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"

tiny_config "$TMP/cfg.json" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=4 global_batch_size=16 sft_num_epoch=1 num_rollout=3 save_interval=1 keep_checkpoints=20
mpirun_np 2 "$BIN" "$TMP/cfg.json" --output-dir "$TMP/a" >"$TMP/log.a" 2>&1
check "uninterrupted run exits 0" $?

# The second run: kill one rank once a checkpoint past the SFT phase exists.
mpirun_np 2 "$BIN" "$TMP/cfg.json" --output-dir "$TMP/b" >"$TMP/log.b1" 2>&1 &
launcher=$!
killed=$(signal_rank_when KILL $launcher "tau2_hpc $TMP/cfg.json --output-dir $TMP/b" \
  grep -qs "step_00000[5-9]" "$TMP/b/ckpt/latest")
wait $launcher
b1=$?
check "a rank was killed mid-run" $((1 - killed))
check "the killed run failed" $((b1 == 0))
mpirun_np 2 "$BIN" "$TMP/cfg.json" --output-dir "$TMP/b" >"$TMP/log.b2" 2>&1
check "rerunning the same command exits 0" $?
grep -q "resumed from" "$TMP/log.b2"
check "the rerun resumed from a checkpoint" $?
grep -q "differs from the one it was saved with" "$TMP/log.b2"
check "the rerun with the same config warns of no change" $((1 - $?))
left=$(find "$TMP/b" -name "*.tmp*" | wc -l)
check "no temporary file left ($left)" "$left"
checkpoints_load "$BIN" "$TMP/b"
same_weights "$BIN" "final weights bit-identical to the uninterrupted run" "$TMP/a" "$TMP/b"

# A marker that names no checkpoint: exit 2 naming it, and the run's files
# untouched (starting over would overwrite its metrics and checkpoints).
cp -r "$TMP/a" "$TMP/d"
echo step_999999.h5 >"$TMP/d/ckpt/latest"
expect_exit "a dangling ckpt/latest is refused" 2 "step_999999.h5, which cannot be read" \
  mpirun_np 2 "$BIN" "$TMP/cfg.json" --output-dir "$TMP/d"
cmp -s "$TMP/a/metrics.jsonl" "$TMP/d/metrics.jsonl"
check "metrics.jsonl untouched by the refused run" $?
# ... or one that does not load: truncated by hand
latest=$(cat "$TMP/a/ckpt/latest")
cp -r "$TMP/a" "$TMP/t"
truncate -s 100000 "$TMP/t/ckpt/$latest"
expect_exit "a truncated checkpoint is refused" 2 "--output-dir and field 'model': resume: " \
  mpirun_np 2 "$BIN" "$TMP/cfg.json" --output-dir "$TMP/t"
cmp -s "$TMP/a/metrics.jsonl" "$TMP/t/metrics.jsonl"
check "metrics.jsonl untouched by the refused run" $?
expect_exit "an empty --output-dir is refused" 2 "--output-dir: expected a directory name" \
  "$BIN" "$TMP/cfg.json" --output-dir ""

# Resuming with a changed config is allowed, and said.
cp -r "$TMP/a" "$TMP/e"
tiny_config "$TMP/cfg_lr.json" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=4 global_batch_size=16 sft_num_epoch=1 num_rollout=3 save_interval=1 keep_checkpoints=20 lr=0.5
expect_exit "a resumed run with a changed config warns, naming the key" 0 "differs from the one it was saved with, in: lr" \
  mpirun_np 2 "$BIN" "$TMP/cfg_lr.json" --output-dir "$TMP/e"

# SIGUSR1 to one rank during the GRPO phase.
tiny_config "$TMP/cfg_c.json" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=4 global_batch_size=16 sft_num_epoch=1 num_rollout=3 save_interval=0
# save_interval 0: the checkpoint the rerun resumes from is the stop's own
stop_and_resume "" 2 "$BIN" "$TMP/cfg_c.json" "$TMP/c" "^step [45]/" "stopped by signal 10 at step"
same_weights "$BIN" "final weights after a clean stop bit-identical to the uninterrupted run" "$TMP/a" "$TMP/c"
finish test_job_resume
