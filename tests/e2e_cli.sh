#!/usr/bin/env bash
# The mnist_gpu commands end to end on real data, with a small model so it stays quick:
# train writes every file, eval and predict read its checkpoint, resume is exact, the exported
# split matches sklearn, Fashion-MNIST works with its class names. Skips (77) without MNIST.
set -euo pipefail
bin=$1 data=$2 src=$3
if [ ! -e "$data/train-images-idx3-ubyte" ] && [ ! -e "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: no MNIST in $data (run tools/get_mnist.sh)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
model=conv4,pool,dense32,drop0.25

echo "== train: every output file"
"$bin" train --device cpu --data "$data" --model $model --epochs 2 --out "$work/a" --export-split "$work/split.json" | tee "$work/a.log"
for f in checkpoint.safetensors history.csv metrics.json model_summary.txt report.html curves.svg \
         class_distribution.svg samples.svg confusion_matrix.svg confusion_matrix_normalized.svg misclassified.svg; do
  [ -s "$work/a/$f" ] || fail "train did not write $f"
done
[ "$(wc -l < "$work/a/history.csv")" -eq 3 ] || fail "history.csv should have a header and 2 rows"
tail -n 1 "$work/a.log" | grep -Eq '^test: loss=[0-9.]+ accuracy=0\.9[0-9]+$' || fail "last line: $(tail -n 1 "$work/a.log")"

echo "== report.html renders in a real browser"
if [ -x /usr/bin/chromium ]; then
  bash "$src/tools/render_report.sh" "$work/a" "$work/a.png" "$work/a-dom.html" >/dev/null 2>&1 || fail "chromium could not render report.html"
  [ "$(stat -c %s "$work/a.png")" -gt 100000 ] || fail "the screenshot of report.html is nearly empty"
  for id in curves confusion misclassified model data history; do
    grep -q "id=\"$id" "$work/a-dom.html" || fail "the rendered report lacks section $id"
  done
else
  echo "report: /usr/bin/chromium absent (apt-get install chromium), not rendered"
fi

echo "== a run folder is never overwritten"
if "$bin" train --device cpu --data "$data" --model $model --epochs 1 --out "$work/a" 2>"$work/err"; then fail "overwrote $work/a"; fi
grep -q "already exists" "$work/err" || fail "no clear message: $(cat "$work/err")"

echo "== resume: 2 epochs + 2 more == 4 epochs, bit for bit"
# --precision tf32 is accepted on the CPU, said to have no effect, and changes nothing (the
# checkpoints below are compared byte for byte); metrics.json records what really ran.
"$bin" train --device cpu --data "$data" --model $model --epochs 4 --out "$work/b" --precision tf32 >"$work/b.log"
grep -q "note: --precision tf32 has no effect on cpu, which computes in fp32" "$work/b.log" || fail "no note on --precision tf32 on the CPU: $(head -n 5 "$work/b.log")"
grep -q '"precision": "fp32"' "$work/b/metrics.json" || fail "metrics.json does not record precision fp32"
"$bin" train --device cpu --data "$data" --epochs 4 --resume "$work/a/checkpoint.safetensors" --out "$work/c" >/dev/null
cmp "$work/b/checkpoint.safetensors" "$work/c/checkpoint.safetensors" || fail "resumed checkpoint differs"
[ "$(wc -l < "$work/c/history.csv")" -eq 5 ] || fail "resumed history.csv should carry all 4 epochs"

echo "== resume with --weight-decay and --l2: saved, kept, and still bit for bit"
reg="--weight-decay 0.004 --l2 0.0005"
"$bin" train --device cpu --data "$data" --model $model --epochs 2 $reg --out "$work/reg-d" >/dev/null
"$bin" train --device cpu --data "$data" --model $model --epochs 1 $reg --out "$work/reg-e" >/dev/null
"$bin" train --device cpu --data "$data" --epochs 2 --resume "$work/reg-e/checkpoint.safetensors" --out "$work/reg-f" >/dev/null
cmp "$work/reg-d/checkpoint.safetensors" "$work/reg-f/checkpoint.safetensors" || fail "resumed regularized checkpoint differs"
head -n 1 "$work/reg-d/history.csv" | grep -qx 'epoch,accuracy,l2_loss,loss,lr,val_accuracy,val_l2_loss,val_loss' ||
  fail "history.csv lacks the l2 columns: $(head -n 1 "$work/reg-d/history.csv")"
cmp "$work/reg-d/history.csv" "$work/reg-f/history.csv" || fail "resumed history.csv differs"
if "$bin" train --device cpu --data "$data" --epochs 3 --l2 0.001 --resume "$work/reg-e/checkpoint.safetensors" --out "$work/reg-g" 2>"$work/err"; then
  fail "resumed with another --l2"
fi
grep -q -- "--l2 differs from the checkpoint's" "$work/err" || fail "no clear message: $(cat "$work/err")"
if "$bin" train --device cpu --data "$data" --epochs 1 --weight-decay -1 --out "$work/reg-h" 2>"$work/err"; then
  fail "took a negative --weight-decay"
fi
grep -q -- "--weight-decay must be a finite number >= 0" "$work/err" || fail "no clear message: $(cat "$work/err")"
[ ! -e "$work/reg-h" ] || fail "a refused run left a folder"

echo "== eval"
"$bin" eval "$work/b/checkpoint.safetensors" --device cpu --data "$data" --out "$work/eval" | tee "$work/eval.log"
grep -q "macro avg" "$work/eval.log" || fail "eval printed no classification report"
[ -s "$work/eval/report.html" ] || fail "eval wrote no report"

echo "== predict: MNIST test digits drawn black on white at 5x size"
/usr/bin/python3 - "$data" "$work" <<'PY'
import gzip, os, struct, sys
data, work = sys.argv[1], sys.argv[2]
def read(name):
    for n in (name, name + ".gz"):
        p = os.path.join(data, n)
        if os.path.exists(p):
            return (gzip.open if n.endswith(".gz") else open)(p, "rb").read()
img, lab = read("t10k-images-idx3-ubyte"), read("t10k-labels-idx1-ubyte")
with open(os.path.join(work, "labels.txt"), "w") as out:
    for k in range(12):
        px = img[16 + 784 * k: 16 + 784 * (k + 1)]
        rows = [bytes(255 - px[(y // 5) * 28 + x // 5] for x in range(140)) for y in range(140)]
        with open(os.path.join(work, f"digit{k}.pgm"), "wb") as f:
            f.write(b"P5\n140 140\n255\n" + b"".join(rows))
        out.write(f"{lab[8 + k]}\n")
PY
"$bin" predict "$work/b/checkpoint.safetensors" "$work"/digit{0,1,2,3,4,5,6,7,8,9,10,11}.pgm | tee "$work/predict.log"
right=$(paste <(grep -o '^[^ ]*: [0-9]' "$work/predict.log" | sed 's/.*: //') "$work/labels.txt" | awk '$1 == $2' | wc -l)
echo "predict: $right of 12 right"
[ "$right" -ge 10 ] || fail "predict got only $right of 12 MNIST digits right"
if "$bin" predict "$work/b/checkpoint.safetensors" "$work/labels.txt" 2>"$work/err"; then fail "predicted a text file"; fi
grep -q "cannot decode" "$work/err" || fail "no clear message: $(cat "$work/err")"

echo "== the exported split is sklearn's"
if /usr/bin/python3 -c "import sklearn" 2>/dev/null; then
  /usr/bin/python3 - "$work/split.json" <<'PY'
import json, sys
import numpy as np
from sklearn.model_selection import train_test_split
s = json.load(open(sys.argv[1]))
idx = np.arange(70000)
train, temp = train_test_split(idx, test_size=0.3, random_state=42)
val, test = train_test_split(temp, test_size=0.5, random_state=42)
assert s["train"] == train.tolist() and s["val"] == val.tolist() and s["test"] == test.tolist(), "split differs"
print("split: identical to sklearn (49000/10500/10500)")
PY
else
  echo "split: sklearn not installed, not compared"
fi

echo "== Fashion-MNIST"
if [ -d /usr/share/datasets/fashion-mnist ]; then
  "$bin" train --device cpu --dataset fashion-mnist --model $model --epochs 1 --out "$work/f" | tee "$work/f.log"
  tail -n 1 "$work/f.log" | grep -Eq '^test: loss=[0-9.]+ accuracy=0\.[7-9][0-9]*$' || fail "fashion accuracy: $(tail -n 1 "$work/f.log")"
  grep -q "Ankle boot" "$work/f/metrics.json" || fail "fashion class names missing from metrics.json"
  grep -q "Ankle boot" "$work/f/report.html" || fail "fashion class names missing from report.html"
else
  echo "fashion-mnist: /usr/share/datasets/fashion-mnist absent (apt-get install dataset-fashion-mnist), not run"
fi
echo "PASS"
