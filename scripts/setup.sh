#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine; fast when everything is there.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js >= 20 with npm is needed (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
need=()
for p in curl openssl ca-certificates; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
# Kubernetes (control plane and node), containerd, helm, kubectl, Prism (cached under ~/.cache/dialtone)
bash "$REPO/scripts/build-control-plane.sh" >/dev/null
CACHE="${DIALTONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dialtone}"

# Headless Chromium + playwright-core for the dashboard's browser test; wrk + nginx for benchmarks.
need=()
for p in chromium wrk nginx-light; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
# PyYAML for scripts/telnyx-contract.py (any python3 that has it will do).
python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
PW_DIR="$CACHE/playwright-core"
if [ ! -d "$PW_DIR/node_modules/playwright-core" ]; then
  mkdir -p "$PW_DIR"
  (cd "$PW_DIR" && npm install --silent --no-audit --no-fund --no-save playwright-core@1 >/dev/null 2>&1) \
    || { echo "setup: installing playwright-core from npm failed" >&2; exit 1; }
fi
# Prometheus Operator CRD schemas: the chart test validates its ServiceMonitor and PrometheusRule.
PM_DIR="$CACHE/prometheus-operator-models"
if [ ! -d "$PM_DIR/node_modules/@kubernetes-models/prometheus-operator" ]; then
  mkdir -p "$PM_DIR"
  (cd "$PM_DIR" && npm install --silent --no-audit --no-fund --no-save @kubernetes-models/prometheus-operator@6 >/dev/null 2>&1) \
    || { echo "setup: installing @kubernetes-models/prometheus-operator from npm failed" >&2; exit 1; }
fi
# The TypeScript workspace (packages/, examples/nextjs-app/): npm ci when the lockfile has changed
# since the last install (npm ci starts from scratch: about 20 s).
if [ ! "$REPO/node_modules/.package-lock.json" -nt "$REPO/package-lock.json" ]; then
  (cd "$REPO" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || { echo "setup: npm ci failed" >&2; exit 1; }
fi
