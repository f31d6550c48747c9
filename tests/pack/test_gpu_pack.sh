#!/usr/bin/env bash
# scripts/gpu_pack.sh and scripts/gpu_session.sh on a machine that lacks what
# the archive carries: in a private mount namespace, Open MPI's and PMIx's
# install folders, hwloc's plugins and the system's copy of every library
# the archive packs (but the few the shell tools themselves load) are
# hidden, so that each program must find its libraries, Open MPI its
# components and mpirun its daemons in the archive. Needs root, unshare
# and a build with the CUDA programs (the test's argument: the build
# folder); skipped (77) otherwise. Without a GPU the CUDA steps skip.
#  1. The build's programs pack; the manifest names the commit and what
#     Open MPI components stayed behind.
#  2. check: the archive unpacks, 2 MPI ranks start and talk (test_comm).
#  3. tests: every step passes or skips, the session exits 0, and the
#     table names each of them.
#  4. run: a multi-rank CPU job test (test_job_small_ranks.sh: HDF5
#     checkpoints, MPI, the whole program) passes on the archive alone,
#     with this machine's glibc and with the packed one.
#  5. A missing archive is an error that says how to make one.
set -u
BUILD=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
if [ "$(id -u)" != 0 ] || ! unshare -m --propagation private true 2>/dev/null; then
  echo "test_gpu_pack: needs root and unshare (mount namespaces): skipped"
  exit 77
fi
for p in test_cuda_kernels test_comm_nccl bench_train_gpu; do
  if [ ! -x "$BUILD/$p" ]; then
    echo "test_gpu_pack: $BUILD has no CUDA programs ($p): skipped"
    exit 77
  fi
done
# the build's CUDA programs (the pack's list; the rest are built by default)
TAU2_PACK_XZ_LEVEL=1 bash scripts/gpu_pack.sh --no-build --build-dir "$BUILD" --out "$TMP/pack" >"$TMP/pack.log" 2>&1
check "the build's programs pack" $?
grep -q "^commit [0-9a-f]\{40\}" "$TMP/pack.log" && grep -q "^open mpi components left out: .*mca_pml_ucx" "$TMP/pack.log"
check "the manifest names the commit and the Open MPI components left out" $?
tar -tJf "$TMP/pack/tau2_gpu.tar.xz" >"$TMP/list"
carried=$(sed -n 's#^tau2_gpu/lib/\([^/]*\)$#\1#p' "$TMP/list")

# The namespace: hidden install folders, and an empty file over the
# system's copy of each packed library but those bash, tar, xz, python3 and
# coreutils load.
keep='^lib(z|crypto|ssl|lzma|zstd|stdc\+\+|gcc_s|expat|ffi|pcre2-8|selinux|tinfo|acl|attr|bz2|md|bsd|udev|uuid|sqlite3|mpdec|readline|ncursesw)\.so'
cat >"$TMP/hide.sh" <<HIDE
set -e
for d in /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2 /usr/lib/x86_64-linux-gnu/hwloc \
  /usr/share/openmpi /etc/openmpi; do
  [ -d "\$d" ] && mount -t tmpfs none "\$d"
done
for f in /usr/bin/orterun /usr/bin/orted; do [ -e "\$f" ] && mount --bind /dev/null "\$f"; done
hidden=0
for name in $(echo $carried); do
  [[ \$name =~ $keep ]] && continue
  path=\$(ldconfig -p | awk -v n="\$name" '\$1 == n {print \$NF; exit}')
  [ -n "\$path" ] || continue
  real=\$(readlink -m "\$path")
  [ -f "\$real" ] || continue # in a folder hidden above
  mount --bind /dev/null "\$real"
  hidden=\$((hidden + 1))
done
echo "hidden: \$hidden libraries" >&2
set +e
"\$@"
HIDE
session() { # session OUT_NAME MODE ARGS...
  local out=$TMP/$1
  shift
  OUT=$out TAU2_GPU_PACK="$TMP/pack/tau2_gpu.tar.xz" TAU2_GPU_DIR="$TMP/unpacked/tau2_gpu" \
    unshare -m --propagation private bash "$TMP/hide.sh" bash scripts/gpu_session.sh "$@"
}

session check check >"$TMP/check.log" 2>&1
rc=$?
[ $rc -eq 0 ] || tail -20 "$TMP/check.log"
grep -q "^hidden: [1-9][0-9] libraries" "$TMP/check.log" && grep -q "mpirun -np 2 test_comm: exit 0" "$TMP/check/session.txt"
check "check: unpacked with the system's MPI and libraries hidden, 2 ranks start and talk" $((rc | $?))

session tests tests >"$TMP/tests.log" 2>&1
rc=$?
rows=$(grep -cE '^(test_[a-z0-9_]+)( \([0-9] ranks?\))? +(passed|skipped) ' "$TMP/tests/session.txt")
[ $rc -ne 0 ] && cat "$TMP/tests/session.txt"
[ $rc -eq 0 ] && [ "$rows" -ge 9 ]
check "tests: every step passed or skipped ($rows rows), the session exits 0" $?

for glibc in system packed; do
  TAU2_GPU_GLIBC=$glibc session "run_$glibc" run sh -c 'bash tests/job/test_job_small_ranks.sh "$(command -v tau2_hpc)"' \
    >"$TMP/run_$glibc.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || tail -20 "$TMP/run_$glibc.log"
  grep -q "test_job_small_ranks: [0-9]* passed, 0 failed" "$TMP/run_$glibc.log"
  check "run: a multi-rank CPU job test on the archive alone, $glibc glibc" $((rc | $?))
done

OUT=$TMP/none TAU2_GPU_PACK=$TMP/absent.tar.xz bash scripts/gpu_session.sh check >"$TMP/none.log" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "no archive at $TMP/absent.tar.xz: run scripts/gpu_pack.sh" "$TMP/none.log"
check "a missing archive is an error that says how to make one" $?
finish test_gpu_pack
