#!/usr/bin/env bash
# train_device "cuda" at tensor_parallel 2: the tiny job's updates on two
# GPUs, one per rank (four with data_parallel 2 when the machine has four),
# the TP shards' and the DP replicas' sums over NCCL. Needs 2 GPUs
# (nvidia-smi -L, or TAU2_TEST_GPUS for the CUDA emulation, which registers
# this script as emu_job_train_gpu_tp); skipped (77) otherwise.
#  1. SFT then GRPO with a KL reference (a second sharded engine) exits 0,
#     every step's numbers finite, the phases of the CPU run.
#  2. Both SFT losses within the bf16 bound of doc/cuda.md (relative 1e-2)
#     of the CPU run's at one rank: the shards add up to the whole model.
#  3. The final checkpoint exports (the shards gathered).
#  4. The GPU memory plan (rl/job_memory.h): the job prints its line for
#     the first GPU; a KV cache of 2e9 tokens (1 TB for this model) on the
#     GPU is refused at start (exit 2), naming the fields, the GPU, the
#     phase and its parts, with no run directory left behind (the phases
#     and the offloads: test_job_gpu_memory.sh).
#  5. Separate mode, train_device and rollout_device "cuda": trainer rank 0
#     and the rollout rank on GPUs of their own, the weights broadcast over
#     NCCL (the job says so) into the rollout rank's kept GPU engine: 2 GRPO
#     steps (no SFT) exit 0 with finite numbers, the CPU run's phases.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
n_gpu=${TAU2_TEST_GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
if [ "$n_gpu" -lt 2 ]; then
  echo "test_job_train_gpu_tp: needs 2 GPUs, found $n_gpu: skipped"
  exit 77
fi
np=2
[ "$n_gpu" -ge 4 ] && np=4
mock_tasks "$TMP/mock.jsonl"
# small: the CUDA emulation runs this in CI (each GRPO step trains on one
# group of 2 samples)
common=(prompt_data=\"$TMP/mock.jsonl\" sft_num_epoch=1 sft_global_batch_size=2 rollout_batch_size=1
  n_samples_per_prompt=2 global_batch_size=2 num_rollout=1 rollout_max_response_len=96 rollout_max_turn_len=48
  kl_coef=0.1)
tiny_config "$TMP/tp.json" "${common[@]}" train_device=\"cuda\" tensor_parallel=2
tiny_config "$TMP/cpu.json" "${common[@]}" train_device=\"cpu\"

job_ok "cpu: the run at one rank exits 0" "$TMP/log.c" 1 "$BIN" "$TMP/cpu.json" --output-dir "$TMP/c"
job_ok "cuda, tensor_parallel 2 on $np ranks: SFT + GRPO with a KL reference exits 0" "$TMP/log.tp" $np \
  "$BIN" "$TMP/tp.json" --output-dir "$TMP/tp"
gpu_vs_cpu "$TMP/tp" "$TMP/c" '
err = max(abs(a - b) / abs(b) for a, b in zip(sg, sc))
print("SFT losses: cuda TP 2 " + " ".join(f"{v:.5f}" for v in sg) + ", cpu " + " ".join(f"{v:.5f}" for v in sc) +
      f" (worst relative {err:.2e})")
assert len(sg) >= 2 and err <= 1e-2, err
'
check "cuda, tensor_parallel 2: numbers finite, the CPU run's phases, SFT losses within 1e-2 of the CPU's" $?
"$BIN" export --checkpoint "$TMP/tp" --output "$TMP/e" --dtype F32 >/dev/null
check "cuda, tensor_parallel 2: the final checkpoint exports (shards gathered)" $?

# one rank per GPU: rank 0's line is about its own
grep -q "^GPU memory: 1 rank on GPU-.* plan .* (weights .*, training state .*, activations of [0-9]* \
tokens .*, scratch and workspaces .*) + 1.0 GiB held back, of .* free$" "$TMP/log.tp"
check "cuda: the job prints its GPU memory plan" $?
# each trainer rank page-locks its shard's host weights and moments (train_device.c)
! grep -q "did not page-lock" "$TMP/log.tp"
check "cuda, tensor_parallel 2: the host weights and moments were page-locked" $?
tiny_config "$TMP/big.json" "${common[@]}" train_device=\"cuda\" rollout_device=\"cuda\" kv_cache_tokens=2000000000
expect_exit "a KV cache larger than the GPU is refused at start" 2 \
  "fields 'model', 'max_tokens_per_gpu', 'kv_cache_tokens' and 'chunked_prefill_size': the rank on GPU-" \
  "$BIN" "$TMP/big.json" --output-dir "$TMP/big"
grep -q "would take .* of its memory while rolling out (weights .*, KV cache .* and hold back 1.0 GiB for NCCL and \
cuBLAS, more than" \
  "$TMP/err"
check "the refusal gives the parts, the reserve and the free memory" $?
[ ! -e "$TMP/big" ]
check "the refused plan left no run directory" $?

sep=("${common[@]}" kl_coef=null sft_data=null num_rollout=2 colocate=false)
tiny_config "$TMP/sep.json" "${sep[@]}" train_device=\"cuda\" rollout_device=\"cuda\"
tiny_config "$TMP/sepc.json" "${sep[@]}"
job_ok "separate mode, both devices cuda: 2 GRPO steps exit 0" "$TMP/log.sep" 2 "$BIN" "$TMP/sep.json" \
  --output-dir "$TMP/sep"
job_ok "separate mode on the CPU: the same run exits 0" "$TMP/log.sepc" 2 "$BIN" "$TMP/sepc.json" \
  --output-dir "$TMP/sepc"
grep -q "^weight sync over NCCL" "$TMP/log.sep"
check "separate mode: the weights go over NCCL" $?
gpu_vs_cpu "$TMP/sep" "$TMP/sepc"
check "separate mode: every step's numbers finite, the phases of the CPU run" $?
finish test_job_train_gpu_tp
