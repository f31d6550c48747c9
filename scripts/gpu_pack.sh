#!/usr/bin/env bash
# Build the CUDA programs here and pack them, with every shared library they
# load that a bare GPU machine may lack, into one archive that
# scripts/gpu_session.sh unpacks and runs there (doc/cuda.md, "On a lent GPU
# machine").
#
# A lent GPU machine has the CUDA toolkit, cuBLAS and NCCL but none of the
# Debian libraries the programs link (Open MPI, HDF5, cJSON, libcurl,
# OpenBLAS, ...), and it can fetch nothing. So the archive carries:
#
#   bin/     the test programs, the benchmarks, tau2_hpc and fault_server
#   lib/     their shared libraries and those of Open MPI's components, except
#            glibc's own and the CUDA libraries (cuBLAS, NCCL: the machine's)
#   glibc/   this machine's glibc (loader, libc, libm, ...): used only when the
#            GPU machine's glibc is older than the programs need
#   mpi/     Open MPI relocated (OPAL_PREFIX): mpirun, orted, the components
#            whose libraries are here (no InfiniBand, UCX or OFI transports:
#            one node), the help texts
#   pmix/    PMIx's components (its component path is a parameter) and help texts
#   data/    τ²-bench's domain data ($TAU2_DATA_DIR) for the job tests
#   MANIFEST the commit, the build and what was packed
#
# usage: bash scripts/gpu_pack.sh [--no-build] [--build-dir DIR] [--out DIR]
# Builds in build-gpu/ (or packs DIR's programs, as built, with --no-build)
# and writes build-gpu-pack/tau2_gpu.tar.xz (or DIR/tau2_gpu.tar.xz). Both
# folders are ignored by git; copy build-gpu-pack/ beside the repository
# on the GPU machine. TAU2_PACK_XZ_LEVEL: xz's level (default 6; the test
# takes 1: three times faster, 32 MiB instead of 20).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build-gpu
OUTDIR=build-gpu-pack
BUILD_FIRST=1
while [ $# -gt 0 ]; do
  case $1 in
    --no-build) BUILD_FIRST=0 ;;
    --build-dir) BUILD=${2:?--build-dir needs a folder}; shift ;;
    --out) OUTDIR=${2:?--out needs a folder}; shift ;;
    *) echo "usage: bash scripts/gpu_pack.sh [--no-build] [--build-dir DIR] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
PROGRAMS=(tau2_hpc fault_server
  test_cuda_kernels test_cuda_qwen3 test_cuda_infer test_cuda_sample test_cuda_mid test_cuda_memory_plan
  test_qwen3_gpu_tp test_comm_nccl test_comm
  bench_train_gpu bench_decode_gpu bench_attention_gpu bench_offload_gpu bench_broadcast)

die() { echo "gpu_pack: $*" >&2; exit 1; }
command -v nvcc >/dev/null || die "nvcc not found: the CUDA toolkit is needed to build the CUDA programs"

if [ $BUILD_FIRST = 1 ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTAU2_CUDA=ON -DTAU2_CUDA_EMU=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target "${PROGRAMS[@]}"
fi
for p in "${PROGRAMS[@]}"; do [ -x "$BUILD/$p" ] || die "$BUILD/$p missing (build it, or run without --no-build)"; done

DATA=${TAU2_DATA_DIR:-$ROOT/../shared/tau2-data}
[ -d "$DATA/domains" ] || die "no τ²-bench data at $DATA (set TAU2_DATA_DIR to a tau2-bench checkout's data/tau2)"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
P=$STAGE/tau2_gpu
mkdir -p "$P"/{bin,lib,glibc,mpi/bin,pmix,data}

# Libraries that stay the GPU machine's: glibc's (packed apart, in glibc/)
# and the CUDA ones (they must match its driver).
is_glibc() { [[ $1 =~ ^(ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libresolv|libutil|libmvec)\.so ]]; }
is_cuda() { [[ $1 =~ ^(libcuda|libcublas|libcublasLt|libnccl|libcudart|libnvidia-)[.-] ]]; }

# Copy the shared libraries that the ELF files given need (transitively,
# as ldd resolves them here) into lib/, or glibc/ for glibc's.
pack_libs() {
  ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3} $1 ~ /^\/.*ld-linux/ {print "ld-linux-x86-64.so.2", $1}' |
    sort -u | while read -r name path; do
      if is_cuda "$name"; then continue; fi
      if is_glibc "$name"; then dest=$P/glibc; else dest=$P/lib; fi
      [ -e "$dest/$name" ] || cp -L "$path" "$dest/$name"
    done
}

