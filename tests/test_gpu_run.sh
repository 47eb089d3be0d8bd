#!/usr/bin/env bash
# tools/gpu_run.sh without a GPU, as the GPU check's dry run: a bundle is laid out from this build
# (the real binaries, the real scripts; no data is needed, since no step trains), then
#  1. both passes with MG_ASSUME_NO_GPU=1: every GPU step says "no GPU" and is skipped, ldd runs,
#     the summary prints, pass 2 reads a rerun list, $OUT holds at most 8 files, exit status 3;
#  2. a step that hangs (a stand-in mg_tests that sleeps, a stand-in nvidia-smi that reports a
#     GPU): its cap and the pass's deadline stop it, the rest is "not run", the summary still
#     prints, and the hung test is on the rerun list.
# Usage: test_gpu_run.sh MG_TESTS MNIST_GPU BENCH_KERNELS SOURCE_DIR
set -uo pipefail
mg_tests=$1 mnist_gpu=$2 bench_kernels=$3 src=$4
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}

make_bundle() {  # DIR: a bundle as tools/gpu_bundle.sh lays it out, binaries linked from here
  mkdir -p "$1/bin" "$1/data"
  ln -s "$mg_tests" "$1/bin/mg_tests"
  ln -s "$mnist_gpu" "$1/bin/mnist_gpu"
  ln -s "$bench_kernels" "$1/bin/bench_kernels"
  cp "$src/tools/gpu_run.sh" "$src/tools/gpu_report.py" "$src/tools/torch_peer.py" "$1/"
  {
    echo "MG_COMMIT=test"
    echo "MG_SOURCE_DIR=$src"
    echo "MG_BINARY=$mnist_gpu"
    echo "MG_BUILT=now"
  } >"$1/build.env"
}

# Every row of the table is one of: ldd ok, "no GPU", or the rerun of ldd.
check_no_gpu_summary() {  # SUMMARY STEP...
  local summary=$1 id
  shift
  grep -q "^device: no GPU (MG_ASSUME_NO_GPU is set)" "$summary" || fail "no device line: $(cat "$summary")"
  grep -Eq '^ldd +ok ' "$summary" || fail "ldd did not pass: $(cat "$summary")"
  for id in "$@"; do
    grep -Eq "^$id +no GPU +0 +[0-9]+ +skipped: MG_ASSUME_NO_GPU is set" "$summary" ||
      fail "step $id does not say no GPU: $(grep "^$id " "$summary")"
  done
  grep -q "^failed: nothing" "$summary" || fail "a skipped step counted as failed"
}

echo "== the dry run: both passes, no GPU"
make_bundle "$work/bundle"
printf '# a rerun list as pass 1 writes it\nstep ldd\nstep train-graph\ntest Cuda.Something\n' >"$work/rerun.txt"
MG_ASSUME_NO_GPU=1 OUT="$work/out1" bash "$work/bundle/gpu_run.sh" --pass 1 >"$work/pass1.log" 2>&1
rc=$?
cat "$work/pass1.log"
((rc == 3)) || fail "pass 1 without a GPU should exit 3, not $rc"
check_no_gpu_summary "$work/out1/summary.txt" nvidia-smi gpu-tests train-graph train-eager train-tf32 bench-128 memcheck
grep -q "^# mnist_gpu GPU check pass 1" "$work/out1/failed.txt" || fail "no failed.txt"
[ "$(grep -vc '^#' "$work/out1/failed.txt")" -eq 0 ] || fail "failed.txt lists something: $(cat "$work/out1/failed.txt")"
# (Listings are read whole before grep: under pipefail, `tar -t | grep -q` fails when grep quits
# before tar has written everything.)
listing="$(tar -tzf "$work/out1/logs.tar.gz")"
grep -q 'logs/ldd.txt' <<<"$listing" || fail "the logs' archive lacks ldd.txt: $listing"
[ "$(find "$work/out1" -type f | wc -l)" -le 8 ] || fail "more than 8 files in OUT: $(ls "$work/out1")"
[ "$(tail -n 1 "$work/pass1.log")" = "failed: nothing" ] || fail "the summary is not printed last"

MG_ASSUME_NO_GPU=1 MG_RERUN_FILE="$work/rerun.txt" OUT="$work/out2" bash "$work/bundle/gpu_run.sh" --pass 2 >"$work/pass2.log" 2>&1
rc=$?
cat "$work/pass2.log"
((rc == 3)) || fail "pass 2 without a GPU should exit 3, not $rc"
check_no_gpu_summary "$work/out2/summary.txt" nvidia-smi rerun-train-graph rerun-tests racecheck initcheck ours-fp32 bench-variants torch-eager torch-compiled bench-all
grep -Eq '^rerun-ldd +ok ' "$work/out2/summary.txt" || fail "the rerun list's ldd did not run"

echo "== usage errors"
bash "$work/bundle/gpu_run.sh" >/dev/null 2>&1
(($? == 2)) || fail "no --pass should be a usage error"
bash "$work/bundle/gpu_run.sh" --pass 3 2>"$work/err" >/dev/null
(($? == 2)) && grep -q "pass 1 or --pass 2" "$work/err" || fail "--pass 3 is not refused clearly"

echo "== a hanging step: stopped by its cap and the deadline, the summary still prints"
make_bundle "$work/hang"
rm "$work/hang/bin/mg_tests"
printf '#!/bin/sh\necho "[ RUN      ] Cuda.Hangs"\nexec sleep 300\n' >"$work/hang/bin/mg_tests"
mkdir -p "$work/fakebin"
printf '#!/bin/sh\necho "GPU 0: Stand-in GPU (UUID: GPU-0)"\n' >"$work/fakebin/nvidia-smi"
chmod +x "$work/hang/bin/mg_tests" "$work/fakebin/nvidia-smi"
start=$SECONDS
PATH="$work/fakebin:$PATH" MG_DEADLINE_S=30 MG_STEPS="ldd gpu-tests train-graph" OUT="$work/out3" \
  bash "$work/hang/gpu_run.sh" --pass 1 >"$work/pass3.log" 2>&1
rc=$?
cat "$work/pass3.log"
((rc == 1)) || fail "a timed-out step should make the pass exit 1, not $rc"
((SECONDS - start <= 40)) || fail "the pass took $((SECONDS - start)) s past its 30 s deadline"
grep -Eq '^gpu-tests +TIMEOUT' "$work/out3/summary.txt" || fail "the hanging step is not TIMEOUT"
grep -Eq '^train-graph +not run .*out of time' "$work/out3/summary.txt" || fail "the step after it should be out of time"
grep -qx "test Cuda.Hangs" "$work/out3/failed.txt" || fail "the hung test is not on the rerun list: $(cat "$work/out3/failed.txt")"
echo "PASS"
