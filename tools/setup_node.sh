#!/usr/bin/env bash
# Installs the npm packages that the browser and ONNX Runtime tests use into .node/ at the
# repository root (git-ignored): playwright-core (drives Debian's /usr/bin/chromium; no browser is
# downloaded) and onnxruntime-web (runs ONNX models under Node.js with its bundled WebAssembly).
# Versions are pinned by tools/node/package.json and its package-lock.json; `npm ci` installs
# exactly those. Does nothing when they are already there.
#
# Usage: tools/setup_node.sh [DEST]   (default: <repo>/.node)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/.node}"
src="$repo_root/tools/node"

if ! command -v npm >/dev/null; then
  echo "setup_node: npm not found (apt-get install npm); the browser and ONNX Runtime tests will skip" >&2
  exit 0
fi
mkdir -p "$dest"
if cmp -s "$src/package-lock.json" "$dest/package-lock.json" &&
   [[ -d "$dest/node_modules/playwright-core" && -d "$dest/node_modules/onnxruntime-web" ]]; then
  exit 0
fi
cp "$src/package.json" "$src/package-lock.json" "$dest/"
echo "setup_node: installing playwright-core and onnxruntime-web into $dest"
# No install scripts: neither package needs one (Playwright's would fetch browsers).
(cd "$dest" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