cp "${PROGRAMS[@]/#/$BUILD/}" "$P/bin/"
pack_libs "$P"/bin/*

# Open MPI at OPAL_PREFIX=mpi/: Debian's layout below its prefix /usr.
MPI_LIBDIR=$(ompi_info --path libdir --parsable 2>/dev/null | sed -n 's/^path:libdir://p')
MPI_PKGLIB=$(ompi_info --path pkglibdir --parsable 2>/dev/null | sed -n 's/^path:pkglibdir://p')
MPI_PKGDATA=$(ompi_info --path pkgdatadir --parsable 2>/dev/null | sed -n 's/^path:pkgdatadir://p')
MPI_PREFIX=$(ompi_info --path prefix --parsable 2>/dev/null | sed -n 's/^path:prefix://p')
[ -n "$MPI_PKGLIB" ] && [ -d "$MPI_PKGLIB" ] || die "ompi_info found no Open MPI components (is openmpi-bin installed?)"
cp -L "$(command -v orterun)" "$(command -v orted)" "$P/mpi/bin/"
ln -s orterun "$P/mpi/bin/mpirun"
ln -s orterun "$P/mpi/bin/mpiexec"
pack_libs "$P/mpi/bin/orterun" "$P/mpi/bin/orted"
dest_pkglib=$P/mpi/${MPI_PKGLIB#"$MPI_PREFIX"/}
mkdir -p "$dest_pkglib" "$P/mpi/${MPI_PKGDATA#"$MPI_PREFIX"/}"
cp -r "$MPI_PKGDATA"/. "$P/mpi/${MPI_PKGDATA#"$MPI_PREFIX"/}/"
# One node needs the shared-memory and TCP transports; a component whose
# libraries a bare machine lacks (InfiniBand, UCX, OFI, PSM) or that only
# OpenSHMEM uses stays behind, so that none fails to load.
skipped=()
for comp in "$MPI_PKGLIB"/*.so; do
  needs=$(ldd "$comp" | awk '$2 == "=>" {print $1}')
  if grep -Eq '^lib(ucp|uct|ucs|ucm|fabric|ibverbs|rdmacm|psm|psm2|psm_infinipath|infinipath|efa|oshmem|mca_common_(ucx|ofi|verbs))\.so' <<<"$needs"; then
    skipped+=("$(basename "$comp" .so)")
    continue
  fi
  cp -L "$comp" "$dest_pkglib/"
done
pack_libs "$dest_pkglib"/*.so
# mca components load libmpi's siblings (libmca_common_*) through RUNPATH
# $MPI_LIBDIR: they are in lib/ with LD_LIBRARY_PATH, which RUNPATH does not override.
echo "${skipped[@]}" >"$P/mpi/skipped-components"

# PMIx (Open MPI's pmix ext3x component loads Debian's PMIx): its components
# for PMIX_MCA_mca_base_component_path=pmix/lib/pmix.
[ -f "$dest_pkglib/mca_pmix_ext3x.so" ] || die "Open MPI's PMIx component (mca_pmix_ext3x) was not packed"
PMIX_LIB=$(ldd "$dest_pkglib/mca_pmix_ext3x.so" | awk '$1 == "libpmix.so.2" {print $3}')
if [ -n "$PMIX_LIB" ]; then
  PMIX_PREFIX=$(dirname "$(dirname "$(readlink -f "$PMIX_LIB")")")
  mkdir -p "$P/pmix/lib" "$P/pmix/share"
  [ -d "$PMIX_PREFIX/lib/pmix" ] && cp -rL "$PMIX_PREFIX/lib/pmix" "$P/pmix/lib/"
  [ -d "$PMIX_PREFIX/share/pmix" ] && cp -r "$PMIX_PREFIX/share/pmix" "$P/pmix/share/"
  [ -d "$P/pmix/lib/pmix" ] && pack_libs "$P"/pmix/lib/pmix/*.so
fi

cp -r "$DATA"/. "$P/data/"

{
  echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME"), glibc $(ldd --version | head -1 | awk '{print $NF}')"
  echo "build $(grep -E '^CMAKE_BUILD_TYPE' "$BUILD/CMakeCache.txt" | cut -d= -f2), nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  echo "glibc symbols needed: up to GLIBC_$(objdump -T "$P"/bin/* "$P"/lib/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1)"
  echo "programs: ${PROGRAMS[*]}"
  echo "open mpi components left out: ${skipped[*]}"
} >"$P/MANIFEST"

mkdir -p "$OUTDIR"
tar -C "$STAGE" -cf - tau2_gpu | xz -T"$(nproc)" "-${TAU2_PACK_XZ_LEVEL:-6}" >"$OUTDIR/tau2_gpu.tar.xz.tmp"
mv "$OUTDIR/tau2_gpu.tar.xz.tmp" "$OUTDIR/tau2_gpu.tar.xz"
cat "$P/MANIFEST"
echo "gpu_pack: $OUTDIR/tau2_gpu.tar.xz, $(du -m "$OUTDIR/tau2_gpu.tar.xz" | cut -f1) MiB ($(du -sm "$P" | cut -f1) MiB unpacked)"
