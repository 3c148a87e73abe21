#!/usr/bin/env bash
# The chart installs the CRDs from its own crds/ folder; crds/ at the top is their one source.
# Run after changing a CRD (tests/deploy/test_chart.py fails while the two differ).
set -euo pipefail
cd "$(dirname "$0")/.."
test -d crds || { echo "crds/ is missing" >&2; exit 1; }
mkdir -p charts/logpipe/crds
rm -f charts/logpipe/crds/*.yaml
cp crds/*.yaml charts/logpipe/crds/
