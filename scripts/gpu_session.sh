#!/usr/bin/env bash
# Run the CUDA tests and the GPU benchmarks on a GPU machine that has the
# CUDA driver, cuBLAS and NCCL but not this project's other libraries: the
# programs and libraries come from the archive scripts/gpu_pack.sh made
# (doc/cuda.md, "On a lent GPU machine"). It works in the repository it is
# part of (the job tests read tests/ and inputs/ from it).
#
# usage: bash scripts/gpu_session.sh [check|tests|bench|all] [bench names...]
#   check  unpack, find cuBLAS and NCCL, start 2 MPI ranks (test_comm), print
#          what was found: a minute at most
#   tests  check, then every CUDA test on the GPU (test_cuda_*, the GPU MPI
#          tests at one rank, the GPU job tests)
#   bench  check, then the benchmarks (default: attention train decode
#          offload broadcast; name others or fewer: attention, train (8 layers),
#          train36 (all 36 with recomputation), train_wmma and train36_wmma
#          (the same with TAU2_CUDA_ATTENTION=wmma), train36_micro (36
#          layers, 4 micro-batches of 4096 tokens a step, one AdamW update),
#          train_torch and train36_torch (the 8- and 36-layer steps in
#          PyTorch with FlashAttention beside the C ones, and the ratio),
#          decode, decode_rows
#          (batch 1, 2 and 4: the few-row kernels, then the same with
#          TAU2_CUDA_ROWS=0, cuBLAS), decode_mma (batch 8, 16 and 32 with
#          TAU2_CUDA_ROWS_MMA=1, the tensor-core row products, then on
#          cuBLAS), offload (the trainer's state out to the host and
#          back, a TP-2 shard's size), broadcast)
#   all    tests, then bench
#   sanitize  check, then compute-sanitizer over the CUDA tests: memcheck
#          (test_cuda_kernels, _infer, _qwen3, _mid), racecheck and synccheck
#          (test_cuda_kernels, _infer); a racecheck hazard inside cuBLAS's
#          own kernels (nvjet*, its TMA pipelines) is listed, not counted
#   profile  check, then Nsight Compute's time of every kernel (one metric,
#          clocks and caches left as they are) for a training step of the 4B shape at
#          4096 tokens, 4 layers with recomputation (each layer as in the
#          36-layer step), and for decode steps at 2048 tokens, batch 32 and
#          1: each kernel's total per step, largest first
#          (scripts/ncu_summary.py; the raw CSVs in OUT); then the
#          attention kernels (bench_attention_gpu) and the decode attention
#          (2048/32) in detail: throughput, occupancy, warp stalls
#          (TAU2_PROFILE_DETAIL=0 skips the details)
#   run CMD...  check, then CMD in the session's environment, the packed
#          programs first on PATH (e.g. run mpirun -np 1 tau2_hpc inputs/tiny.json)
# The table of steps comes last, then the benchmarks' RESULT lines.
# Env: OUT (results: session.txt, tests.log, bench.log; default ./gpu-out),
# TAU2_GPU_PACK (default build-gpu-pack/tau2_gpu.tar.xz), TAU2_GPU_DIR (where
# it unpacks; default /tmp/tau2_gpu), TAU2_GPU_GLIBC (auto, packed or
# system: whose glibc the programs run on), BENCH_TRAIN_ARGS, BENCH_DECODE_ARGS, BENCH_OFFLOAD_ARGS,
# BENCH_ATTENTION_ARGS (override a benchmark's arguments).
# Exit 0 when every test ran passed or skipped, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-all}
shift || true
PACK=${TAU2_GPU_PACK:-$ROOT/build-gpu-pack/tau2_gpu.tar.xz}
DIR=${TAU2_GPU_DIR:-/tmp/tau2_gpu}
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
SESSION=$OUT/session.txt
: >"$SESSION"

say() { echo "$*" | tee -a "$SESSION"; }
die() { say "gpu_session: $*"; exit 1; }

case $MODE in check | tests | bench | all | sanitize | profile | run) ;;
  *) die "unknown mode '$MODE' (check, tests, bench, all, sanitize, profile or run)" ;; esac
