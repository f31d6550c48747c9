#!/usr/bin/env bash
# Install the Debian 12 packages tau2_hpc builds and tests with. Idempotent:
# packages already present are left alone; run as root or with sudo.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git python3
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libcjson-dev libcurl4-openssl-dev libopenblas-dev libxxhash-dev
  libpcre2-dev libutf8proc-dev libmicrohttpd-dev
  libcmocka-dev libssl-dev
  clang libclang-rt-14-dev libomp-dev
  chromium python3-protobuf
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
