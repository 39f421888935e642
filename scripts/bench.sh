#!/usr/bin/env bash
# Dialtone's benchmarks, each printed next to the baseline measured in the same run, written to
# docs/benchmarks.md. Builds release binaries and uses the local control plane (started if needed).
#   scripts/bench.sh                 all benchmarks at full size
#   DETECTION_SAMPLES=100 READINESS_SERVICES=1000 WORKER_REQUESTS=1000 scripts/bench.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
T="${CARGO_TARGET_DIR:-$REPO/target}/release"
bash scripts/setup.sh
cargo build --quiet --release -p bench -p telephony-operator -p telephony-pod -p sim-node
DIALTONE_SIM_NODE_BIN="$T/sim-node" scripts/cluster.sh up
export DIALTONE_KUBECONFIG="$(scripts/cluster.sh kubeconfig)"

out="$REPO/docs/benchmarks.md"
tmp=$(mktemp)
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d): $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB,"
  echo "$(uname -sm), Kubernetes 1.20.2 control plane and the simulated node on loopback, release builds."
  "$T/dialtone-bench" detection --samples "${DETECTION_SAMPLES:-100}" --operator "$T/telephony-operator"
  "$T/dialtone-bench" readiness --services "${READINESS_SERVICES:-1000}" --operator "$T/telephony-operator"
  "$T/dialtone-bench" worker --requests "${WORKER_REQUESTS:-1000}" --starts 5 --worker "$T/telephony-pod"
} | tee "$tmp"
mv "$tmp" "$out"
echo "wrote $out"
