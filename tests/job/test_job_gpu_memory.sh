#!/usr/bin/env bash
# The GPU memory of a job on one GPU a rank (rl/job_memory.h, doc/memory_plan.md
# "Checked at start"). Needs a GPU (nvidia-smi -L, or TAU2_TEST_GPUS for the
# CUDA emulation, which registers this script as emu_job_gpu_memory and whose
# TAU2_CUDA_EMU_MEMORY_MIB sets the device's size); skipped (77) otherwise.
#  1. Colocated with both devices "cuda": offload_train and offload_rollout
#     (on by default there) give each phase the GPU in turn, and the plan
#     counts the phases apart: its line gives both. Planned at 1.3 GiB for
#     training (max_tokens_per_gpu 36000) and 1.4 GiB for rollouts (a cache
#     of 2M tokens), the run fits a GPU of 3 GiB (a real GPU has more) and
#     gives the CPU run's phases with finite numbers and each step's
#     perf/offload_time. Under the emulation the same job with both
#     offloads off (3.7 GiB with the reserve) is refused at start, naming
#     them.
#  2. A trajectory longer than the micro-batch the check at start counted
#     (a user turn longer than the one-token budget of the opening): its
#     activations are checked again before the update against what the
#     GPU had to spare. Under the emulation, on a GPU at most 1.1 MiB
#     larger than the plan and its reserve (the trajectory's activations
#     take 2 MiB more), the job ends (exit 1) naming the sizes and the
#     field to lower; colocated with offload_train off, the same against
#     the rollout phase (the engine beside the whole trainer); with room,
#     the same job runs.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
n_gpu=${TAU2_TEST_GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
if [ "$n_gpu" -lt 1 ]; then
  echo "test_job_gpu_memory: needs a GPU, found none: skipped"
  exit 77
fi
emulated=${TAU2_CUDA_EMU_DEVICES:+1}
mock_tasks "$TMP/mock.jsonl"
common=(prompt_data=\"$TMP/mock.jsonl\" sft_data=null rollout_batch_size=1 n_samples_per_prompt=2
  global_batch_size=2 num_rollout=2 rollout_max_response_len=96 rollout_max_turn_len=48)

# 1. the phases apart
off=("${common[@]}" train_device=\"cuda\" rollout_device=\"cuda\" max_tokens_per_gpu=36000 kv_cache_tokens=2000000)
tiny_config "$TMP/off.json" "${off[@]}"
tiny_config "$TMP/cpu.json" "${common[@]}"
job_ok "cpu: the run exits 0" "$TMP/log.c" 1 "$BIN" "$TMP/cpu.json" --output-dir "$TMP/c"
job_ok "colocated, both devices cuda, offloads on: the run fits a 3 GiB GPU" "$TMP/log.off" 1 \
  env TAU2_CUDA_EMU_MEMORY_MIB=3072 "$BIN" "$TMP/off.json" --output-dir "$TMP/off"
grep -q "^GPU memory: 1 rank on GPU-.* plan 1\.[0-9] GiB training (weights .*, activations of 36000 tokens .*), \
1\.[0-9] GiB rolling out (weights .*, KV cache .*) + 1.0 GiB held back" "$TMP/log.off"
check "colocated with offloads: the plan line gives each phase" $?
gpu_vs_cpu "$TMP/off" "$TMP/c" '
assert all("perf/offload_time" in r for r in g if r["phase"] == "grpo"), g
'
check "colocated with offloads: numbers finite, the phases of the CPU run, each step offloaded" $?
if [ -n "$emulated" ]; then
  tiny_config "$TMP/nooff.json" "${off[@]}" offload_train=false offload_rollout=false
  expect_exit "the same without offloads does not fit 3 GiB: refused at start" 2 \
    "'chunked_prefill_size', 'offload_train' and 'offload_rollout': the rank on GPU-" \
    env TAU2_CUDA_EMU_MEMORY_MIB=3072 "$BIN" "$TMP/nooff.json" --output-dir "$TMP/nooff"
  [ ! -e "$TMP/nooff" ]
  check "the refused plan left no run directory" $?
fi

# 2. a longer trajectory than counted
head -1 "$TMP/mock.jsonl" >"$TMP/one.jsonl"
tiny_config "$TMP/turn.json" prompt_data=\"$TMP/one.jsonl\" sft_data=null rollout_max_turn_len=1 \
  rollout_max_response_len=1 max_tokens_per_gpu=1 num_rollout=1 rollout_batch_size=1 n_samples_per_prompt=2 \
  global_batch_size=2 train_device=\"cuda\"
if [ -n "$emulated" ]; then
  # just_above CONFIG RUN_DIR PHASE_WORDS: mib = a GPU at most 1.1 MiB larger than the config's plan
  # (as its refusal on a 1 MiB GPU gives it, in the phase PHASE_WORDS names) and its reserve
  just_above() {
    expect_exit "(the plan of $(basename "$1"))" 2 "would take" env TAU2_CUDA_EMU_MEMORY_MIB=1 "$BIN" "$1" \
      --output-dir "$2"
    mib=$(python3 - "$TMP/err" "$3" <<'PY'
import math, re, sys
m = re.search(r"would take ([0-9.]+) (KiB|MiB|GiB) of its memory" + sys.argv[2], open(sys.argv[1]).read())
plan = float(m.group(1)) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[m.group(2)]
print(math.ceil(plan + 0.05 + 1024))
PY
)
  }
  just_above "$TMP/turn.json" "$TMP/t1" ""
  expect_exit "a longer trajectory that no longer fits the GPU ends the job with the sizes" 1 \
    "tokens in $TMP/t2/rollouts/step_000000.h5 is longer than the" \
    env TAU2_CUDA_EMU_MEMORY_MIB=$mib "$BIN" "$TMP/turn.json" --output-dir "$TMP/t2"
  grep -q "the GPU memory check at start counted: its activations take .* more on this rank's GPU, which had .* to \
spare while training; lower 'rollout_max_response_len'" "$TMP/err"
  check "the message gives the growth, the room and the field to lower" $?
  # Colocated with the engine on the GPU too and offload_train off, the
  # trainer's activations stay through the rollout phase (the engine and
  # the whole trainer): its room, the tighter, is what the growth must fit.
  tiny_config "$TMP/turnr.json" prompt_data=\"$TMP/one.jsonl\" sft_data=null rollout_max_turn_len=1 \
    rollout_max_response_len=1 max_tokens_per_gpu=1 num_rollout=1 rollout_batch_size=1 n_samples_per_prompt=2 \
    global_batch_size=2 train_device=\"cuda\" rollout_device=\"cuda\" offload_train=false
  just_above "$TMP/turnr.json" "$TMP/t4" " while rolling out"
  expect_exit "without offload_train the growth must fit the rollout phase: the job ends" 1 \
    "tokens in $TMP/t5/rollouts/step_000000.h5 is longer than the" \
    env TAU2_CUDA_EMU_MEMORY_MIB=$mib "$BIN" "$TMP/turnr.json" --output-dir "$TMP/t5"
  grep -q "which had .* to spare while rolling out; lower 'rollout_max_response_len'" "$TMP/err"
  check "the message names the rollout phase" $?
fi
expect_exit "with room for it the same job runs" 0 "" "$BIN" "$TMP/turn.json" --output-dir "$TMP/t3"
finish test_job_gpu_memory
