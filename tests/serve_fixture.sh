#!/usr/bin/env bash
# The small trained checkpoint the serve browser and ONNX Runtime tests share (ctest fixture
# serve_checkpoint): one CPU epoch of a tiny CNN on real MNIST. Skips (77) without MNIST.
#   tests/serve_fixture.sh MNIST_GPU DATA_DIR OUT_DIR
set -euo pipefail
bin=$1 data=$2 out=$3
if [ ! -e "$data/train-images-idx3-ubyte" ] && [ ! -e "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: no MNIST in $data (run tools/get_mnist.sh)"
  exit 77
fi
rm -rf "$out"
mkdir -p "$(dirname "$out")"
"$bin" train --device cpu --data "$data" --model conv8,pool,dense32 --epochs 1 --lr 0.002 --out "$out"
test -s "$out/checkpoint.safetensors"
