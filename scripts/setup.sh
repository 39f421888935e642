#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine; fast when everything is there.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

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
