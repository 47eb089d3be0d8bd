#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer (CUDA off), in a build folder
# of its own, with zero reports allowed: the first report stops that test and fails it.
#
# Usage: tools/sanitize.sh [BUILD_DIR]      (default: build-asan under the repository root)
# Runs every ctest test except those listed in MG_SANITIZE_EXCLUDE below (docs/reliability.md
# says which and why). Prints the time taken and the tests run.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${1:-$repo_root/build-asan}"
start=$(date +%s)

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -O1: ASan's own advice (fast enough to train the small e2e models, quick to compile).
cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" -DMNIST_GPU_CUDA=OFF -DMNIST_GPU_SANITIZE=ON "${launcher[@]}"
cmake --build "$build_dir" -j "$(nproc)"
built=$(date +%s)

# Any report is fatal, with the stack; LSan reports leaks at exit. The suppressions are for
# third-party code only, each with its reason, in tests/sanitizers/.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$repo_root/tests/sanitizers/ubsan.supp"
export LSAN_OPTIONS="suppressions=$repo_root/tests/sanitizers/lsan.supp:print_suppressions=0"

# Left out (docs/reliability.md): the browser tests (Chromium drives the page; what they add over
# test_serve is the page's JavaScript, not our C++), and the one-epoch accuracy run, which under
# ASan takes several times its 2 minutes and covers the same code as e2e_cli_commands.
MG_SANITIZE_EXCLUDE='^(e2e_mnist_one_epoch_cpu|serve_browser|train_serve_browser|compare_browser|onnx_export_runtime|serve_fixture_checkpoint)$'
ctest --test-dir "$build_dir" --output-on-failure -E "$MG_SANITIZE_EXCLUDE"
end=$(date +%s)
echo "sanitize: build $((built - start)) s, tests $((end - built)) s"
