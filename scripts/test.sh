#!/usr/bin/env bash
# The one test command: everything CI checks, with all of its own set-up.
#   1. prerequisites (apt packages, helm/kubectl, Kubernetes and the node's runtime: cached after
#      the first run), cargo fmt --check, cargo clippy -D warnings
#   2. the images, from the release binaries (scripts/images.sh)
#   2b. the TypeScript packages: built, unit tests (vitest), npm pack installed in a fresh dir
#   3. a private cluster with the real node (its own ports and state dir, so a dev cluster's
#      control plane keeps running), then cargo test --workspace (unit tests, and e2e tests with
#      real worker, operator and readiness pods), the Next.js example in headless Chromium on
#      real worker pods (scripts/web-e2e.sh), the demo, and the schemas of newer Kubernetes
#      versions with a security scan (scripts/schemas.sh)
#   4. down, then the real node's lifecycle test: a killed node is cleaned up, and down leaves the
#      host as it was
#   5. the same cluster with the simulated node: its own harness test, and each benchmark once at
#      a tiny size (so they can't rot; real figures: scripts/bench.sh)
#   6. the cluster is brought down again, pass or fail; one closing line sums every test binary
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
step() { printf '\n==> %s\n' "$*"; }
t0=$SECONDS

export DIALTONE_CLUSTER_DIR="${DIALTONE_TEST_CLUSTER_DIR:-$REPO/.cluster-test}"
export DIALTONE_APISERVER_PORT="${DIALTONE_TEST_APISERVER_PORT:-26443}"
export DIALTONE_ETCD_PORT="${DIALTONE_TEST_ETCD_PORT:-22379}"
export DIALTONE_KUBECONFIG="$DIALTONE_CLUSTER_DIR/kubeconfig"
mkdir -p "$DIALTONE_CLUSTER_DIR"
LOG="$DIALTONE_CLUSTER_DIR/test.log"
: >"$LOG"
# cargo test, its output kept for the closing count.
counted() { "$@" 2>&1 | tee -a "$LOG"; }

step "prerequisites"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "TypeScript: the packages built, their unit tests, npm pack installed in a fresh dir"
npm run --silent build
npx vitest run --project client --project react --project pack --reporter=default \
  --reporter=json --outputFile.json="$DIALTONE_CLUSTER_DIR/vitest-unit.json"
counted node scripts/vitest-count.mjs "$DIALTONE_CLUSTER_DIR/vitest-unit.json" packages

step "images (scripts/images.sh)"
scripts/images.sh

step "cluster up, real node (state: $DIALTONE_CLUSTER_DIR, apiserver port $DIALTONE_APISERVER_PORT)"
trap 'step "cluster down"; scripts/cluster.sh down' EXIT
DIALTONE_NODE=real scripts/cluster.sh up

step "cargo test --workspace (unit + e2e on the real node)"
# E2E tests mostly wait on the cluster: run more of them at once than there are cores.
RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}" counted cargo test --workspace --exclude sim-node --no-fail-fast

step "the app side in headless Chromium: the Next.js example on real worker pods (scripts/web-e2e.sh)"
DIALTONE_WEB_E2E_OUT="$REPO/target/web-e2e" counted scripts/web-e2e.sh

step "the real-node benchmark, once at a tiny size"
cargo build --quiet -p bench
"${CARGO_TARGET_DIR:-$REPO/target}/debug/dialtone-bench" real-detection --kills 2 --applies 2 --services 2

step "the demo (scripts/demo.sh), end to end on the same cluster"
DIALTONE_DEMO_PORT=28080 scripts/demo.sh
DIALTONE_APP_PORT=23001 scripts/demo.sh app

step "newer Kubernetes: the chart, the operator's objects and its live Events against 1.25/1.30/1.37 schemas; checkov"
KUBECONFIG="$DIALTONE_KUBECONFIG" counted scripts/schemas.sh
scripts/demo.sh stop # also brings the cluster down

step "the real node's lifecycle: a killed node cleaned up by the next up; down leaves the host as it was"
counted cargo test -p testing --test node_lifecycle

step "cluster up, simulated node (the benchmarks' scale mode)"
DIALTONE_NODE=sim scripts/cluster.sh up
counted cargo test -p sim-node --no-fail-fast

step "benchmarks, once at a tiny size (so they can't rot; real figures: scripts/bench.sh)"
cargo build --quiet -p bench -p telephony-operator -p telephony-pod
T="${CARGO_TARGET_DIR:-$REPO/target}/debug"
"$T/dialtone-bench" detection --samples 2 --operator "$T/telephony-operator"
"$T/dialtone-bench" convergence --sizes 3 --operator "$T/telephony-operator"
"$T/dialtone-bench" readiness --services 5 --seconds 1 --connections 4 --operator "$T/telephony-operator"
"$T/dialtone-bench" worker --requests 20 --starts 1 --worker "$T/telephony-pod"

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "\nworkspace: %d passed, %d failed\n", p, f }' "$LOG"
step "all checks passed in $((SECONDS - t0))s"
