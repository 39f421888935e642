#!/usr/bin/env bash
# Dialtone's benchmarks, each printed next to the baseline measured in the same run, written to
# docs/benchmarks.md. Builds release binaries and the images, and runs a cluster of its own
# (.cluster-bench/): first with the real node (detection of real kills), then with the simulated
# node (scale: convergence, readiness, detection without a kubelet). Then scripts/reliability.sh
# (fuzzing, abuse, SSE load and soak), written to docs/reliability.md.
#   scripts/bench.sh                 all benchmarks at full size
#   (scripts/reliability.sh's own knobs: see it)
#   REAL_KILLS=50 REAL_HANGS=20 HEARTBEAT_STREAMS=2000 DETECTION_SAMPLES=100 CONVERGENCE_SIZES=100,500,1000,5000 \
#     READINESS_SERVICES=1000 READINESS_SERVICES_LARGE=5000 WORKER_REQUESTS=1000 scripts/bench.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
T="${CARGO_TARGET_DIR:-$REPO/target}/release"
bash scripts/setup.sh
cargo build --quiet --release -p bench -p telephony-operator -p telephony-pod -p sim-node
scripts/images.sh
export DIALTONE_CLUSTER_DIR="$REPO/.cluster-bench" DIALTONE_APISERVER_PORT=46443 DIALTONE_ETCD_PORT=42379
export DIALTONE_KUBECONFIG="$DIALTONE_CLUSTER_DIR/kubeconfig"
trap 'scripts/cluster.sh down' EXIT
# node MODE: the bench cluster with that node.
node() {
  scripts/cluster.sh down >/dev/null 2>&1 || true
  DIALTONE_NODE=$1 DIALTONE_SIM_NODE_BIN="$T/sim-node" scripts/cluster.sh up
}

out="$REPO/docs/benchmarks.md"
tmp=$(mktemp)
# bench NAME ARGS...: runs one benchmark and notes the command that produced its tables.
bench() {
  "$T/dialtone-bench" "$@"
  echo
  echo "Command: \`target/release/dialtone-bench $*\`" | sed "s|$T/|target/release/|g"
}
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d): $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB,"
  echo "$(uname -sm), Kubernetes 1.20.2 with the real node (kubelet 1.20.2, containerd 1.6.20) for the first"
  echo "tables and the simulated node for the others, release builds."
  echo "Each table compares with a baseline measured in the same run."
  echo
  echo "Targets: detection p99 [< 1 s; the in-process design polled every 30 s]; through the heartbeat"
  echo "[kill → 503 p99 ≤ 100 ms, hang → 503 p99 ≤ 500 ms, ≤ +10 MiB readiness RSS with 2000 streams]; convergence"
  echo "[operator ≥ 0.9× the baseline's throughput at 1000; time per service flat up to 5000]; operator memory"
  echo "[≤ 25 MiB at 1000 services, ≤ 64 MiB at 5000; CPU ≤ 1.5 ms per reconcile]; readiness RSS [≤ 32 MiB at 5000];"
  echo "readiness [≥ nginx with one worker, p99 < 2 ms at 10 connections, RSS < 20 MiB with 1000 services;"
  echo "at 50 connections wrk and the server share the 2 cores, and p99 is queueing for both servers]."
  node real >&2
  bench real-detection --kills "${REAL_KILLS:-50}" --hangs "${REAL_HANGS:-20}" --applies "${REAL_APPLIES:-20}" --services 10 \
    --operator "$T/telephony-operator"
  bench heartbeat --streams "${HEARTBEAT_STREAMS:-2000}" --operator "$T/telephony-operator"
  node sim >&2
  bench detection --samples "${DETECTION_SAMPLES:-100}" --operator "$T/telephony-operator"
  # The latency benchmarks before convergence: after 5000 services the control plane spends minutes
  # collecting garbage and etcd compacting (IO wait), and the p99 of nginx and of the readiness
  # service alike rose from 0.6 to 10 ms.
  bench readiness --services "${READINESS_SERVICES:-1000}" --operator "$T/telephony-operator"
  bench readiness --services "${READINESS_SERVICES_LARGE:-5000}" --seconds 5 --connections 10 --operator "$T/telephony-operator"
  bench worker --requests "${WORKER_REQUESTS:-1000}" --starts 5 --worker "$T/telephony-pod"
  # Namespaces of at most 500 services: in one namespace of 5000, kube-controller-manager 1.20 (its
  # ReplicaSet, Deployment and endpoints controllers list the whole namespace per sync) is O(N²).
  bench convergence --sizes "${CONVERGENCE_SIZES:-100,500,1000,5000}" --per-namespace 500 --baseline-up-to 1000 \
    --rounds "${CONVERGENCE_ROUNDS:-3}" --timeout-secs 1800 --operator "$T/telephony-operator"
} | tee "$tmp"
mv "$tmp" "$out" && chmod 644 "$out"
echo "wrote $out"
# What Dialtone survives, on the same cluster (the simulated node is up): fuzzing, abuse, SSE load
# and soak, written to docs/reliability.md.
scripts/reliability.sh
