#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ (clang, ASan + UBSan, CUDA off) in build-fuzz/ and
# runs each for SECONDS, one after the other, starting from its seed corpus (tests/fuzz/corpus/)
# and dictionary (tests/fuzz/dict/). Prints each target's executions and time; inputs that crash,
# hang or trip a sanitizer are kept in the findings folder it names, and the script fails.
#
# Usage: tools/fuzz.sh [SECONDS] [TARGET...]     (default: 600 s each, every target)
# Environment: MG_FUZZ_BUILD (default build-fuzz), MG_FUZZ_OUT (default build-fuzz/findings),
#              MG_FUZZ_RUNS=N (each target runs N inputs with the fixed -seed=1 instead of for
#              SECONDS: a repeatable run, as CI's; from a fresh build-fuzz/corpus it always tries
#              the same inputs),
#              CXX (default clang++-14, else clang++).
# New inputs the fuzzer finds interesting go to build-fuzz/corpus/<target>/ (not committed).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-600}"
shift || true
all=(idx npz safetensors image model_spec checkpoint_spec http)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
build_dir="${MG_FUZZ_BUILD:-$repo_root/build-fuzz}"
findings="${MG_FUZZ_OUT:-$build_dir/findings}"
cxx="${CXX:-}"
if [[ -z $cxx ]]; then
  cxx=$(command -v clang++-14 || command -v clang++ || true)
fi
[[ -n $cxx ]] || { echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
cc="${cxx/clang++/clang}"

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" \
  -DMNIST_GPU_CUDA=OFF -DMNIST_GPU_FUZZ=ON "${launcher[@]}" >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p "$findings"
summary=()
failed=0
for t in "${targets[@]}"; do
  corpus="$build_dir/corpus/$t"
  mkdir -p "$corpus" "$findings/$t"
  dict=()
  [[ -f $repo_root/tests/fuzz/dict/$t.dict ]] && dict=("-dict=$repo_root/tests/fuzz/dict/$t.dict")
  log="$findings/$t.log"
  echo "fuzz: $t for ${MG_FUZZ_RUNS:+$MG_FUZZ_RUNS inputs (-seed=1)}${MG_FUZZ_RUNS:-$seconds s} (log $log)"
  # -timeout: an input taking over 10 s is a hang; -rss_limit_mb: a reader asking for more than
  # 2.5 GB is a finding (every reader's limits are far below it). The first directory collects
  # new inputs; the seeds are read from the second.
  rc=0
  limit=(-max_total_time="$seconds")
  [[ -n ${MG_FUZZ_RUNS:-} ]] && limit=(-runs="$MG_FUZZ_RUNS" -seed=1)
  "$build_dir/tests/fuzz/fuzz_$t" "${limit[@]}" -timeout=10 -rss_limit_mb=2560 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$findings/$t/" "${dict[@]}" \
    "$corpus" "$repo_root/tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  found=$(find "$findings/$t" -type f | wc -l)
  status=ok
  if ((rc != 0 || found > 0)); then
    status="FINDING (exit $rc; inputs in $findings/$t/)"
    failed=1
    grep -m3 -E "ERROR: |runtime error|fuzz check failed|deadly signal|uncaught" "$log" || true
  fi
  summary+=("$(printf '%-16s %12s execs %6s s  %s' "$t" "${execs:-?}" "${secs:-?}" "$status")")
done
echo "fuzz: results"
printf '  %s\n' "${summary[@]}"
exit "$failed"
