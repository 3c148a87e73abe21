#!/usr/bin/env bash
# Prepares what an offline image build needs, under build/image-cache/ (git-ignored), each
# part reused while its inputs are unchanged:
#   base-<key>.tar   a Debian root filesystem with Python (mmdebstrap, from this machine's apt
#                    sources), imported into podman as localhost/logpipe-base:<key>
#   wheels-<key>/    every runtime wheel the image installs (`pip download`, constrained by
#                    requirements.lock; no torch), plus the build backend
#   models/          the embedding model exported to ONNX once (torch runs here, never in the image)
#   localhost/logpipe-node-base:<key>
#                    the base plus this machine's Node and npm, for the dashboard stage (Debian 12's
#                    nodejs is 18; Vite needs ^20.19 or >=22.12, which `make test` needs here anyway)
#   npm-<key>/       npm's cache filled by `npm ci` from the registry (keyed by package-lock.json),
#                    so `npm ci --offline` in the build finds every package
# Prints shell assignments (BASE_IMAGE=..., NODE_IMAGE=..., NPM_CACHE=..., WHEELHOUSE=...,
# MODELS=...) for the caller to eval.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PYTHON=${PYTHON:-.venv/bin/python}
CACHE=build/image-cache
mkdir -p "$CACHE"

# crun cannot run on a kernel with a mixed cgroup layout, and the runtime may not raise
# rlimits above what this shell holds: runc, and default ulimits at the hard limits here.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
cat > "$CACHE/containers.conf" <<CONF
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
CONF
export CONTAINERS_CONF="$PWD/$CACHE/containers.conf"

packages="python3,python3-venv,ca-certificates"
sources=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true)
base_key=$(printf '%s\n%s\n' "$packages" "$sources" | sha256sum | cut -c1-12)
base_tar="$CACHE/base-$base_key.tar"
base_image="localhost/logpipe-base:$base_key"
if [ ! -s "$base_tar" ]; then
  echo "building the base root filesystem ($packages) with mmdebstrap" >&2
  source_files=()
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
    [ -s "$file" ] && source_files+=("$file")
  done
  mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "${base_tar%.tar}.partial.tar" "${source_files[@]}" >&2
  mv "${base_tar%.tar}.partial.tar" "$base_tar"
fi
if ! podman image exists "$base_image"; then
  podman import --quiet "$base_tar" "$base_image" >/dev/null
fi

# The Node base: the Python base with this machine's node binary and npm added, laid out as in
# the official node images (/usr/local/bin, /usr/local/lib/node_modules/npm). node needs only
# glibc, libstdc++ and libgcc, all in the minbase root filesystem.
node_bin=$(command -v node)
npm_root=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
node_version=$("$node_bin" --version)
npm_version=$(npm --version)
node_key=$(printf '%s %s %s\n' "$base_key" "$node_version" "$npm_version" | sha256sum | cut -c1-12)
node_image="localhost/logpipe-node-base:$node_key"
if ! podman image exists "$node_image"; then
  echo "building the Node base (node $node_version, npm $npm_version) on $base_image" >&2
  context=$(mktemp -d)
  cp "$node_bin" "$context/node"
  cp -a "$npm_root" "$context/npm"
  printf '%s\n' "FROM $base_image" \
    "COPY node /usr/local/bin/node" \
    "COPY npm/ /usr/local/lib/node_modules/npm/" \
    "RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && node --version && npm --version" \
    > "$context/Containerfile"
  podman build --quiet --network none -t "$node_image" "$context" >/dev/null
  rm -rf "$context"
fi

npm_key=$(sha256sum frontend/package-lock.json | cut -c1-12)
npm_cache="$CACHE/npm-$npm_key"
if [ ! -f "$npm_cache/.complete" ]; then
  echo "filling npm's cache for the dashboard into $npm_cache" >&2
  rm -rf "$npm_cache"
  work=$(mktemp -d)
  cp frontend/package.json frontend/package-lock.json "$work/"
  # Scripts off: only the packages are wanted; the install itself is thrown away.
  (cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --cache "$root/$npm_cache" >&2)
  rm -rf "$work"
  touch "$npm_cache/.complete"
fi

lock_key=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
wheels="$CACHE/wheels-$lock_key"
if [ ! -f "$wheels/.complete" ]; then
  echo "collecting runtime wheels into $wheels" >&2
  rm -rf "$wheels"
  bash scripts/wheelhouse.sh "$PYTHON" "$wheels" >&2
  touch "$wheels/.complete"
fi

models="$CACHE/models"
if ! ls "$models"/*/model.onnx >/dev/null 2>&1; then
  echo "exporting the embedding model to ONNX" >&2
  PYTHONPATH=services "$PYTHON" -c 'import sys; from pathlib import Path
from logpipe.ai.embeddings import bundled_model_dir, export_onnx
print(export_onnx(bundled_model_dir(), Path(sys.argv[1])), file=sys.stderr)' "$models"
fi

echo "CONTAINERS_CONF=$CONTAINERS_CONF"
echo "BASE_IMAGE=$base_image"
echo "NODE_IMAGE=$node_image"
echo "NPM_CACHE=$npm_cache"
echo "WHEELHOUSE=$wheels"
echo "MODELS=$models"
