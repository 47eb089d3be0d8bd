#!/usr/bin/env bash
# The GPU check, on the GPU machine, in one command that ends within 10 minutes. Runs from the
# bundle tools/gpu_bundle.sh made (gpu-bundle/, carried to the machine) and writes at most 8 files
# into $OUT (default: gpu-bundle/out):
#   nvidia-smi.txt  the device, driver, clocks
#   tests.log       mg_tests: the GPU tests first (GPU against CPU per op, whole steps), then the rest
#   sanitizer.log   compute-sanitizer memcheck, racecheck and initcheck over the GPU tests
#   bench.json      bench_kernels --benchmark_format=json, the cuda/ rows (MG_BENCH_ARGS to change)
#   train.log       a timed `mnist_gpu train --device cuda --epochs 3`, with graph capture and without
#   torch.log       tools/torch_peer.py --device cuda, eager and --compile, 3 epochs each
#   summary.txt     the table printed last
# Every step has a time cap and the whole run a deadline (MG_DEADLINE_S, default 540 s), so the
# summary always comes. A step that fails does not stop the others.
#
# Usage, on the GPU machine, from the repository root (with gpu-bundle/ copied there):
#   bash gpu-bundle/gpu_run.sh
# Our binaries get LD_LIBRARY_PATH = the bundled libraries this machine lacks, then
# /usr/local/cuda/lib64; python3 (PyTorch) keeps the machine's own environment.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-$here/out}"
deadline="${MG_DEADLINE_S:-540}"
epochs="${MG_EPOCHS:-3}"
mkdir -p "$out"
work="$(mktemp -d /tmp/mg-gpu.XXXXXX)"
# shellcheck source=/dev/null
source "$here/build.env"

names=() results=() times=() notes=()
record() { names+=("$1"); results+=("$2"); times+=("$3"); notes+=("$4"); }

