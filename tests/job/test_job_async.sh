#!/usr/bin/env bash
# Separate trainer and rollout ranks (1 trainer + 2 rollout engines, 3
# ranks): synchronous (max_staleness 0) every step's rollout uses the newest
# weights; asynchronous (max_staleness 1) a step's rollout may use weights
# one step old and never older. A bad layout is refused before any work.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"

for s in 0 1; do
  tiny_config "$TMP/s$s.json" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=4 global_batch_size=16 sft_data=null num_rollout=3 rollout_max_response_len=512 rollout_max_turn_len=64 \
    colocate=false data_parallel=1 rollout_groups=2 max_staleness=$s save_interval=0
  job_ok "max_staleness $s run exits 0" "$TMP/log$s" 3 "$BIN" "$TMP/s$s.json" --output-dir "$TMP/r$s"
  python3 - "$TMP/r$s/metrics.jsonl" "$s" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
s = int(sys.argv[2])
st = [r["rollout/staleness"] for r in rows if r["phase"] == "grpo"]
print("staleness per step:", st)
ok = len(st) == 3 and all(0 <= x <= s for x in st) and (s == 0 or max(st) == s)
sys.exit(0 if ok else 1)
PY
  check "staleness within max_staleness $s" $?
done
# Separate mode after an SFT warm-up: the rollout ranks start GRPO at the
# trainers' step, and the KL reference is the warm-up's result, exported to
# ckpt/reference and read back by a run resumed in its GRPO phase.
sft_config() { # OUT NUM_ROLLOUT
  tiny_config "$1" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=4 global_batch_size=16 sft_num_epoch=2 num_rollout=$2 \
    rollout_max_response_len=512 rollout_max_turn_len=64 colocate=false data_parallel=1 rollout_groups=2 save_interval=1 kl_coef=0.1
}
sft_config "$TMP/sft.json" 2
job_ok "separate mode after SFT exits 0" "$TMP/logs" 3 "$BIN" "$TMP/sft.json" --output-dir "$TMP/rs"
python3 - "$TMP/rs/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sft = [r["step"] for r in rows if r["phase"] == "sft"]
grpo = [r["step"] for r in rows if r["phase"] == "grpo"]
print("sft steps", sft, "grpo steps", grpo)
sys.exit(0 if len(sft) == 8 and grpo == [9, 10] else 1)
PY
check "GRPO steps follow the SFT steps" $?
[ -f "$TMP/rs/ckpt/reference/model.safetensors" ] && [ -f "$TMP/rs/ckpt/reference/config.json" ]
check "the KL reference is exported when GRPO starts" $?
sft_config "$TMP/sft3.json" 3
job_ok "a longer run resumes in the GRPO phase with the exported reference" "$TMP/logs3" 3 "$BIN" "$TMP/sft3.json" --output-dir "$TMP/rs"
grep -q "resumed from .* at step 10 of 11" "$TMP/logs3"
check "it resumed at step 10" $?

tiny_config "$TMP/bad.json" colocate=false data_parallel=2 rollout_groups=2
expect_exit "a layout that does not fit is refused" 2 "does not fit" mpirun_np 3 "$BIN" "$TMP/bad.json" --output-dir "$TMP/bad"
finish test_job_async
