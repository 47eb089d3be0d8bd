#!/usr/bin/env bash
# One epoch of the seed protocol on the CPU; passes when the test accuracy is at least 0.97.
set -euo pipefail
bin=$1 data=$2
if [ ! -e "$data/train-images-idx3-ubyte" ] && [ ! -e "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: no MNIST in $data (run tools/get_mnist.sh)"
  exit 77
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$bin" train --epochs 1 --device cpu --data "$data" | tee "$log"
acc=$(sed -n 's/^test: loss=[0-9.]* accuracy=\([0-9.]*\)$/\1/p' "$log" | tail -n 1)
[ -n "$acc" ] || { echo "FAIL: no 'test:' line"; exit 1; }
awk -v a="$acc" 'BEGIN { if (a >= 0.97) { print "PASS: test accuracy " a " >= 0.97"; exit 0 } else { print "FAIL: test accuracy " a " < 0.97"; exit 1 } }'
