#!/usr/bin/env bash
# The promises of docs/reliability.md through the program, on real MNIST with a small model:
# - a data folder given explicitly (--data, $MNIST_GPU_DATA) that lacks a file is refused in at
#   most three lines naming it, nothing is downloaded into it and it is left as it was;
# - a copy of MNIST with one label changed is a warning naming the file, an error with
#   --strict-data;
# - the same train command twice writes byte-identical checkpoints (1 vs 2 threads: reported);
# - a write error while saving (a file-size limit put on the running process, as a full disk)
#   is a clear error, the previous checkpoint stays intact and loadable, no temporary file is left.
# Skips (77) without the four raw MNIST files.
set -euo pipefail
bin=$1 data=$2
names="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
for f in $names; do
  [ -e "$data/$f" ] || { echo "SKIP: no raw $f in $data (run tools/get_mnist.sh)"; exit 77; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# Nothing may be downloaded here; should anything try, it fails at once.
export MNIST_GPU_MIRROR=http://127.0.0.1:9/
unset MNIST_GPU_DATA
cd "$work"  # no ./data/mnist here
model=dense16

echo "== an incomplete folder given explicitly is refused, not completed"
mkdir partial
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte; do
  ln -s "$data/$f" "partial/$f"
done
listing() { find partial -printf "%p %y %s %T@\n" | sort; }
before=$(listing)
for how in --data MNIST_GPU_DATA; do
  if [ "$how" = --data ]; then
    cmd=("$bin" train --device cpu --data partial --model $model --epochs 1 --out run-x)
  else
    cmd=(env "MNIST_GPU_DATA=$work/partial" "$bin" train --device cpu --model $model --epochs 1 --out run-x)
  fi
  if "${cmd[@]}" >out 2>err; then fail "trained on an incomplete folder ($how)"; fi
  cat err
  [ "$(wc -l <err)" -le 3 ] || fail "more than three lines ($how)"
  grep -q "lacks t10k-labels-idx1-ubyte" err || fail "the missing file is not named ($how)"
  if grep -qiE "downloading|http" err; then fail "download chatter ($how)"; fi
  [ "$(listing)" = "$before" ] || fail "the folder changed ($how)"
  [ ! -e run-x ] && [ ! -e data ] || fail "something was created ($how): $(ls)"
done

echo "== the same command twice: byte-identical checkpoints"
for r in a b; do
  OMP_NUM_THREADS=2 "$bin" train --device cpu --data "$data" --model $model --epochs 1 --out $r >$r.log
done
cmp a/checkpoint.safetensors b/checkpoint.safetensors || fail "the same command gave different checkpoints"
cmp a/history.csv b/history.csv || fail "the same command gave different histories"
[ "$(tail -n 1 a.log)" = "$(tail -n 1 b.log)" ] || fail "different test lines"
echo "identical: $(tail -n 1 a.log)"
echo "== 1, 2 and 3 threads: byte-identical checkpoints (a fused conv + pool, a dense layer)"
for t in 1 2 3; do
  OMP_NUM_THREADS=$t "$bin" train --device cpu --data "$data" --model conv16,pool,dense16 \
    --epochs 1 --out t$t >t$t.log
done
for t in 1 3; do
  cmp t2/checkpoint.safetensors t$t/checkpoint.safetensors ||
    fail "$t and 2 threads gave different checkpoints"
done
echo "identical: $(tail -n 1 t2.log)"

echo "== a copy of MNIST with one label changed: a warning, or an error with --strict-data"
mkdir damaged
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte; do
  ln -s "$data/$f" "damaged/$f"
done
cp "$data/t10k-labels-idx1-ubyte" damaged/
last=$(tail -c 1 damaged/t10k-labels-idx1-ubyte | od -An -tu1 | tr -d ' ')
printf "\\x0$(((last + 1) % 10))" | dd of=damaged/t10k-labels-idx1-ubyte bs=1 seek=10007 conv=notrunc 2>/dev/null
cmp -s "$data/t10k-labels-idx1-ubyte" damaged/t10k-labels-idx1-ubyte && fail "the copy was not changed"
"$bin" eval a/checkpoint.safetensors --device cpu --data damaged --out eval-warn >eval.log 2>eval.err ||
  fail "eval refused a damaged copy without --strict-data: $(cat eval.err)"
cat eval.err
grep -q "^warning: .*t10k-labels-idx1-ubyte differs" eval.err || fail "no warning naming the file"
if "$bin" eval a/checkpoint.safetensors --device cpu --data damaged --strict-data --out eval-strict \
  >strict.log 2>strict.err; then
  fail "--strict-data accepted a damaged copy"
fi
cat strict.err
grep -q "t10k-labels-idx1-ubyte differs" strict.err || fail "the error does not name the file"
[ ! -e eval-strict ] || fail "--strict-data refused the data but created its report folder"
"$bin" eval a/checkpoint.safetensors --device cpu --data "$data" --strict-data --out eval-real \
  >real.log 2>real.err || fail "--strict-data refused the real MNIST: $(cat real.err)"
[ ! -s real.err ] || fail "stderr on the real MNIST: $(cat real.err)"

echo "== a write error while saving keeps the previous checkpoint"
"$bin" train --device cpu --data "$data" --model $model --epochs 5 --out full >full.log 2>full.err &
pid=$!
for _ in $(seq 1 1200); do
  [ -e full/checkpoint.safetensors ] && break
  sleep 0.05
done
[ -e full/checkpoint.safetensors ] || { kill $pid; fail "no checkpoint after the first epoch"; }
# Far below the checkpoint's size (about 150 kB), from the second epoch's save on.
prlimit --pid $pid --fsize=4096
cp full/checkpoint.safetensors epoch1.safetensors
rc=0
wait $pid || rc=$?
cat full.err
[ $rc -eq 1 ] || fail "exit status $rc, expected 1"
grep -q "full/checkpoint.safetensors: write failed (File too large); full/checkpoint.safetensors still holds epoch 1" full.err ||
  fail "no clear error"
cmp full/checkpoint.safetensors epoch1.safetensors || fail "the previous checkpoint changed"
leftovers=$(find full -name '*.tmp-*')
[ -z "$leftovers" ] || fail "temporary files left: $leftovers"
"$bin" eval full/checkpoint.safetensors --device cpu --data "$data" --out full-eval >full-eval.log ||
  fail "the previous checkpoint does not load"
tail -n 1 full-eval.log | grep -Eq '^test: loss=[0-9.]+ accuracy=0\.[0-9]+$' || fail "eval: $(tail -n 1 full-eval.log)"
echo "PASS"
