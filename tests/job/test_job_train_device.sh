#!/usr/bin/env bash
# train_device: the job's bookkeeping for a training step on a device with
# memory of its own (the GPU), checked on the CPU with "cpu_mirror", whose
# weights, gradients and moments are a copy synchronized exactly where the
# GPU's are. Every synchronization in place gives the "cpu" run bit for bit.
#  1. Colocated, DP 2 (gradients summed where the device holds them), KL reference
#     (a device of its own, refreshed from the SFT result): SFT then GRPO on
#     "cpu" and on "cpu_mirror" give the same metrics at every step and the
#     same final weights. The mirror runs with offload_train: before each
#     rollout its weights, gradients and moments are NaN (the moments kept
#     on the host), so anything the next update did not bring back would
#     show in the numbers.
#  2. The mirror run stopped by SIGUSR1 and rerun: the checkpoint holds the
#     mirror's moments and the resume sends them back (the final weights are
#     the uninterrupted "cpu" run's).
#  3. A device this build or machine cannot run, or an unknown one, is an
#     input error (exit 2) naming the field.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"

common=(prompt_data=\"$TMP/mock.jsonl\" sft_num_epoch=1 sft_global_batch_size=4 rollout_batch_size=2
  n_samples_per_prompt=2 global_batch_size=4 num_rollout=2 rollout_max_response_len=192 rollout_max_turn_len=48
  kl_coef=0.1 save_interval=1 keep_checkpoints=5)
tiny_config "$TMP/cpu.json" "${common[@]}" train_device=\"cpu\"
tiny_config "$TMP/mirror.json" "${common[@]}" train_device=\"cpu_mirror\" offload_train=true

# 1. the same run on both devices
job_ok "cpu: colocated SFT + GRPO with a KL reference on 2 ranks exits 0" "$TMP/log.a" 2 "$BIN" "$TMP/cpu.json" \
  --output-dir "$TMP/a"
job_ok "cpu_mirror: the same run exits 0" "$TMP/log.m" 2 "$BIN" "$TMP/mirror.json" --output-dir "$TMP/m"
python3 - "$TMP/a/metrics.jsonl" "$TMP/m/metrics.jsonl" <<'PY'
import json, sys
def rows(p):
    return [json.loads(l) for l in open(p) if l.strip()]
a, m = rows(sys.argv[1]), rows(sys.argv[2])
assert [r["phase"] for r in a] == ["sft", "grpo", "grpo"], [r["phase"] for r in a]
assert len(a) == len(m), (len(a), len(m))
keys = ("train/loss", "train/entropy", "train/grad_norm", "train/tokens", "rollout/raw_reward", "rollout/sampled_tokens",
        "train/kl_loss")
for ra, rm in zip(a, m):
    for k in keys:
        if k in ra or k in rm:
            assert ra.get(k) == rm.get(k), (ra["step"], k, ra.get(k), rm.get(k))
# the mirror offloaded before each rollout (and brought its state back)
assert all("perf/offload_time" in r for r in m if r["phase"] == "grpo"), m
assert not any("perf/offload_time" in r for r in a), a
PY
check "cpu_mirror: every step's metrics equal cpu's, each GRPO step offloaded" $?
same_weights "$BIN" "cpu_mirror: final weights bit-identical to cpu's" "$TMP/a" "$TMP/m"

# 2. the mirror run stopped once set up, then resumed
stop_and_resume "cpu_mirror: " 2 "$BIN" "$TMP/mirror.json" "$TMP/b" "^run directory" \
  "stopped by signal 10 at step [12];"
same_weights "$BIN" "cpu_mirror: final weights after stop and resume bit-identical to cpu's" "$TMP/a" "$TMP/b"

# 3. devices that cannot run here
tiny_config "$TMP/bad.json" "${common[@]}" train_device=\"gpu\"
"$BIN" "$TMP/bad.json" --output-dir "$TMP/bad" >"$TMP/out" 2>"$TMP/err"
check "an unknown train_device exits 2" $(($? != 2))
grep -q "field 'train_device'" "$TMP/err"
check "the message names the field" $?
n_gpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$n_gpu" -lt 2 ]; then
  tiny_config "$TMP/cuda.json" "${common[@]}" train_device=\"cuda\" tensor_parallel=2
  mpirun_np 2 "$BIN" "$TMP/cuda.json" --output-dir "$TMP/cuda" >"$TMP/out" 2>"$TMP/err"
  check "train_device cuda at tensor_parallel 2 without a GPU per rank (or without CUDA) exits 2" $(($? != 2))
  grep -q "field 'train_device': .*\(no CUDA backend\|no CUDA device\|the same GPU\)" "$TMP/err"
  check "the message says why" $?
  [ -e "$TMP/cuda/ckpt/latest" ]
  check "nothing was trained" $((1 - $?))
fi
tiny_config "$TMP/obad.json" "${common[@]}" colocate=false kl_coef=0 offload_train=true
expect_exit "offload_train without colocate is an input error" 2 \
  "field 'offload_train': expected false when colocate is false" "$BIN" "$TMP/obad.json" --output-dir "$TMP/obad"
tiny_config "$TMP/rbad.json" "${common[@]}" rollout_device=\"tpu\"
"$BIN" "$TMP/rbad.json" --output-dir "$TMP/rbad" >"$TMP/out" 2>"$TMP/err"
check "an unknown rollout_device exits 2" $(($? != 2))
grep -q "field 'rollout_device'" "$TMP/err"
check "the message names the field" $?
if ! nvidia-smi -L >/dev/null 2>&1; then
  tiny_config "$TMP/rcuda.json" "${common[@]}" rollout_device=\"cuda\"
  "$BIN" "$TMP/rcuda.json" --output-dir "$TMP/rcuda" >"$TMP/out" 2>"$TMP/err"
  check "rollout_device cuda without a GPU (or without CUDA) exits 2" $(($? != 2))
  grep -q "field 'rollout_device': .*\(no CUDA backend\|no CUDA device\)" "$TMP/err"
  check "the message says why" $?
fi
finish test_job_train_device
