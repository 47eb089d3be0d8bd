#!/usr/bin/env bash
# One training epoch of the seed protocol on the CPU, mnist_gpu against PyTorch (tools/torch_peer.py),
# measured back to back in one run with the same threads and data. Prints the ratio.
#
# Usage: tools/cpu_vs_torch.sh [BUILD_DIR] [DATA_DIR]     (needs python3-torch: tools/setup.sh --peer)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$repo_root/build}"
data="${2:-$repo_root/data/mnist}"
threads=2
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

echo "== mnist_gpu --device cpu (OMP_NUM_THREADS=$threads)"
OMP_NUM_THREADS=$threads "$build/mnist_gpu" train --device cpu --epochs 1 --data "$data" | tee "$log/ours"
echo "== PyTorch ($threads threads)"
/usr/bin/python3 "$repo_root/tools/torch_peer.py" --epochs 1 --threads $threads --data "$data" | tee "$log/torch"

ours=$(sed -n 's/^Epoch 1\/1 - [0-9]*\/[0-9]* - \([0-9.]*\)s .*/\1/p' "$log/ours")
torch=$(sed -n 's/^Epoch 1\/1 - [0-9.]*s (train \([0-9.]*\)s).*/\1/p' "$log/torch")
ours_acc=$(sed -n 's/^test: .*accuracy=\([0-9.]*\)$/\1/p' "$log/ours")
torch_acc=$(sed -n 's/^test_loss: .* test_accuracy: \([0-9.]*\)$/\1/p' "$log/torch")
echo
printf '%-12s %14s %14s\n' "" "train epoch" "test accuracy"
printf '%-12s %13ss %14s\n' mnist_gpu "$ours" "$ours_acc" PyTorch "$torch" "$torch_acc"
awk -v a="$ours" -v b="$torch" 'BEGIN { printf "speed-up over PyTorch: %.2fx\n", b / a }'