[ "$MODE" != run ] || [ $# -gt 0 ] || die "run needs a command"
if [ "$MODE" = bench ] || [ "$MODE" = all ]; then
  for b in "$@"; do
    case $b in attention | train | train36 | train_wmma | train36_wmma | train36_micro | train_torch | train36_torch | \
      decode | decode_rows | decode_mma | offload | broadcast) ;;
      *) die "unknown benchmark '$b' (attention, train, train36, train_wmma, train36_wmma, train36_micro, train_torch," \
        "train36_torch, decode, decode_rows, decode_mma, offload, broadcast)" ;; esac
  done
fi
[ -f "$PACK" ] || die "no archive at $PACK: run scripts/gpu_pack.sh on the build machine and carry build-gpu-pack"

# ---- unpack and find the machine's CUDA libraries ----
rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
tar -C "$(dirname "$DIR")" -xJf "$PACK" || die "cannot unpack $PACK"
[ "$(basename "$DIR")" = tau2_gpu ] || die "TAU2_GPU_DIR must end in /tau2_gpu"

# The folder of the first file called $1 among the usual places of a CUDA
# install and of Python's NVIDIA wheels; empty if the loader finds it anyway.
lib_dir() {
  if ldconfig -p 2>/dev/null | grep -q "	$1 "; then return; fi
  local f
  f=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/lib /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu \
    /opt /usr/local/lib /usr/lib/python3*/ -name "$1" 2>/dev/null | head -1)
  [ -n "$f" ] && dirname "$f"
}
cublas_dir=$(lib_dir libcublas.so.13)
cublaslt_dir=$(lib_dir libcublasLt.so.13)
nccl_dir=$(lib_dir libnccl.so.2)
# the machine's own, for its Python (PyTorch, the benchmarks' anchor)
SYSTEM_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH=$DIR/lib${cublas_dir:+:$cublas_dir}${cublaslt_dir:+:$cublaslt_dir}${nccl_dir:+:$nccl_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# Open MPI where the archive put it (OPAL_PREFIX relocates it), PMIx's
# components too (Debian's PMIx has no relocation by prefix, but takes the
# component path as a parameter); root may run ranks (the machine is ours
# alone); ranks may outnumber cores.
export OPAL_PREFIX=$DIR/mpi PMIX_MCA_mca_base_component_path=$DIR/pmix/lib/pmix PATH=$DIR/mpi/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export TAU2_DATA_DIR=$DIR/data TAU2_SOURCE_DIR=$ROOT OMP_WAIT_POLICY=passive
# what the job test scripts take (tests/job/lib.sh)
export TAU2_MPIEXEC="mpirun -np" TAU2_FAULT_SERVER=$DIR/run/fault_server

# Programs run through wrappers in run/: directly, or through the packed
# glibc's loader when this machine's glibc is older than they need.
mkdir -p "$DIR/run"
# TAU2_GPU_GLIBC=packed forces the packed one, system the machine's.
loader=""
glibc=${TAU2_GPU_GLIBC:-auto}
if [ "$glibc" = auto ] && ! "$DIR/bin/tau2_hpc" --version >/dev/null 2>"$DIR/probe.err" &&
  grep -q "GLIBC_" "$DIR/probe.err"; then
  glibc=packed
fi
[ "$glibc" = packed ] && loader="$DIR/glibc/ld-linux-x86-64.so.2 --library-path $DIR/glibc:$LD_LIBRARY_PATH"
wrap() { # wrap PROGRAM WRAPPER
  printf '#!/bin/sh\nexec %s "%s" "$@"\n' "$loader" "$1" >"$2"
  chmod +x "$2"
}
for p in "$DIR"/bin/*; do wrap "$p" "$DIR/run/$(basename "$p")"; done
if [ -n "$loader" ]; then
  # mpirun and the orted it may start are programs of the archive too
  for p in orterun orted; do
    mv "$DIR/mpi/bin/$p" "$DIR/mpi/bin/$p.real"
    wrap "$DIR/mpi/bin/$p.real" "$DIR/mpi/bin/$p"
  done
fi
RUN=$DIR/run

say "== gpu_session $MODE, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "$(sed 's/^/pack: /' "$DIR/MANIFEST")"
say "gpu: $(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 | head -4 | tr '\n' ';')"
say "host: $(nproc) cores, glibc $(ldd --version 2>/dev/null | head -1 | awk '{print $NF}'), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
say "cuBLAS from: ${cublas_dir:-(system path)}; NCCL from: ${nccl_dir:-(system path)}${loader:+; programs through the packed glibc}"
missing=$(LD_LIBRARY_PATH=$LD_LIBRARY_PATH ldd "$DIR"/bin/* 2>/dev/null | grep "not found" | sort -u)
[ -z "$missing" ] || die "libraries not found: $(echo "$missing" | tr '\n' ' ')"
mpirun -np 2 "$RUN/test_comm" >"$DIR/mpi.log" 2>&1
rc=$?
say "mpirun -np 2 test_comm: exit $rc"
[ $rc -eq 0 ] || { cat "$DIR/mpi.log" >>"$SESSION"; tail -20 "$DIR/mpi.log"; die "Open MPI does not start ranks here"; }
[ "$MODE" = check ] && exit 0
if [ "$MODE" = run ]; then
  PATH=$RUN:$PATH "$@"
  exit
fi

# ---- run one step, record its exit and time, keep its log ----
# A device call lasts 600 s at most: every step stops in time for the
# summary (TAU2_GPU_BUDGET_S from the start of this script, default 570),
# and no step runs longer than TAU2_GPU_STEP_S (default 200), so that one
# that hangs leaves time for the others.
DEADLINE=${TAU2_GPU_BUDGET_S:-570}
STEP_CAP=${TAU2_GPU_STEP_S:-200}
n_gpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
ROWS=()
FAILED=0
step() { # step LOG NAME CMD...: a row "NAME  result  seconds  last line"
  local log=$1 name=$2
  shift 2
  local t0=$SECONDS rc left=$((DEADLINE - SECONDS - 10))
  [ $left -le "$STEP_CAP" ] || left=$STEP_CAP
  if [ $left -lt 5 ]; then
    ROWS+=("$(printf '%-28s %-11s' "$name" "not run: no time left")")
    FAILED=1
    return
  fi
  local start
  start=$(wc -l <"$log")
  echo "===== $name: $*" >>"$log"
  timeout -k 5 $left "$@" >>"$log" 2>&1
  rc=$?
  local result
  case $rc in
    0) result=passed ;;
    77) result=skipped ;;
    124 | 137) result="TIMEOUT(${left}s)"; FAILED=1 ;;
    *) result="FAILED($rc)"; FAILED=1 ;;
  esac
  local last
  # the program's last line, not mpirun's report around it
  last=$(tail -n +$((start + 2)) "$log" |
    grep -Ev '^-+$|^\s*$|mpirun|Primary job|non-zero exit|Per user-direction|Process name|Exit code|first process to do so' |
    tail -1 | cut -c1-110)
  ROWS+=("$(printf '%-28s %-11s %5ss  %s' "$name" "$result" "$((SECONDS - t0))" "$last")")
}

if [ "$MODE" = tests ] || [ "$MODE" = all ]; then
  T=$OUT/tests.log
  : >"$T"
  for t in test_cuda_kernels test_cuda_sample test_cuda_qwen3 test_cuda_infer test_cuda_mid test_cuda_memory_plan; do
    step "$T" "$t" "$RUN/$t"
  done
  TAU2_CUDA_ROWS_MMA=1 step "$T" "test_cuda_infer, rows_mma" "$RUN/test_cuda_infer"
  # the mid-size step once more on the other attention family (WMMA,
  # attention_tc.cu; test_cuda_kernels runs both itself)
  TAU2_CUDA_ATTENTION=wmma step "$T" "test_cuda_mid, wmma attn" "$RUN/test_cuda_mid"
  for t in test_comm_nccl test_qwen3_gpu_tp; do
    step "$T" "$t (1 rank)" mpirun -np 1 "$RUN/$t"
  done
  if [ "$n_gpu" -ge 2 ]; then
    for t in test_comm_nccl test_qwen3_gpu_tp; do
      step "$T" "$t (2 ranks)" mpirun -np 2 "$RUN/$t"
    done
  fi
  for t in test_job_train_gpu test_job_gpu_memory test_job_train_gpu_tp; do
    step "$T" "$t" env OMP_NUM_THREADS=4 bash "tests/job/$t.sh" "$RUN/tau2_hpc"
  done
fi

if [ "$MODE" = sanitize ]; then
  S=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  [ -n "$S" ] || die "compute-sanitizer not found"
  T=$OUT/sanitize.log
  : >"$T"
  # sanitize TOOL TEST: the test under the tool; fails on any error the
  # tool reports in this project's kernels
  sanitize() {
    local log=$OUT/$1_$2.log
    timeout -k 5 "$STEP_CAP" "$S" --tool "$1" "$DIR/bin/$2" >"$log" 2>&1
    local rc=$? ours
    ours=$(grep -E '(Race reported between|Invalid|Error:|Barrier error)' "$log" | grep -Evc 'nvjet|cublas|xmma|cutlass')
    grep -E 'SUMMARY|passed|FAIL' "$log" | tail -2
    echo "$1 $2: $ours report(s) in this project's kernels, test exit $rc"
    [ "$ours" -eq 0 ] && { [ $rc -eq 0 ] || [ "$1" = racecheck ]; }
  }
  # step runs a program under timeout: the function goes through bash
  export -f sanitize
  export S DIR OUT STEP_CAP
  for t in test_cuda_kernels test_cuda_infer test_cuda_qwen3 test_cuda_mid; do
    step "$T" "memcheck $t" bash -c 'sanitize "$@"' _ memcheck "$t"
  done
  for tool in racecheck synccheck; do
    for t in test_cuda_kernels test_cuda_infer; do step "$T" "$tool $t" bash -c 'sanitize "$@"' _ "$tool" "$t"; done
  done
fi

if [ "$MODE" = profile ]; then
  P=$OUT/profile.log
  : >"$P"
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
  [ -n "$NCU" ] || die "no ncu (Nsight Compute) on this machine"
  # profile_one NAME PER CMD...: ncu over CMD into OUT/NAME.csv, then its summary (totals / PER steps)
  profile_one() {
    local name=$1 per=$2
    shift 2
    "$NCU" --clock-control none --cache-control none --csv --metrics gpu__time_duration.sum "$@" >"$OUT/$name.csv" \
      2>>"$P" &&
      env LD_LIBRARY_PATH="$SYSTEM_LD_LIBRARY_PATH" python3 "$ROOT/scripts/ncu_summary.py" "$OUT/$name.csv" --per "$per"
  }
  export -f profile_one
  export NCU OUT P ROOT SYSTEM_LD_LIBRARY_PATH
  # bench_train_gpu: a warm-up step and --steps 1, both profiled (2 steps)
  step "$P" "profile train, 4 layers" bash -c 'profile_one "$@"' _ profile_train 2 "$RUN/bench_train_gpu" \
    --config 4b --layers 4 --seq-len 4096 --recompute --steps 1
  # bench_decode_gpu: its profiler range holds two decode steps
  for batch in 32 1; do
    step "$P" "profile decode 2048/$batch" bash -c 'profile_one "$@"' _ "profile_decode_$batch" 2 \
      --profile-from-start off "$RUN/bench_decode_gpu" --config 4b --batches $batch --contexts 2048 --steps 1
  done
  # the attention kernels and the decode attention in detail: throughput, occupancy, stalls
  # (TAU2_PROFILE_DETAIL=0 skips them)
  if [ "${TAU2_PROFILE_DETAIL:-1}" != 0 ]; then
    SECTIONS="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats"
    SECTIONS="$SECTIONS --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis"
    step "$P" "profile attention kernels" "$NCU" --clock-control none $SECTIONS --kernel-name regex:attention_mma \
      --launch-count 4 "$RUN/bench_attention_gpu" --iters 1
    step "$P" "profile decode attention 2048/32" "$NCU" --clock-control none $SECTIONS --profile-from-start off \
      --kernel-name regex:decode_partial --launch-count 2 "$RUN/bench_decode_gpu" --config 4b --batches 32 \
      --contexts 2048 --steps 1
  fi
  grep -v '^==PROF==' "$P"
fi

if [ "$MODE" = bench ] || [ "$MODE" = all ]; then
  B=$OUT/bench.log
  : >"$B"
  names=("$@")
  [ ${#names[@]} -gt 0 ] || names=(attention train decode offload broadcast)
  for b in "${names[@]}"; do
    case $b in
      attention) step "$B" bench_attention_gpu "$RUN/bench_attention_gpu" ${BENCH_ATTENTION_ARGS:-} ;;
      train) step "$B" bench_train_gpu "$RUN/bench_train_gpu" ${BENCH_TRAIN_ARGS:---config 4b --layers 8 --seq-len 4096} ;;
      train36) step "$B" "bench_train_gpu 36 layers" "$RUN/bench_train_gpu" --config 4b --layers 36 --seq-len 4096 --recompute ;;
      train_wmma) TAU2_CUDA_ATTENTION=wmma step "$B" "bench_train_gpu, wmma attention" "$RUN/bench_train_gpu" \
        ${BENCH_TRAIN_ARGS:---config 4b --layers 8 --seq-len 4096} ;;
      train36_wmma) TAU2_CUDA_ATTENTION=wmma step "$B" "bench_train_gpu 36, wmma attention" "$RUN/bench_train_gpu" \
        --config 4b --layers 36 --seq-len 4096 --recompute ;;
      train36_micro) step "$B" "bench_train_gpu 36, 4 micro-batches a step" "$RUN/bench_train_gpu" \
        --config 4b --layers 36 --seq-len 4096 --recompute --micro 4 ;;
      train_torch | train36_torch)
        # the same step in PyTorch (the machine's, on its own libraries), the C one in the same run
        layers=8 more=""
        [ "$b" = train36_torch ] && layers=36 more=--recompute
        step "$B" "bench_train_torch_gpu $layers layers" env LD_LIBRARY_PATH="$SYSTEM_LD_LIBRARY_PATH" \
          python3 "$ROOT/benchmarks/bench_train_torch_gpu.py" --bench "$RUN/bench_train_gpu" \
          --bench-ld-path "$LD_LIBRARY_PATH" --layers $layers --seq-len 4096 $more
        ;;
      decode) step "$B" bench_decode_gpu "$RUN/bench_decode_gpu" ${BENCH_DECODE_ARGS:---config 4b} ;;
      decode_rows)
        step "$B" "bench_decode_gpu, 1-4 rows" "$RUN/bench_decode_gpu" --config 4b --batches 1,2,4 --contexts 2048,8192
        TAU2_CUDA_ROWS=0 step "$B" "bench_decode_gpu, 1-4 rows, cuBLAS" "$RUN/bench_decode_gpu" --config 4b \
          --batches 1,2,4 --contexts 2048,8192
        ;;
      decode_mma)
        TAU2_CUDA_ROWS_MMA=1 step "$B" "bench_decode_gpu, 8-32 rows, mma" "$RUN/bench_decode_gpu" --config 4b \
          --batches 8,16,32 --contexts 2048,8192
        step "$B" "bench_decode_gpu, 8-32 rows, cuBLAS" "$RUN/bench_decode_gpu" --config 4b --batches 8,16,32 \
          --contexts 2048,8192
        ;;
      offload) step "$B" bench_offload_gpu "$RUN/bench_offload_gpu" ${BENCH_OFFLOAD_ARGS:---config 4b --layers 18} ;;
      broadcast)
        if [ "$n_gpu" -ge 2 ]; then
          step "$B" "bench_broadcast --device" mpirun -np 2 "$RUN/bench_broadcast" --device
        else
          step "$B" "bench_broadcast (host)" mpirun -np 2 "$RUN/bench_broadcast" --mib 256
        fi
        ;;
    esac
  done
fi

say ""
say "$(printf '%-28s %-11s %6s  %s' step result time 'last line of its output')"
for r in "${ROWS[@]}"; do say "$r"; done
# the benchmarks' machine-readable lines (benchmarks/README.md), for doc/perf.md
if [ -n "${B:-}" ] && grep -q '^RESULT ' "$B"; then
  say ""
  say "$(grep '^RESULT ' "$B")"
fi
exit $FAILED
