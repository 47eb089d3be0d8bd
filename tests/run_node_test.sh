#!/usr/bin/env bash
# Runs one of the Node.js tests (browser, ONNX Runtime) with the npm packages of
# tools/setup_node.sh; skips (77) with the reason when Node.js is missing.
#   tests/run_node_test.sh NODE_DIR SCRIPT.mjs ARGS...
set -euo pipefail
node_dir=$1
shift
if ! command -v node >/dev/null; then
  echo "SKIP: node not found (apt-get install nodejs npm, then tools/setup_node.sh)"
  exit 77
fi
export MG_NODE_DIR=$node_dir
exec node "$@"
