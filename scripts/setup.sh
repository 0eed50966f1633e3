#!/usr/bin/env bash
# Installs every Debian 12 package WiCo++ needs to build, test, benchmark and run its demo.
# Idempotent and quiet: prints nothing when everything is already there; on failure prints what
# apt said and exits non-zero.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev            # LibTorch 1.13 (CPU); c10d with Gloo
  libgloo-dev             # the headers c10d's ProcessGroupGloo needs
  libopenblas0-openmp     # an optimised BLAS: ~40x the reference BLAS on GEMM
  libdnnl-dev             # oneDNN headers: Winograd 3x3 convolutions (LibTorch runs the same library)
  libopencv-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  libgtest-dev libgmock-dev
  zlib1g-dev              # gzip-compressed CLIP BPE merges
  libhdf5-dev             # Keras HDF5 weight files (MCN's and VLT's)
  clang libclang-rt-14-dev  # libFuzzer targets (WICO_BUILD_FUZZERS, asan preset)
  python3 python3-numpy python3-torch python3-torchvision  # reference outputs and benchmarks
  python3-pil             # Pillow: scripts/make_pil_resize_fixtures.py (data.resize_filter pil)
  python3-h5py            # scripts/make_keras_h5_fixtures.py (Keras's HDF5 layout)
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  log=$(mktemp)
  echo "setup.sh: installing ${#missing[@]} package(s): ${missing[*]}"
  if ! { $SUDO apt-get update -qq && \
         $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           "${missing[@]}"; } >"$log" 2>&1; then
    echo "setup.sh: apt-get failed; its output:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  rm -f "$log"
fi

# LibTorch links the generic libblas.so.3; point it at OpenBLAS (OpenMP build) if something else
# (the reference BLAS, ~4 GFLOP/s) is selected.
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3; do
  target="/usr/lib/$arch/openblas-openmp/$lib"
  name="$lib-$arch"
  if [ -e "$target" ] && [ "$(readlink -f "/etc/alternatives/$name" 2>/dev/null)" != "$target" ]; then
    $SUDO update-alternatives --quiet --set "$name" "$target"
  fi
done
