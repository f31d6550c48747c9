#!/usr/bin/env bash
# Multi-rank jobs small enough for the sanitizer run (scripts/test.sh with
# TAU2_SANITIZE=1 leaves out the long job tests): what they check at scale,
# here on 2 ranks with a few short steps.
#  1. Colocated, DP 2: one SFT step, then two GRPO steps, a checkpoint after
#     every step. It exits 0; the metrics log has one row per step with
#     finite losses and every episode of every step; each checkpoint loads.
#  2. The same run stopped by SIGUSR1 to one rank as soon as it is set up
#     exits 0 after its first step or two with a checkpoint; rerunning the
#     command resumes from it, leaves no temporary file, and ends with the
#     weights of the uninterrupted run.
#  3. Separate, 1 trainer rank + 1 rollout rank, max_staleness 1: two GRPO
#     steps, each rollout at most one weight version old.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"

# rows_sane RUN_DIR N_SFT N_GRPO EPISODES: one row per step, in order, with
# finite training numbers; every GRPO step trained on all its episodes (every
# sampled token, and no more tokens than were rolled out: the untrained tail
# of each episode is left out).
rows_sane() {
  python3 - "$1/metrics.jsonl" "$2" "$3" "$4" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n_sft, n_grpo, episodes = map(int, sys.argv[2:5])
phases = [r["phase"] for r in rows]
assert phases == ["sft"] * n_sft + ["grpo"] * n_grpo, phases
assert [r["step"] for r in rows] == list(range(1, len(rows) + 1)), [r["step"] for r in rows]
for r in rows:
    for k in ("train/loss", "train/entropy", "train/grad_norm"):
        assert math.isfinite(r[k]), (r["step"], k, r[k])
    assert r["train/tokens"] > 0, r
    if r["phase"] == "grpo":
        assert r["rollout/episodes"] == episodes and r["rollout/infrastructure_errors"] == 0, r
        assert r["rollout/sampled_tokens"] > 0 and r["train/trained_tokens"] == r["rollout/sampled_tokens"], r
        assert r["train/tokens"] <= r["rollout/tokens"], r
assert n_sft == 0 or rows[0]["train/loss"] > 0
PY
}

tiny_config "$TMP/cfg.json" prompt_data=\"$TMP/mock.jsonl\" sft_num_epoch=1 sft_global_batch_size=4 \
  rollout_batch_size=2 n_samples_per_prompt=2 global_batch_size=4 num_rollout=2 rollout_max_response_len=192 \
  rollout_max_turn_len=48 save_interval=1 keep_checkpoints=5

# 1. the uninterrupted run
job_ok "colocated SFT + GRPO on 2 ranks exits 0" "$TMP/log.a" 2 "$BIN" "$TMP/cfg.json" --output-dir "$TMP/a"
rows_sane "$TMP/a" 1 2 4
check "its metrics: one sane row per step" $?
n=$(ls "$TMP"/a/ckpt/step_*.h5 2>/dev/null | wc -l)
check "a checkpoint per step ($n)" $((n != 3))
checkpoints_load "$BIN" "$TMP/a"

# 2. stopped by SIGUSR1 once the job is set up (the handler is in place from
# the start), then resumed
stop_and_resume "" 2 "$BIN" "$TMP/cfg.json" "$TMP/b" "^run directory" "stopped by signal 10 at step [12];"
rows_sane "$TMP/b" 1 2 4
check "the resumed run's metrics: one sane row per step" $?
left=$(find "$TMP/b" -name "*.tmp*" | wc -l)
check "no temporary file left ($left)" "$left"
same_weights "$BIN" "final weights after stop and resume bit-identical to the uninterrupted run" "$TMP/a" "$TMP/b"

# 3. separate trainer and rollout ranks, asynchronous
tiny_config "$TMP/sep.json" prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=2 n_samples_per_prompt=2 \
  global_batch_size=4 num_rollout=2 rollout_max_response_len=192 rollout_max_turn_len=48 \
  colocate=false data_parallel=1 rollout_groups=1 max_staleness=1 save_interval=0
job_ok "separate mode (1 trainer + 1 rollout rank) exits 0" "$TMP/log.s" 2 "$BIN" "$TMP/sep.json" --output-dir "$TMP/s"
rows_sane "$TMP/s" 0 2 4
check "its metrics: one sane row per step" $?
python3 - "$TMP/s/metrics.jsonl" <<'PY'
import json, sys
st = [json.loads(l)["rollout/staleness"] for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if st and all(0 <= x <= 1 for x in st) else 1)
PY
check "every rollout at most one weight version old" $?
"$BIN" export --checkpoint "$TMP/s" --output "$TMP/es" --dtype F32 >/dev/null
check "the separate run's final checkpoint exports" $?
finish test_job_small_ranks
