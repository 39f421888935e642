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
# etcd, kube-apiserver, kube-controller-manager, helm, kubectl (cached under ~/.cache/dialtone)
bash "$REPO/scripts/build-control-plane.sh" >/dev/null
