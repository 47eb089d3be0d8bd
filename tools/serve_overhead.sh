#!/usr/bin/env bash
# Training speed with and without train --serve's live view, side by side: PAIRS alternating runs
# of one epoch each (plain, then --serve with a client polling /api/train every second, as the
# page does), and the median epoch time (training only, from metrics.json) of each.
#   tools/serve_overhead.sh [PAIRS] [MODEL] [DATA_DIR]
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pairs=${1:-3}
model=${2:-conv8,pool,dense32}
data=${3:-$repo_root/data/mnist}
bin=$repo_root/build/mnist_gpu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

epoch_seconds() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["timings"]["train_seconds"])' "$1/metrics.json"; }

plain=() served=()
for ((i = 1; i <= pairs; ++i)); do
  "$bin" train --device cpu --data "$data" --model "$model" --epochs 1 --out "$work/plain$i" >/dev/null
  plain+=("$(epoch_seconds "$work/plain$i")")

  "$bin" train --device cpu --data "$data" --model "$model" --epochs 1 --out "$work/served$i" \
    --serve 0 >"$work/served$i.log" 2>&1 &
  pid=$!
  until url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$work/served$i.log" 2>/dev/null | head -n 1) && [[ -n $url ]]; do
    sleep 0.1
  done
  while ! grep -q "still serving" "$work/served$i.log"; do
    curl -s -o /dev/null "${url}api/train" || true
    sleep 1
  done
  kill -TERM "$pid"
  wait "$pid"
  served+=("$(epoch_seconds "$work/served$i")")
  echo "pair $i: plain ${plain[-1]} s, --serve ${served[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mp=$(median "${plain[@]}") ms=$(median "${served[@]}")
echo "median epoch: plain $mp s, --serve $ms s, ratio $(awk -v a="$ms" -v b="$mp" 'BEGIN {printf "%.3f", a / b}')"