# step NAME CAP_SECONDS LOG COMMAND...: runs COMMAND under timeout, appending to LOG.
step() {
  local name="$1" cap="$2" log="$3"
  shift 3
  local left=$((deadline - SECONDS))
  if ((left < 15)); then
    record "$name" "not run" 0 "out of time"
    return 99
  fi
  ((cap > left - 10)) && cap=$((left - 10))
  echo "=== $name (cap ${cap}s): $*" >>"$log"
  local t0=$SECONDS rc
  timeout -k 5 "$cap" "$@" >>"$log" 2>&1
  rc=$?
  local status="ok"
  ((rc == 124 || rc == 137)) && status="TIMEOUT"
  ((rc != 0 && rc != 124 && rc != 137)) && status="FAIL rc=$rc"
  echo "=== $name: $status after $((SECONDS - t0))s" >>"$log"
  record "$name" "$status" $((SECONDS - t0)) ""
  return $rc
}
note() { notes[${#notes[@]} - 1]="$1"; }
# The lines a LOG got from its last step.
last_run() { awk '/^=== .*\(cap [0-9]+s\)/{n=0; delete l} {l[n++]=$0} END{for(i=0;i<n;i++) print l[i]}' "$1"; }

# --- libraries: the bundled ones this machine lacks, then CUDA's -------------------------------
tar -C "$work" -xzf "$here/lib.tar.gz"
mkdir -p "$work/use"
for lib in "$work"/lib/*; do
  name="$(basename "$lib")"
  ldconfig -p | grep -q "^[[:space:]]*$name " || ln -s "$lib" "$work/use/$name"
done
libpath="$work/use:/usr/local/cuda/lib64:/usr/local/cuda/lib"
if [[ ! -e /usr/local/cuda/lib64/libcublas.so.13 && ! -e /usr/local/cuda/lib/libcublas.so.13 ]]; then
  # PyTorch's wheels carry cuBLAS and the runtime too.
  extra="$(python3 -c 'import nvidia.cublas as b, nvidia.cuda_runtime as r; print(b.__path__[0] + "/lib:" + r.__path__[0] + "/lib")' 2>/dev/null || true)"
  [[ -n "$extra" ]] && libpath="$libpath:$extra"
fi
ours=(env "LD_LIBRARY_PATH=$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")  # prefix for our binaries

# --- the paths the test binary was built with, and the data ----------------------------------
repo="$(cd "$here/.." && pwd)"
if [[ ! -e "$MG_SOURCE_DIR" ]]; then
  mkdir -p "$(dirname "$MG_SOURCE_DIR")" && ln -s "$repo" "$MG_SOURCE_DIR"
fi
if [[ ! -e "$MG_BINARY" ]]; then
  mkdir -p "$(dirname "$MG_BINARY")" && ln -s "$here/bin/mnist_gpu" "$MG_BINARY"
fi
data="$MG_SOURCE_DIR/data/mnist"
mkdir -p "$data"
for gz in "$here"/data/*.gz; do
  raw="$data/$(basename "$gz" .gz)"
  [[ -f "$raw" ]] || gunzip -c "$gz" >"$raw"
done

{
  echo "bundle: commit $MG_COMMIT, built $MG_BUILT; run $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname)"
  echo "bundled libraries used (missing here): $(ls "$work/use" | tr '\n' ' ')"
  echo "LD_LIBRARY_PATH for our binaries: $libpath"
  echo
} | tee "$out/tests.log" >"$out/sanitizer.log"

# --- 1. the device --------------------------------------------------------------------------
step "nvidia-smi" 30 "$out/nvidia-smi.txt" bash -c \
  'nvidia-smi; nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv'
note "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"

# --- 2. tests -------------------------------------------------------------------------------
gpu_filter='Cuda.*:Grids/CudaOp.*:CudaErrors.*:CudaUsable.*:KernelMath.*'
gtest_counts() {  # passed/failed/skipped of the last step's gtest run
  local run p f s
  run="$(last_run "$out/tests.log")"
  p="$(grep -o '\[  PASSED  \] [0-9]* test' <<<"$run" | tail -1 | grep -o '[0-9][0-9]*')"
  f="$(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)$' <<<"$run")"  # one per failed test, brief or not
  s="$(grep -o '\[  SKIPPED \] [0-9]* test' <<<"$run" | tail -1 | grep -o '[0-9][0-9]*')"
  echo "passed ${p:-?} failed ${f:-0} skipped ${s:-0}"
}
step "GPU tests" 150 "$out/tests.log" "${ours[@]}" "$here/bin/mg_tests" --gtest_filter="$gpu_filter" --gtest_color=no
note "$(gtest_counts "$out/tests.log")"
step "other tests" 150 "$out/tests.log" "${ours[@]}" "$here/bin/mg_tests" --gtest_filter="-$gpu_filter" --gtest_brief=1 --gtest_color=no
note "$(gtest_counts "$out/tests.log")"

# --- 3. compute-sanitizer ---------------------------------------------------------------------
sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
errors() { last_run "$out/sanitizer.log" | grep -o 'ERROR SUMMARY: [0-9]* error' | tail -1 | grep -o '[0-9]*' || echo '?'; }
if [[ -x "$sanitizer" ]]; then
  step "memcheck" 150 "$out/sanitizer.log" "${ours[@]}" "$sanitizer" --tool memcheck --leak-check full \
    --print-limit 20 --error-exitcode 1 "$here/bin/mg_tests" --gtest_brief=1 \
    --gtest_filter='Grids/CudaOp.*:Cuda.NetworkStep*:Cuda.GraphReplay*:Cuda.DeviceBuffers*:Cuda.Gemm*'
  note "errors: $(errors)"
  step "racecheck" 60 "$out/sanitizer.log" "${ours[@]}" "$sanitizer" --tool racecheck --print-limit 20 \
    --error-exitcode 1 "$here/bin/mg_tests" --gtest_brief=1 \
    --gtest_filter='Grids/CudaOp.Conv*/FullGrid:Grids/CudaOp.Softmax*/FullGrid:Grids/CudaOp.Adam*/FullGrid'
  note "hazards: $(errors)"
  step "initcheck" 90 "$out/sanitizer.log" "${ours[@]}" "$sanitizer" --tool initcheck --print-limit 20 \
    --error-exitcode 1 "$here/bin/mg_tests" --gtest_brief=1 \
    --gtest_filter='Grids/CudaOp.*/FullGrid:Cuda.NetworkStep*'
  note "errors: $(errors)"
else
  record "compute-sanitizer" "not run" 0 "not found on this machine"
fi

# --- 4. benchmarks ---------------------------------------------------------------------------
if [[ -x "$here/bin/bench_kernels" ]]; then
  # shellcheck disable=SC2086
  step "bench_kernels" 90 "$work/bench.err" "${ours[@]}" bash -c \
    "'$here/bin/bench_kernels' --benchmark_format=json ${MG_BENCH_ARGS:---benchmark_filter=^cuda/} >'$out/bench.json'"
  note "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["benchmarks"]), "benchmarks")' "$out/bench.json" 2>/dev/null || tail -1 "$work/bench.err")"
else
  record "bench_kernels" "not run" 0 "not in the bundle"
fi

# --- 5. the seed protocol, timed ---------------------------------------------------------------
mkdir -p "$work/train"
for mode in graph eager; do
  graph_env=1
  [[ $mode == eager ]] && graph_env=0
  step "train $mode ($epochs epochs)" 120 "$out/train.log" "${ours[@]}" MNIST_GPU_CUDA_GRAPH=$graph_env bash -c \
    "cd '$work/train' && time '$here/bin/mnist_gpu' train --device cuda --epochs $epochs --data '$data'"
  note "$(last_run "$out/train.log" | grep -v '^===' | grep -E '[Ee]poch|^test:|^real' | tail -3 | tr '\n' ' ' | cut -c1-160)"
done

# --- 6. the PyTorch peer ---------------------------------------------------------------------
torch_note() { last_run "$out/torch.log" | grep -E '^(compile|warm-up):|^Epoch' | tail -2 | tr '\n' ' ' | cut -c1-160; }
step "torch eager" 120 "$out/torch.log" python3 "$here/torch_peer.py" --device cuda --epochs "$epochs" \
  --threads "$(nproc)" --data "$data"
note "$(torch_note)"
step "torch compile" 180 "$out/torch.log" python3 "$here/torch_peer.py" --device cuda --epochs "$epochs" \
  --threads "$(nproc)" --data "$data" --compile
note "$(torch_note)"

# --- 7. the table ----------------------------------------------------------------------------
{
  echo "GPU check of mnist_gpu $MG_COMMIT: $(date -u +%Y-%m-%dT%H:%MZ), ${SECONDS}s"
  printf '%-24s %-14s %6s  %s\n' "step" "result" "secs" "notes"
  for i in "${!names[@]}"; do
    printf '%-24s %-14s %6s  %s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}" "${notes[$i]}"
  done
} | tee "$out/summary.txt"
rm -rf "$work"
