#!/usr/bin/env bash
# mnist_gpu's CPU backend against PyTorch (tools/torch_peer.py) on the same cores: one training
# epoch of the seed protocol each, with the same threads, batch size and data, in N alternating
# pairs (ours then PyTorch, then PyTorch then ours, ...), so that a change in the machine's load
# falls on both sides. Prints every pair, then the median ratio and its spread, for the training
# time (the epoch's steps alone, as each program reports it) and for the whole process (start to
# exit: loading, the split, the validation and test passes, the report).
#
# Usage: tools/cpu_vs_torch.sh [--pairs N] [--threads T] [--batch B] [BUILD_DIR] [DATA_DIR]
#   --pairs N    alternating pairs (default 5)
#   --threads T  OpenMP threads for mnist_gpu, torch.set_num_threads for PyTorch (default 2)
#   --batch B    batch size (default 128, the seed protocol's)
# Needs Debian's python3-torch (tools/setup.sh --peer). docs/performance.md records its runs.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pairs=5 threads=2 batch=128
positional=()
while (($#)); do
  case $1 in
    --pairs) pairs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "cpu_vs_torch: unknown option $1" >&2; exit 2 ;;
    *) positional+=("$1"); shift ;;
  esac
done
build="${positional[0]:-$repo_root/build}"
data="${positional[1]:-$repo_root/data/mnist}"
for v in "$pairs" "$threads" "$batch"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "cpu_vs_torch: '$v' is not a positive integer" >&2; exit 2; }
done
[[ -x $build/mnist_gpu ]] || { echo "cpu_vs_torch: no $build/mnist_gpu (run tools/setup.sh)" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null ||
  { echo "cpu_vs_torch: /usr/bin/python3 has no torch (run tools/setup.sh --peer)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
results="$work/results.tsv"

now() { date +%s.%N; }

run_ours() {  # $1: log file; prints "train_seconds whole_seconds test_accuracy"
  local t0 t1 train acc
  t0=$(now)
  OMP_NUM_THREADS=$threads "$build/mnist_gpu" train --device cpu --epochs 1 --batch-size "$batch" \
    --data "$data" --no-download --out "$work/run-$RANDOM-$RANDOM" >"$1" 2>&1
  t1=$(now)
  train=$(sed -n 's/^Epoch 1\/1 - [0-9]*\/[0-9]* - \([0-9.]*\)s .*/\1/p' "$1")
  acc=$(sed -n 's/^test: .*accuracy=\([0-9.]*\)$/\1/p' "$1")
  [[ -n $train && -n $acc ]] || { echo "cpu_vs_torch: mnist_gpu's output not understood ($1):" >&2; cat "$1" >&2; exit 1; }
  echo "$train $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $acc"
}

run_torch() {
  local t0 t1 train acc
  t0=$(now)
  /usr/bin/python3 "$repo_root/tools/torch_peer.py" --epochs 1 --threads "$threads" \
    --batch-size "$batch" --data "$data" >"$1" 2>&1
  t1=$(now)
  train=$(sed -n 's/^Epoch 1\/1 - [0-9.]*s (train \([0-9.]*\)s).*/\1/p' "$1")
  acc=$(sed -n 's/^test_loss: .* test_accuracy: \([0-9.]*\)$/\1/p' "$1")
  [[ -n $train && -n $acc ]] || { echo "cpu_vs_torch: torch_peer's output not understood ($1):" >&2; cat "$1" >&2; exit 1; }
  echo "$train $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $acc"
}

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "cpu_vs_torch: $pairs alternating pairs, one epoch each, $threads threads, batch $batch"
echo "machine: ${cpu_model:-unknown CPU}, $(nproc) CPUs; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mnist_gpu: $(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo '?'); PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
printf '%-5s %-14s %11s %11s %7s %11s %11s %7s\n' pair order "ours train" "torch train" ratio \
  "ours whole" "torch whole" ratio
for ((i = 1; i <= pairs; i++)); do
  if ((i % 2)); then
    ours=$(run_ours "$work/ours-$i.log"); torch=$(run_torch "$work/torch-$i.log"); order="ours, torch"
  else
    torch=$(run_torch "$work/torch-$i.log"); ours=$(run_ours "$work/ours-$i.log"); order="torch, ours"
  fi
  read -r ot ow oa <<<"$ours"
  read -r tt tw ta <<<"$torch"
  echo -e "$i\t$ot\t$ow\t$oa\t$tt\t$tw\t$ta" >>"$results"
  awk -v i="$i" -v o="$order" -v ot="$ot" -v ow="$ow" -v tt="$tt" -v tw="$tw" 'BEGIN {
    printf "%-5s %-14s %10.2fs %10.2fs %6.2fx %10.2fs %10.2fs %6.2fx\n", i, o, ot, tt, tt / ot, ow, tw, tw / ow }'
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" <<'EOF'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().split("\n") if line]
def summary(name, ours_col, torch_col):
    ratios = [float(r[torch_col]) / float(r[ours_col]) for r in rows]
    ours = [float(r[ours_col]) for r in rows]
    torch = [float(r[torch_col]) for r in rows]
    print(f"{name}: median ratio {statistics.median(ratios):.2f}x (spread {min(ratios):.2f}x to "
          f"{max(ratios):.2f}x over {len(rows)} pairs); median mnist_gpu {statistics.median(ours):.2f} s, "
          f"PyTorch {statistics.median(torch):.2f} s")
summary("training time", 1, 4)
summary("whole process", 2, 5)
acc = sorted({(r[3], r[6]) for r in rows})
print("test accuracy after the epoch (mnist_gpu / PyTorch): " + ", ".join(f"{a} / {b}" for a, b in acc))
EOF
