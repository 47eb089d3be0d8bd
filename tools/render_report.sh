#!/usr/bin/env bash
# Renders a run's report.html with headless Chromium: a full-page screenshot, and optionally the
# DOM Chromium built (to check that every section is there).
#   tools/render_report.sh RUN_DIR OUT.png [DOM.html]
# CHROMIUM overrides the browser (default /usr/bin/chromium). Exits 2 on bad usage, 3 when the
# browser is missing, and with Chromium's status when it fails.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 RUN_DIR OUT.png [DOM.html]" >&2
  exit 2
fi
if [[ ! -d "$1" ]]; then
  echo "$0: $1 is not a folder" >&2
  exit 2
fi
run_dir=$(cd "$1" && pwd)
report="$run_dir/report.html"
out=$(realpath -m "$2")
dom=${3:+$(realpath -m "$3")}
chromium=${CHROMIUM:-/usr/bin/chromium}

if [[ ! -f "$report" ]]; then
  echo "$0: $report does not exist (run mnist_gpu train with a report folder first)" >&2
  exit 2
fi
if [[ ! -x "$chromium" ]]; then
  echo "$0: $chromium not found (apt-get install chromium, or set CHROMIUM)" >&2
  exit 3
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --hide-scrollbars --user-data-dir="$profile")

rm -f "$out"
timeout 120 "$chromium" "${flags[@]}" --screenshot="$out" --window-size=1400,4000 \
  "file://$report"
if [[ ! -s "$out" ]]; then
  echo "$0: Chromium wrote no screenshot to $out" >&2
  exit 1
fi
if [[ -n "$dom" ]]; then
  timeout 120 "$chromium" "${flags[@]}" --dump-dom "file://$report" >"$dom"
fi
echo "$out"
