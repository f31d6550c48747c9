#!/usr/bin/env bash
# OpenBLAS's kernel choice (src/model/blas_core.h): on a CPU with AVX-512 or
# AVX2 + FMA, tau2_hpc never runs OpenBLAS's generic "Prescott" kernels on
# its own, and a user's OPENBLAS_CORETYPE is kept. `--version` names the
# kernels in use.
set -u
BIN=$1
source "$(dirname "$0")/lib.sh"

core() { env "$@" "$BIN" --version | sed -n 's/.*OpenBLAS \([A-Za-z0-9_]*\).*/\1/p'; }

flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }
if has avx512f && has avx512bw && has avx512dq && has avx512vl; then want=SkylakeX
elif has avx2 && has fma; then want=Haswell
else want=""
fi

got=$(core -u OPENBLAS_CORETYPE)
if [ -n "$want" ]; then
  # OpenBLAS may know this CPU itself (then any kernel but Prescott is right)
  [ "$got" != "Prescott" ] && [ -n "$got" ]
  check "a vector CPU does not run the generic kernels (got '$got', this CPU: $want)" $?
fi
[ "$(core OPENBLAS_CORETYPE=Prescott)" = "Prescott" ]
check "a user's OPENBLAS_CORETYPE is kept" $?
# the re-executed program still gets its arguments and its exit code
expect_exit "a bad subcommand after the re-exec: exit 2" 2 "" env -u OPENBLAS_CORETYPE "$BIN" no-such-command
finish test_cli_blas
