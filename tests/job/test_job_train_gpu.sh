#!/usr/bin/env bash
# train_device "cuda": the tiny job's updates on one GPU (bf16 products).
# Skipped (77) when the build has no CUDA backend or no GPU is visible: the
# job itself says so, as an input error naming train_device.
#  1. SFT then GRPO with a KL reference on one rank exits 0, every step's
#     numbers finite, the final checkpoint exports.
#  2. Its first SFT step (a forward pass before any update) has the CPU
#     run's loss within the bf16 bound of doc/cuda.md (relative 1e-2), and
#     the SFT loss falls on the GPU as on the CPU: the last SFT step below
#     0.8 of the first on both (8.32 -> 5.57 on the CPU), and the GPU's last
#     within 2e-2 of the CPU's (9e-4 under the CUDA emulation).
#  3. Stopped by SIGUSR1 and rerun, it resumes from the GPU's checkpoint
#     (moments brought to the host, sent back on resume) and finishes.
#  4. The whole run on one GPU: rollout_device "cuda" too (episodes on the
#     GPU inference engine, sampling on the GPU) exits 0 with finite numbers
#     and the same phases as the CPU run.
# Tensor and data parallel on several GPUs: test_job_train_gpu_tp.sh.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"

common=(prompt_data=\"$TMP/mock.jsonl\" sft_num_epoch=4 sft_global_batch_size=2 rollout_batch_size=2
  n_samples_per_prompt=2 global_batch_size=4 num_rollout=2 rollout_max_response_len=192 rollout_max_turn_len=48
  kl_coef=0.1 save_interval=1 keep_checkpoints=5)
tiny_config "$TMP/gpu.json" "${common[@]}" train_device=\"cuda\"
tiny_config "$TMP/cpu.json" "${common[@]}" train_device=\"cpu\"
tiny_config "$TMP/all.json" "${common[@]}" train_device=\"cuda\" rollout_device=\"cuda\"

"$BIN" "$TMP/gpu.json" --output-dir "$TMP/g" >"$TMP/log.g" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "field 'train_device': \(this build has no CUDA backend\|no CUDA device\)" "$TMP/log.g"; then
  echo "test_job_train_gpu: $(grep -o "field 'train_device': .*" "$TMP/log.g" | head -1): skipped"
  exit 77
fi
check "cuda: SFT + GRPO with a KL reference on one rank exits 0" $rc
[ $rc -eq 0 ] || tail -30 "$TMP/log.g"
# the trainers page-lock their host weights and moments (train_device.c)
! grep -q "did not page-lock" "$TMP/log.g"
check "cuda: the host weights and moments were page-locked" $?
job_ok "cpu: the same run exits 0" "$TMP/log.c" 1 "$BIN" "$TMP/cpu.json" --output-dir "$TMP/c"

gpu_vs_cpu "$TMP/g" "$TMP/c" '
err = abs(sg[0] - sc[0]) / abs(sc[0])
print(f"first SFT loss: cuda {sg[0]:.6f} cpu {sc[0]:.6f} (relative {err:.2e}); last: cuda {sg[-1]:.4f} cpu {sc[-1]:.4f}")
assert err <= 1e-2, err
assert sg[-1] < 0.8 * sg[0] and sc[-1] < 0.8 * sc[0], (sg, sc)
assert abs(sg[-1] - sc[-1]) <= 2e-2 * abs(sc[-1]), (sg, sc)
'
check "cuda: first SFT loss within 1e-2 of the CPU's, and the loss falls as on the CPU" $?
"$BIN" export --checkpoint "$TMP/g" --output "$TMP/eg" --dtype F32 >/dev/null
check "cuda: the final checkpoint exports" $?

stop_and_resume "cuda: " 1 "$BIN" "$TMP/gpu.json" "$TMP/b" "^step [3-6]/" "stopped by signal 10 at step"

job_ok "cuda + rollout_device cuda: the whole run on one GPU exits 0" "$TMP/log.a" 1 "$BIN" "$TMP/all.json" \
  --output-dir "$TMP/all"
gpu_vs_cpu "$TMP/all" "$TMP/c"
check "cuda + rollout_device cuda: every step's numbers finite, the phases of the CPU run" $?
finish test_job_train_gpu
