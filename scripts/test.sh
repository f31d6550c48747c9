#!/usr/bin/env bash
# Build tau2_hpc and run its test suite (ctest). TAU2_SANITIZE=1 builds a
# separate tree with AddressSanitizer + UBSan and runs the same tests there.
# TAU2_FUZZ=1 builds the libFuzzer targets with clang (build-fuzz) and runs
# each a short while on a copy of its corpus (ctest label "fuzz";
# TAU2_FUZZ_SECONDS, default 10, per target).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${TAU2_FUZZ:-0}" = "1" ]; then
  dir=build-fuzz
  CC=clang cmake -S . -B "$dir" -DTAU2_FUZZ=ON -DTAU2_CUDA=OFF >/dev/null
  cmake --build "$dir" -j"$(nproc)" --target fuzzers
  ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" -L fuzz
  exit 0
fi
if [ "${TAU2_SANITIZE:-0}" = "1" ]; then
  dir=build-asan
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DTAU2_SANITIZE=ON -DTAU2_CUDA=OFF >/dev/null
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  dir=build
  # with nvcc present, the CUDA tests also run against the CPU emulation of
  # tests/cuda_emu (a machine without a GPU skips the real ones)
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTAU2_CUDA_EMU=AUTO >/dev/null
fi
cmake --build "$dir" -j"$(nproc)"
# The long job tests (label "long") train for minutes; under the sanitizers
# they would add about 20 minutes. The small multi-rank job tests run there
# (doc/testing.md).
exclude=()
[ "${TAU2_SANITIZE:-0}" = "1" ] && exclude=(-LE long)
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" "${exclude[@]}"
