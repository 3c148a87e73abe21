#!/usr/bin/env bash
# System packages the tests run for real: Redis 7 (embedding cache), PostgreSQL 15
# (analysis/tokens on the production SQL backend), Chromium (the dashboard's browser tests,
# driven by npm playwright-core), Prometheus (the dashboards' queries) and
# podman/buildah/runc/mmdebstrap (the image, built and run without a daemon or a registry).
# Installed with apt where we can.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
for tool in podman buildah runc mmdebstrap slirp4netns fuse-overlayfs; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
test -x /usr/lib/cni/bridge || missing+=(containernetworking-plugins)

command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)

# The dashboard builds with Node 20 (Vite); Debian 12's own nodejs is 18, so it is not installed here.
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' >/dev/null 2>&1; then
  echo "Node.js 20 or newer (with npm) is needed to build and test the dashboard: https://nodejs.org/en/download" >&2
  exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages' own services are not needed: tests start throwaway instances on 127.0.0.1.
  (service redis-server stop || true) >/dev/null 2>&1
  (service postgresql stop || true) >/dev/null 2>&1
  (service prometheus stop || true) >/dev/null 2>&1
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}), then run make test again" >&2
  exit 1
fi
