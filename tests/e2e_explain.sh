#!/usr/bin/env bash
# mnist_gpu explain end to end: trains a small checkpoint on MNIST, explains MNIST test digits
# given as PGM pictures, checks every picture is written and valid, that a run's report shows the
# inside of the network, and that bad input fails cleanly. Skips (77) without MNIST.
set -euo pipefail
bin=$1 data=$2
if [ ! -e "$data/train-images-idx3-ubyte" ] && [ ! -e "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: no MNIST in $data (run tools/get_mnist.sh)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$bin" train --device cpu --data "$data" --model conv4,pool,dense16 --epochs 1 --out "$work/run" >"$work/train.log"
for f in inside_filters.svg inside_feature_maps_0_conv.svg inside_feature_maps_1_pool.svg \
         inside_saliency.svg inside_saliency_misclassified.svg; do
  [ -s "$work/run/$f" ] || fail "the run report did not write $f"
  grep -q "$f" "$work/run/report.html" || fail "report.html does not link $f"
done
grep -q 'id="inside"' "$work/run/report.html" || fail "report.html has no Inside the network section"

/usr/bin/python3 - "$data" "$work" <<'PY'
import gzip, os, sys
data, work = sys.argv[1], sys.argv[2]
def read(name):
    for n in (name, name + ".gz"):
        p = os.path.join(data, n)
        if os.path.exists(p):
            return (gzip.open if n.endswith(".gz") else open)(p, "rb").read()
img = read("t10k-images-idx3-ubyte")
for k in range(3):
    px = img[16 + 784 * k: 16 + 784 * (k + 1)]
    rows = [bytes(255 - px[(y // 3) * 28 + x // 3] for x in range(84)) for y in range(84)]
    with open(os.path.join(work, f"digit{k}.pgm"), "wb") as f:
        f.write(b"P5\n84 84\n255\n" + b"".join(rows))
PY
# PNG and JPEG inputs are tried by tests/test_explain.cpp (written with stb_image_write).
images=("$work/digit0.pgm" "$work/digit1.pgm" "$work/digit2.pgm")
"$bin" explain "$work/run/checkpoint.safetensors" "${images[@]}" --out "$work/x" | tee "$work/explain.log"
[ "$(grep -c ': predicted [0-9]$' "$work/explain.log")" -eq "${#images[@]}" ] || fail "explain did not predict every image"
for f in explain.html filters.svg feature_maps_0_conv.svg feature_maps_1_pool.svg saliency.svg; do
  [ -s "$work/x/$f" ] || fail "explain did not write $f"
done
for f in "$work"/x/*.svg; do
  /usr/bin/python3 -c "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])" "$f" || fail "$f is not valid XML"
  grep -q 'data:image/png;base64,' "$f" || fail "$f has no pictures"
done
# One tile per filter: conv4 has four.
[ "$(grep -o '<image ' "$work/x/filters.svg" | wc -l)" -eq 4 ] || fail "filters.svg should show 4 filters"

echo "== bad input"
if "$bin" explain "$work/run/checkpoint.safetensors" "${images[@]}" --out "$work/x" 2>"$work/err"; then fail "overwrote --out"; fi
grep -q 'already exists' "$work/err" || fail "no clear error for an existing --out: $(cat "$work/err")"
echo "not a picture" >"$work/bad.png"
if "$bin" explain "$work/run/checkpoint.safetensors" "$work/bad.png" --out "$work/y" 2>"$work/err"; then fail "explained a text file"; fi
grep -q 'bad.png' "$work/err" || fail "the error does not name the file: $(cat "$work/err")"
[ ! -e "$work/y" ] || fail "a failed explain left $work/y behind"
if "$bin" explain "$work/train.log" "$work/digit0.pgm" --out "$work/z" 2>"$work/err"; then fail "read a log as a checkpoint"; fi
[ ! -e "$work/z" ] || fail "a failed explain left $work/z behind"
echo "PASS"
