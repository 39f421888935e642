#!/usr/bin/env bash
# The one test command: everything CI checks, with all of its own set-up.
#   1. prerequisites (apt packages, helm/kubectl, the control plane binaries: cached after the first run)
#   2. cargo fmt --check and cargo clippy -D warnings
#   3. a private control plane (its own ports and state dir, so a dev cluster keeps running)
#   4. cargo test --workspace, e2e tests included, against that control plane
#   5. each benchmark once at a tiny size, and the demo
#   6. the control plane is brought down again, pass or fail
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
step() { printf '\n==> %s\n' "$*"; }
t0=$SECONDS

export DIALTONE_CLUSTER_DIR="${DIALTONE_TEST_CLUSTER_DIR:-$REPO/.cluster-test}"
export DIALTONE_APISERVER_PORT="${DIALTONE_TEST_APISERVER_PORT:-26443}"
export DIALTONE_ETCD_PORT="${DIALTONE_TEST_ETCD_PORT:-22379}"
export DIALTONE_KUBECONFIG="$DIALTONE_CLUSTER_DIR/kubeconfig"

step "prerequisites"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "control plane up (state: $DIALTONE_CLUSTER_DIR, apiserver port $DIALTONE_APISERVER_PORT)"
trap 'step "control plane down"; scripts/cluster.sh down' EXIT
scripts/cluster.sh up

step "cargo test --workspace (unit + e2e on the control plane)"
# E2E tests mostly wait on the cluster: run more of them at once than there are cores.
RUST_TEST_THREADS="${RUST_TEST_THREADS:-8}" cargo test --workspace --no-fail-fast 2>&1 | tee "$DIALTONE_CLUSTER_DIR/test.log"

step "benchmarks, once at a tiny size (so they can't rot; real figures: scripts/bench.sh)"
cargo build --quiet -p bench -p telephony-operator -p telephony-pod
T="${CARGO_TARGET_DIR:-$REPO/target}/debug"
DIALTONE_KUBECONFIG="$DIALTONE_KUBECONFIG" "$T/dialtone-bench" detection --samples 2 --operator "$T/telephony-operator"
"$T/dialtone-bench" convergence --sizes 3 --operator "$T/telephony-operator"
"$T/dialtone-bench" readiness --services 5 --seconds 1 --connections 4 --operator "$T/telephony-operator"
"$T/dialtone-bench" worker --requests 20 --starts 1 --worker "$T/telephony-pod"

step "the demo (scripts/demo.sh), end to end on the same control plane"
DIALTONE_DEMO_PORT=28080 DIALTONE_DEMO_ADMIN_PORT=28081 scripts/demo.sh
scripts/demo.sh stop

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "\nworkspace: %d passed, %d failed\n", p, f }' \
  "$DIALTONE_CLUSTER_DIR/test.log"
step "all checks passed in $((SECONDS - t0))s"
