#!/usr/bin/env bash
# The GPU check of mnist_gpu, on the GPU machine, in two passes of at most about 4 minutes each
# (docs/gpu-validation.md has the plan and what each step proves). Runs from the bundle that
# tools/gpu_bundle.sh made (gpu-bundle/, carried to the machine), from the repository root:
#
#   bash gpu-bundle/gpu_run.sh --pass 1   does the backend work: ldd, nvidia-smi, the GPU tests,
#                                         3 epochs with graphs (test accuracy >= 0.985) and 1 eager,
#                                         3 epochs in TF32, the batch-128 benchmark rows, memcheck
#                                         over the GPU op tests
#   bash gpu-bundle/gpu_run.sh --pass 2   depth: what pass 1 found failing, again; racecheck and
#                                         initcheck on our kernels; every kernel variant timed
#                                         side by side; ours and PyTorch on this GPU in this call
#                                         (eager, torch.compile), per epoch; the whole benchmark
#                                         sweep
#
# Every step has a time cap, and the pass a deadline (MG_DEADLINE_S, default 240 s) that clips the
# caps, so the summary always comes, also when a step hangs or fails; a failed step does not stop
# the others. Without a GPU (or with MG_ASSUME_NO_GPU=1) each GPU step says "no GPU" and is
# skipped. Writes into $OUT (default gpu-bundle/out-pass<N>), at most 7 files:
#   summary.txt  the table, printed last (and rewritten after every step)
#   failed.txt   what failed, one per line, "step ID" or "test NAME"; pass 2 reruns the list in
#                MG_RERUN_FILE, else gpu-bundle/rerun.txt, else pass 1's copy on this machine
#   bench.json   bench_kernels' JSON, valid even when the step was cut off; bench.log its output
#   variants.json, variants.log   the same for pass 2's kernel-variant rows
#   logs.tar.gz  every step's log, the runs' metrics.json and history.csv, PyTorch's JSON
# Exit status: 0 every step passed, 1 a step failed or timed out, 2 bad usage, 3 no GPU here.
#
# Also: MG_STEPS="id ..." runs only those steps; MG_TORCH_COMPILE_MODE (default reduce-overhead)
# is torch.compile's mode; MG_BENCH_ARGS are added to bench_kernels' arguments.
# Our binaries get LD_LIBRARY_PATH = the bundled libraries this machine lacks, then the
# directories holding CUDA 13's libcudart, libcublas and libcublasLt (the toolkit, or the wheels
# PyTorch brings: site-packages/nvidia/cu13/lib, found by name); python3 keeps its own environment.
set -uo pipefail

