#!/usr/bin/env bash
# Builds, here (no GPU needed), everything the GPU check needs into the git-ignored folder
# gpu-bundle/, from a clean checkout in one command: MNIST is fetched first if data/mnist lacks
# it (tools/get_mnist.sh), then a Release build for sm_90 in build-gpu/, then
#   bin/       mg_tests, bench_kernels (if it builds), mnist_gpu
#   lib.tar.gz the shared libraries they need that are neither CUDA's (the GPU machine has its own
#              toolkit) nor the base system's (glibc, libstdc++, libgcc_s, zlib); gpu_run.sh puts on
#              the library path only those the GPU machine lacks
#   data/      the four MNIST files, gzipped
#   gpu_run.sh, gpu_report.py, torch_peer.py, build.env (commit, paths the tests were built with)
# An ldd check of every binary lists what is missing here before the bundle is made, and the
# libraries the GPU machine must provide itself. Prints the size, which must stay under 48 MiB
# (a device call carries 64 MiB, the working tree included).
#
# Usage: tools/gpu_bundle.sh            (JOBS=2 by default; BUILD_DIR to build elsewhere)
# Then, on the GPU machine, from the repository root: bash gpu-bundle/gpu_run.sh --pass 1 (then 2)
# See docs/gpu-validation.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build-gpu}"
bundle="$root/gpu-bundle"
jobs="${JOBS:-2}"
data="$root/data/mnist"

die() {
  echo "gpu_bundle: $*" >&2
  exit 1
}

[[ -x /usr/local/cuda/bin/nvcc ]] || die "no /usr/local/cuda/bin/nvcc: the bundle needs a CUDA build"
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
for f in "${files[@]}"; do
  if [[ ! -f "$data/$f" && ! -f "$data/$f.gz" ]]; then
    echo "gpu_bundle: $data has no $f: fetching MNIST (tools/get_mnist.sh)"
    "$root/tools/get_mnist.sh" "$data" || die "could not fetch MNIST into $data"
    break
  fi
done

start=$SECONDS
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMNIST_GPU_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 "${launcher[@]}" >/dev/null
nice -n 5 ninja -C "$build" -j"$jobs" mg_tests mnist_gpu
[[ -f "$build/libmg_cuda.a" ]] || die "$build has no CUDA backend (libmg_cuda.a): configure did not find nvcc"
bins=("$build/tests/mg_tests" "$build/mnist_gpu")
if nice -n 5 ninja -C "$build" -j"$jobs" bench_kernels; then
  bins+=("$build/bench_kernels")
else
  echo "gpu_bundle: bench_kernels did not build; the bundle goes without it" >&2
fi
echo "gpu_bundle: built in $((SECONDS - start)) s"

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/data"
cp "${bins[@]}" "$bundle/bin/"

# Shared libraries: the ldd closure of the binaries, less CUDA's and the base system's.
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/lib"
base='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libstdc\+\+\.so|libgcc_s\.so|libz\.so)'
cuda='^(libcuda\.so|libcudart\.so|libcublas\.so|libcublasLt\.so|libnvidia|libnvrtc|libnvJitLink)'
for b in "${bins[@]}"; do
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ "$name" =~ $base || "$name" =~ $cuda ]] && continue
  cp -L "$path" "$staging/lib/$name"
done
missing="$(for b in "${bins[@]}"; do ldd "$b" | awk -v b="$(basename "$b")" '/not found/ {print "  " $1 " (" b ")"}'; done)"
[[ -z "$missing" ]] || die "libraries missing here, so not bundled:
$missing"
echo "gpu_bundle: every library of ${#bins[@]} binaries resolves here; the GPU machine must provide" \
  "$(for b in "${bins[@]}"; do ldd "$b"; done | awk '$2 == "=>" {print $1}' | grep -E "$cuda" | sort -u | tr '\n' ' ')"
tar -C "$staging" -czf "$bundle/lib.tar.gz" lib

for f in "${files[@]}"; do
  if [[ -f "$data/$f.gz" ]]; then
    cp "$data/$f.gz" "$bundle/data/"
  else
    gzip -9 -c "$data/$f" >"$bundle/data/$f.gz"
  fi
done

cp "$root/tools/torch_peer.py" "$root/tools/gpu_run.sh" "$root/tools/gpu_report.py" "$bundle/"
# The test binary has two paths compiled in (the source folder, the mnist_gpu binary); gpu_run.sh
# recreates them on the GPU machine.
{
  echo "MG_COMMIT=$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- . 2>/dev/null || echo '+dirty')"
  echo "MG_SOURCE_DIR=$root"
  echo "MG_BINARY=$build/mnist_gpu"
  echo "MG_BUILT=$(date -u +%Y-%m-%dT%H:%MZ)"
} >"$bundle/build.env"

echo "gpu_bundle: contents"
(cd "$bundle" && du -ah . | sort -k2)
tar -tzf "$bundle/lib.tar.gz"
size_kib=$(du -sk "$bundle" | cut -f1)
echo "gpu_bundle: $bundle is $((size_kib / 1024)) MiB (the limit for a device call is 64 MiB)"
((size_kib < 48 * 1024)) || die "the bundle is over 48 MiB: too close to the 64 MiB limit"