usage() { sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
pass=""
while (($#)); do
  case "$1" in
    --pass) pass="${2:-}"; shift; (($#)) && shift ;;
    --pass=*) pass="${1#--pass=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_run: unknown argument '$1'; see --help" >&2; exit 2 ;;
  esac
done
if [[ "$pass" != 1 && "$pass" != 2 ]]; then
  echo "gpu_run: say which pass: --pass 1 or --pass 2 (see --help)" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-$here/out-pass$pass}"
deadline="${MG_DEADLINE_S:-240}"
reserve=10  # seconds kept after the last step for the summary and the logs' archive
compile_mode="${MG_TORCH_COMPILE_MODE:-reduce-overhead}"
mkdir -p "$out" || exit 2
rm -f "$out/summary.txt" "$out/failed.txt" "$out/bench.json" "$out/bench.log" "$out/logs.tar.gz" \
  "$out/variants.json" "$out/variants.log"
work="$(mktemp -d /tmp/mg-gpu.XXXXXX)"
logs="$work/logs"
runs="$work/runs"
mkdir -p "$logs" "$runs"
if [[ ! -f "$here/build.env" ]]; then
  echo "gpu_run: $here/build.env is missing: this is not a bundle made by tools/gpu_bundle.sh" >&2
  exit 2
fi
# shellcheck source=/dev/null
source "$here/build.env"

# --- the table ---------------------------------------------------------------------------------
ids=() results=() secs=() caps=() notes=() failed=()
gpu_line="not probed yet" lib_line="not resolved yet"

write_summary() {
  {
    echo "mnist_gpu GPU check, pass $pass: commit $MG_COMMIT (bundle built $MG_BUILT)," \
      "run $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), ${SECONDS} s of its ${deadline} s deadline"
    echo "device: $gpu_line"
    echo "libraries: $lib_line"
    printf '%-20s %-24s %5s %5s  %s\n' step result secs cap notes
    for i in "${!ids[@]}"; do
      printf '%-20s %-24s %5s %5s  %s\n' "${ids[$i]}" "${results[$i]}" "${secs[$i]}" "${caps[$i]}" \
        "${notes[$i]}"
    done
    if [[ -s "$work/compare.txt" ]]; then
      echo
      cat "$work/compare.txt"
    fi
    echo
    if ((${#failed[@]})); then
      echo "failed (failed.txt, for the rerun): ${failed[*]}"
    else
      echo "failed: nothing"
    fi
  } >"$out/summary.txt.tmp" && mv "$out/summary.txt.tmp" "$out/summary.txt"
}

# record ID RESULT SECONDS CAP NOTE: a row of the table; failures go on the rerun list.
record() {
  ids+=("$1") results+=("$2") secs+=("$3") caps+=("$4") notes+=("$5")
  local base="${1#rerun-}"
  case "$2" in FAIL* | TIMEOUT*) failed+=("step ${base%-unfiltered}") ;; esac
  printf '[%4ds] %-20s %s%s\n' "$SECONDS" "$1" "$2" "${5:+  ($5)}"
  write_summary
}
# note TEXT: the last row's note. fail_check TEXT: the last row failed a check after its command.
note() {
  local text="$1"
  text="${text%"${text##*[![:space:]]}"}"
  notes[${#notes[@]} - 1]="$text"
  printf '        %s\n' "$text"
  write_summary
}
fail_check() {
  local i=$((${#ids[@]} - 1))
  if [[ "${results[$i]}" == ok ]]; then
    results[$i]="FAIL: $1"
    local base="${ids[$i]#rerun-}"
    failed+=("step ${base%-unfiltered}")
  fi
  write_summary
}
unlist_step() {  # a step whose failures are listed test by test instead
  local keep=() f
  for f in "${failed[@]}"; do [[ "$f" == "step $1" ]] || keep+=("$f"); done
  failed=("${keep[@]}")
}

# step ID CAP LOG COMMAND...: COMMAND under `timeout`, its output appended to LOG ($logs/LOG, or
# LOG itself if absolute). The cap is clipped to what the deadline leaves; when too little is
# left, the step is "not run" and ran=0 (the callers then leave its row as it is).
ran=0
step() {
  local id="$1" cap="$2" log="$3"
  shift 3
  [[ "$log" == /* ]] || log="$logs/$log"
  local left=$((deadline - SECONDS - reserve))
  ran=0
  if ((left < 5)); then
    record "$id" "not run" 0 "$cap" "out of time: the ${deadline} s deadline"
    return 99
  fi
  ran=1
  ((cap > left)) && cap=$left
  echo "=== $id (cap ${cap}s): $*" >>"$log"
  local t0=$SECONDS rc
  timeout -k 5 "$cap" "$@" >>"$log" 2>&1
  rc=$?
  local result=ok
  if ((rc == 124 || rc == 137)); then
    result="TIMEOUT"
  elif ((rc != 0)); then
    result="FAIL rc=$rc"
  fi
  echo "=== $id: $result after $((SECONDS - t0))s" >>"$log"
  record "$id" "$result" $((SECONDS - t0)) "$cap" ""
  return $rc
}

wanted() { [[ -z "${MG_STEPS:-}" || " $MG_STEPS " == *" ${1#rerun-} "* ]]; }

# gpu ID CAP: false, with a row saying so, when this machine has no GPU.
gpu() {
  ((have_gpu)) && return 0
  record "$1" "no GPU" 0 "$2" "skipped: $gpu_why"
  return 1
}

# The lines a log got from its last step.
last_run() { awk '/^=== .*\(cap [0-9]+s\)/{n=0; delete l} {l[n++]=$0} END{for(i=0;i<n;i++) print l[i]}' "$1"; }
report() { python3 "$here/gpu_report.py" "$@" 2>&1 | tail -n 20; return "${PIPESTATUS[0]}"; }

finish() {
  local rc=$?
  trap - EXIT
  {
    echo "# mnist_gpu GPU check pass $pass, commit $MG_COMMIT: what failed, one per line."
    echo "# Pass 2 reruns this list: copy this file to gpu-bundle/rerun.txt (or set MG_RERUN_FILE)."
    ((${#failed[@]})) && printf '%s\n' "${failed[@]}"
  } >"$out/failed.txt"
  if ((pass == 1)); then
    mkdir -p /tmp/mg-gpu-pass1 && cp "$out/failed.txt" /tmp/mg-gpu-pass1/failed.txt 2>/dev/null
  fi
  for r in "$runs"/*/; do
    [[ -d "$r" ]] || continue
    mkdir -p "$logs/runs/$(basename "$r")"
    cp "$r"/metrics.json "$r"/history.csv "$logs/runs/$(basename "$r")/" 2>/dev/null
  done
  cp "$runs"/*.json "$logs/" 2>/dev/null
  [[ -s "$work/compare.txt" ]] && cp "$work/compare.txt" "$logs/"
  write_summary
  cp "$out/summary.txt" "$logs/" 2>/dev/null
  tar -C "$work" -czf "$out/logs.tar.gz" logs 2>/dev/null
  echo
  cat "$out/summary.txt"
  rm -rf "$work"
  if ((rc == 0)); then
    local r
    for r in "${results[@]}"; do
      case "$r" in FAIL* | TIMEOUT*) rc=1 ;; esac
    done
    ((rc == 0 && !have_gpu)) && rc=3
  fi
  exit "$rc"
}
have_gpu=0
trap finish EXIT
trap 'echo "gpu_run: interrupted" >&2; exit 130' INT TERM

# --- the machine: GPU, libraries, data ---------------------------------------------------------
if [[ -n "${MG_ASSUME_NO_GPU:-}" ]]; then
  gpu_why="MG_ASSUME_NO_GPU is set"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  gpu_why="no nvidia-smi on this machine"
elif ! nvidia-smi -L >"$work/gpus" 2>&1 || ! grep -q '^GPU ' "$work/gpus"; then
  gpu_why="nvidia-smi -L: $(head -n 1 "$work/gpus")"
else
  have_gpu=1
fi
if ((have_gpu)); then
  gpu_line="$(head -n 1 "$work/gpus"); driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
else
  gpu_line="no GPU ($gpu_why): every GPU step is skipped"
fi

# Bundled libraries that this machine lacks. (The linker cache is read once: `ldconfig -p | grep -q`
# under pipefail fails whenever grep quits before ldconfig has written everything.)
ldcache="$(ldconfig -p 2>/dev/null)"
in_ldcache() { grep -q "^[[:space:]]*$1 " <<<"$ldcache"; }
mkdir -p "$work/use"
if [[ -f "$here/lib.tar.gz" ]]; then
  tar -C "$work" -xzf "$here/lib.tar.gz"
  for lib in "$work"/lib/*; do
    [[ -e "$lib" ]] || continue
    name="$(basename "$lib")"
    in_ldcache "$name" || ln -s "$lib" "$work/use/$name"
  done
fi
# CUDA 13's runtime and cuBLAS: where the loader finds them, else in the toolkit, else wherever a
# Python wheel put them (CUDA 13 wheels: site-packages/nvidia/cu13/lib; older: nvidia/<lib>/lib).
site_dirs="$(python3 -c 'import site; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)"
libpath="$work/use"
lib_notes=()
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do
  if in_ldcache "$lib"; then
    lib_notes+=("$lib: system")
    continue
  fi
  dir=""
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
    /usr/local/cuda-13*/lib64; do
    [[ -e "$d/$lib" ]] && { dir="$d"; break; }
  done
  if [[ -z "$dir" ]]; then
    while IFS= read -r sp; do
      [[ -d "$sp" ]] || continue
      for d in "$sp/nvidia/cu13/lib" "$sp/nvidia/cublas/lib" "$sp/nvidia/cuda_runtime/lib" \
        "$sp/torch/lib"; do
        [[ -e "$d/$lib" ]] && { dir="$d"; break 2; }
      done
      found="$(find "$sp/nvidia" "$sp/torch" -maxdepth 4 -name "$lib" -print -quit 2>/dev/null)"
      [[ -n "$found" ]] && { dir="$(dirname "$found")"; break; }
    done <<<"$site_dirs"
  fi
  if [[ -n "$dir" ]]; then
    lib_notes+=("$lib: $dir")
    [[ ":$libpath:" == *":$dir:"* ]] || libpath="$libpath:$dir"
  else
    lib_notes+=("$lib: NOT FOUND")
  fi
done
bundled_used="$(ls "$work/use" | tr '\n' ' ')"
lib_line="bundled ones used (missing here): ${bundled_used:-none}; ${lib_notes[*]}"
export MG_LIBPATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ours=(env "LD_LIBRARY_PATH=$MG_LIBPATH")

# The test binary has two paths compiled in (the source folder, the mnist_gpu binary): where they
# do not exist, they point at the bundle.
repo="$(cd "$here/.." && pwd)"
if [[ ! -e "$MG_SOURCE_DIR" ]]; then
  mkdir -p "$(dirname "$MG_SOURCE_DIR")" 2>/dev/null && ln -s "$repo" "$MG_SOURCE_DIR" 2>/dev/null
fi
if [[ ! -e "$MG_BINARY" ]]; then
  mkdir -p "$(dirname "$MG_BINARY")" 2>/dev/null && ln -s "$here/bin/mnist_gpu" "$MG_BINARY" 2>/dev/null
fi
data="$work/data/mnist"
mkdir -p "$data"
for gz in "$here"/data/*.gz; do
  [[ -e "$gz" ]] && gunzip -c "$gz" >"$data/$(basename "$gz" .gz)"
done
bins=("$here"/bin/*)
sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
# cuBLAS's and Thrust/CUB's kernels: racecheck and initcheck leave them out (their hazards are
# theirs); memcheck checks them, since a bad argument of ours faults inside them.
vendor_kernels='cublas|cutlass|gemm|gemv|xmma|splitK|cub|thrust'
gpu_filter='Cuda.*:Grids/CudaOp.*:GridsAndVariants/CudaVariantOp.*:CudaErrors.*:CudaUsable.*:KernelMath.*:KernelVariants.*'
op_filter='Grids/CudaOp.*/FullGrid:GridsAndVariants/CudaVariantOp.*/FullGrid_v*:Cuda.NetworkStepGradientsMatchTheCpu:Cuda.GraphReplay*:Cuda.DeviceBuffers*:Cuda.Gemm*:Cuda.TheFirstStep*'
shared_memory_filter='GridsAndVariants/CudaVariantOp.Conv*/FullGrid_v*:Grids/CudaOp.Dense*/FullGrid:Grids/CudaOp.Softmax*/FullGrid:Grids/CudaOp.Adam*/FullGrid:Grids/CudaOp.GatherAugmented*/FullGrid'
write_summary
echo "gpu_run pass $pass: $gpu_line"
echo "gpu_run: ${lib_notes[*]}"

# --- the steps ---------------------------------------------------------------------------------

# Every bundled binary's libraries resolve with the path our binaries get; prints what is missing.
check_libraries() {
  local b missing
  for b in "$@"; do
    echo "--- $b"
    LD_LIBRARY_PATH="$MG_LIBPATH" ldd "$b"
  done
  missing="$(for b in "$@"; do LD_LIBRARY_PATH="$MG_LIBPATH" ldd "$b" | awk -v b="$(basename "$b")" '/not found/ {print $1 " (" b ")"}'; done)"
  if [[ -n "$missing" ]]; then
    echo "MISSING: $(echo "$missing" | tr '\n' ' ')"
    return 1
  fi
  echo "every library of $# binaries found"
}
export -f check_libraries
run_ldd() {
  local id="${1:-ldd}"
  wanted "$id" || return 0
  step "$id" 10 ldd.txt bash -c 'check_libraries "$@"' _ "${bins[@]}"
  ((ran)) || return 0
  note "$(grep -E '^(MISSING|every library)' "$logs/ldd.txt" | tail -n 1)"
}

run_nvidia_smi() {
  local id="${1:-nvidia-smi}"
  wanted "$id" || return 0
  gpu "$id" 10 || return 0
  step "$id" 10 nvidia-smi.txt bash -c 'nvidia-smi; nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,temperature.gpu --format=csv'
  ((ran)) || return 0
  note "$(grep -A1 '^name' "$logs/nvidia-smi.txt" | tail -n 1 | cut -c1-150)"
}

# tests ID CAP FILTER [REPEAT]: mg_tests' GPU tests; the failed or unfinished ones are listed.
run_tests() {
  local id="$1" cap="$2" filter="$3" repeat="${4:-1}"
  wanted "$id" || return 0
  gpu "$id" "$cap" || return 0
  step "$id" "$cap" tests.log "${ours[@]}" "$here/bin/mg_tests" --gtest_filter="$filter" \
    --gtest_repeat="$repeat" --gtest_color=no
  ((ran)) || return 0
  last_run "$logs/tests.log" >"$work/last-tests.log"
  : >"$work/failed-tests.txt"
  note "$(report gtest "$work/last-tests.log" --failed "$work/failed-tests.txt") $(grep -h '^\[ TF32' "$work/last-tests.log" | head -n 1)"
  if [[ -s "$work/failed-tests.txt" ]]; then
    # Failed tests are listed one by one; a step cut off by its cap stays listed whole, since the
    # tests after the one it hung in never ran.
    [[ "${results[${#results[@]} - 1]}" == TIMEOUT ]] || unlist_step "${id#rerun-}"
    mapfile -t -O "${#failed[@]}" failed < <(sort -u "$work/failed-tests.txt")
    write_summary
  fi
}

# train ID CAP RUN EPOCHS MIN_ACCURACY ARGS...: `mnist_gpu train --device cuda`, its epoch times
# and test accuracy (checked against MIN_ACCURACY unless it is "-").
run_train() {
  local id="$1" cap="$2" run="$3" epochs="$4" min="$5"
  shift 5
  wanted "$id" || return 0
  gpu "$id" "$cap" || return 0
  rm -rf "${runs:?}/$run"
  step "$id" "$cap" "$id.log" "${ours[@]}" "$here/bin/mnist_gpu" train --device cuda \
    --no-download --data "$data" --epochs "$epochs" --out "$runs/$run" "$@"
  ((ran)) || return 0
  last_run "$logs/$id.log" >"$work/last-train.log"
  local line rc
  if [[ "$min" == - ]]; then
    line="$(report train "$work/last-train.log")"
  else
    line="$(report train "$work/last-train.log" --min-accuracy "$min")"
    rc=$?
    ((rc != 0)) && fail_check "test accuracy below $min"
  fi
  local detail
  detail="$(grep -m1 -o 'device cuda:[^,]*' "$work/last-train.log" || grep -m1 'error' "$work/last-train.log")"
  note "$line; ${detail:0:120}"
}

# bench ID CAP FILTER [NAME]: bench_kernels' CUDA rows into NAME.json (salvaged if cut off) and
# NAME.log, NAME bench unless given.
run_bench() {
  local id="$1" cap="$2" filter="$3" name="${4:-bench}"
  local extra=("${@:5}")
  wanted "$id" || return 0
  gpu "$id" "$cap" || return 0
  if [[ ! -x "$here/bin/bench_kernels" ]]; then
    record "$id" "not run" 0 "$cap" "bench_kernels is not in the bundle"
    return 0
  fi
  # shellcheck disable=SC2086
  step "$id" "$cap" "$out/$name.log" "${ours[@]}" "$here/bin/bench_kernels" \
    --benchmark_filter="$filter" --benchmark_out="$out/$name.json" --benchmark_out_format=json \
    ${extra[@]+"${extra[@]}"} ${MG_BENCH_ARGS:-}
  ((ran)) || return 0
  report salvage "$out/$name.json" >"$work/salvage.txt"
  local line rc
  line="$(report bench "$out/$name.json")"
  rc=$?
  grep -q 'cut off' "$work/salvage.txt" && line="$line; JSON salvaged after the cut"
  grep -q '^0 benchmarks' <<<"$line" && line="$line; $(grep -v '^=== ' "$out/$name.log" | tail -n 1 | cut -c1-100)"
  note "$line"
  ((rc != 0)) && fail_check "benchmark errors"
}

# sanitize ID CAP TOOL FILTER [EXTRA...]: compute-sanitizer TOOL over mg_tests --gtest_filter.
run_sanitizer() {
  local id="$1" cap="$2" tool="$3" filter="$4"
  shift 4
  wanted "$id" || return 0
  gpu "$id" "$cap" || return 0
  if [[ ! -x "$sanitizer" ]]; then
    record "$id" "not run" 0 "$cap" "no compute-sanitizer on this machine"
    return 0
  fi
  step "$id" "$cap" "$id.log" "${ours[@]}" "$sanitizer" --tool "$tool" --print-limit 50 \
    --error-exitcode 1 "$@" "$here/bin/mg_tests" --gtest_color=no --gtest_filter="$filter"
  ((ran)) || return 0
  last_run "$logs/$id.log" >"$work/last-sanitizer.log"
  # A kernel filter this compute-sanitizer does not understand stops it before any test ran:
  # then once more without it (the reports are still told apart, ours from the vendors').
  if [[ "$*" == *--kernel-name* ]] && ! grep -q '^\[==========\]' "$work/last-sanitizer.log" &&
    grep -qi 'kernel-name\|regex' < <(grep -v '^=== ' "$work/last-sanitizer.log"); then
    results[${#results[@]} - 1]="not run"
    notes[${#notes[@]} - 1]="the kernel filter was refused: $(grep -v '^=== ' "$work/last-sanitizer.log" | grep -m1 -i 'error\|unrecognized\|invalid' | cut -c1-100)"
    unlist_step "$id"
    step "$id-unfiltered" "$cap" "$id.log" "${ours[@]}" "$sanitizer" --tool "$tool" \
      --print-limit 50 --error-exitcode 1 "$here/bin/mg_tests" --gtest_color=no \
      --gtest_filter="$filter"
    ((ran)) || return 0
    last_run "$logs/$id.log" >"$work/last-sanitizer.log"
  fi
  note "$(report sanitizer "$tool" "$work/last-sanitizer.log") $(report gtest "$work/last-sanitizer.log" | cut -d';' -f1)"
}

# torch ID CAP NAME ARGS...: tools/torch_peer.py on this GPU, its JSON into $runs/NAME.json.
run_torch() {
  local id="$1" cap="$2" name="$3"
  shift 3
  wanted "$id" || return 0
  gpu "$id" "$cap" || return 0
  step "$id" "$cap" torch.log env PYTHONUNBUFFERED=1 python3 "$here/torch_peer.py" --device cuda \
    --epochs 3 --threads "$(nproc)" --data "$data" --json "$runs/$name.json" "$@"
  ((ran)) || return 0
  last_run "$logs/torch.log" | grep -v '^=== ' >"$work/last-torch.log"
  local line
  line="$(grep -E '^(precision|compile|warm-up):|^torch_peer:' "$work/last-torch.log" | tr '\n' ' ')"
  [[ -n "$line" ]] || line="$(tail -n 1 "$work/last-torch.log")"
  note "${line:0:200}"
}

compare() {
  ((have_gpu)) || return 0
  report compare --ours "fp32=$runs/ours-fp32/metrics.json" --ours "tf32=$runs/ours-tf32/metrics.json" \
    --peer "eager-fp32=$runs/torch-eager-fp32.json" --peer "compiled-fp32=$runs/torch-compiled-fp32.json" \
    --peer "eager-tf32=$runs/torch-eager-tf32.json" >"$work/compare.txt"
  write_summary
}

# bench_kernels' rows (names end in /manual_time): the ops of the step and the whole step at
# batch 128, and at every batch, without the kernel-variant rows (cuda/<layer>/<kernel>/v<N>/128,
# cuda/train_step/v<set>/128), which pass 2's bench-variants runs on their own.
step_rows_128='^cuda/[^/]+/([^v/][^/]*/)?128/'
step_rows_all='^cuda/[^/]+/([^v/][^/]*/)?[0-9]+/|^cuda/adam/'
variant_rows='^cuda/.*/v[0-9]+/128/'

# The steps a rerun may name, by id, with their pass 1 caps.
run_step_by_id() {
  local id="$1"
  case "${id#rerun-}" in
    ldd) run_ldd "$id" ;;
    nvidia-smi) run_nvidia_smi "$id" ;;
    gpu-tests) run_tests "$id" 70 "$gpu_filter" ;;
    train-graph) run_train "$id" 40 graph-fp32 3 0.985 ;;
    train-eager) run_train "$id" 25 eager-fp32 1 - --no-cuda-graph ;;
    train-tf32) run_train "$id" 30 graph-tf32 3 0.985 --precision tf32 ;;
    bench-128) run_bench "$id" 30 "$step_rows_128" ;;
    memcheck) run_sanitizer "$id" 45 memcheck "$op_filter" --leak-check full ;;
    racecheck) run_sanitizer "$id" 30 racecheck "$shared_memory_filter" \
      --kernel-name-exclude "regex=$vendor_kernels" ;;
    initcheck) run_sanitizer "$id" 35 initcheck 'Grids/CudaOp.*/FullGrid:GridsAndVariants/CudaVariantOp.*/FullGrid_v*:Cuda.NetworkStepGradientsMatchTheCpu' \
      --kernel-name-exclude "regex=$vendor_kernels" ;;
    *) record "$id" "not run" 0 0 "no step of that name" ;;
  esac
}

if ((pass == 1)); then
  for id in ldd nvidia-smi gpu-tests train-graph train-eager train-tf32 bench-128 memcheck; do
    run_step_by_id "$id"
  done
  exit 0
fi

# Pass 2: the rerun first, then depth.
run_ldd
run_nvidia_smi
rerun_file="${MG_RERUN_FILE:-}"
[[ -z "$rerun_file" && -f "$here/rerun.txt" ]] && rerun_file="$here/rerun.txt"
[[ -z "$rerun_file" && -f /tmp/mg-gpu-pass1/failed.txt ]] && rerun_file=/tmp/mg-gpu-pass1/failed.txt
if [[ -n "$rerun_file" && -f "$rerun_file" ]]; then
  rerun_tests=()
  while read -r kind name; do
    case "$kind" in
      step) [[ "$name" == gpu-tests ]] && rerun_tests+=('*') || run_step_by_id "rerun-$name" ;;
      test) rerun_tests+=("$name") ;;
    esac
  done < <(grep -v '^#' "$rerun_file")
  if [[ " ${rerun_tests[*]:-} " == *" * "* ]]; then
    run_tests rerun-tests 70 "$gpu_filter"  # the whole step failed: all of it once more
  elif ((${#rerun_tests[@]})); then
    # Three times each: a result that changes between runs is a race.
    run_tests rerun-tests 40 "$(IFS=:; echo "${rerun_tests[*]}")" 3
  fi
elif [[ -n "$rerun_file" ]]; then
  record rerun "not run" 0 0 "no $rerun_file"
fi
run_step_by_id racecheck
run_step_by_id initcheck
run_train ours-fp32 30 ours-fp32 3 0.985
# Every kernel variant side by side, and the whole step with all at v0 and all at v1
# (docs/performance.md, "Kernel variants"): variants.json, variants.log. 54 rows: 0.01 s of GPU
# time each (thousands of calls of a microsecond kernel) keeps them inside the cap.
run_bench bench-variants 30 "$variant_rows" variants --cuda_min_time=0.01
run_torch torch-eager 40 torch-eager-fp32 --precision fp32
run_torch torch-compiled 75 torch-compiled-fp32 --precision fp32 --compile --compile-mode "$compile_mode"
compare
run_bench bench-all 50 "$step_rows_all"
# TF32 on both sides, when the deadline leaves room for both whole.
if ((have_gpu && deadline - SECONDS - reserve >= 60)); then
  run_train ours-tf32 25 ours-tf32 3 - --precision tf32
  run_torch torch-eager-tf32 35 torch-eager-tf32 --precision tf32
  compare
elif ((have_gpu)); then
  record ours-tf32 "not run" 0 25 "optional: under 60 s left"
fi
exit 0
