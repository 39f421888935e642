#!/usr/bin/env bash
# The one test command: everything CI checks, with all of its own set-up.
#
#   scripts/test.sh [unit|e2e|bench|all]     (default: all, in this order)
#
#   unit   prerequisites (apt packages, helm/kubectl, Kubernetes and the node's runtime: cached
#          after the first run), cargo fmt --check, cargo clippy -D warnings (every tier), plain
#          `cargo test --workspace` (the unit tests: no cluster needed), the worker's API fuzzed
#          from its OpenAPI document (scripts/fuzz.sh, bounded), the TypeScript packages
#          (built, unit tests, npm pack installed in fresh projects, the README's app section built
#          as a fresh Next.js app)
#   e2e    the images; a private cluster with the real node (its own ports and state dir, so a dev
#          cluster's control plane keeps running); the e2e and contract tiers (real worker,
#          operator and readiness pods, real faults); the readiness service fuzzed (bounded); the
#          Next.js example in headless Chromium on
#          real worker pods (scripts/web-e2e.sh); the demo and its app; the schemas of newer
#          Kubernetes versions and a security scan (scripts/schemas.sh); no secret in any log or
#          Event (scripts/leak-check.sh); down, then the real
#          node's lifecycle test (a killed node is cleaned up; down leaves the host as it was)
#   bench  each benchmark once at a tiny size, so they can't rot (real figures: scripts/bench.sh):
#          the real-node one, then the simulated node's harness test and the scale benchmarks
#
# Each stage prints its time; one closing line sums every test run (cargo and vitest alike). The
# cluster is brought down at exit, pass or fail.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
STAGE="${1:-all}"
case "$STAGE" in unit | e2e | bench | all) ;; *) echo "usage: scripts/test.sh [unit|e2e|bench|all]" >&2; exit 2 ;; esac
want() { [ "$STAGE" = all ] || [ "$STAGE" = "$1" ]; }
step() { printf '\n==> %s\n' "$*"; }
t0=$SECONDS
TIMES=()
stage_done() { TIMES+=("$1 $((SECONDS - $2))s"); printf '\n==> stage %s done in %ss\n' "$1" "$((SECONDS - $2))"; }

export DIALTONE_CLUSTER_DIR="${DIALTONE_TEST_CLUSTER_DIR:-$REPO/.cluster-test}"
export DIALTONE_APISERVER_PORT="${DIALTONE_TEST_APISERVER_PORT:-26443}"
export DIALTONE_ETCD_PORT="${DIALTONE_TEST_ETCD_PORT:-22379}"
export DIALTONE_KUBECONFIG="$DIALTONE_CLUSTER_DIR/kubeconfig"
mkdir -p "$DIALTONE_CLUSTER_DIR"
LOG="$DIALTONE_CLUSTER_DIR/test.log"
: >"$LOG"
# A test run, its output kept for the closing count.
counted() { "$@" 2>&1 | tee -a "$LOG"; }
trap 'step "cluster down"; scripts/cluster.sh down' EXIT
T="${CARGO_TARGET_DIR:-$REPO/target}/debug"

step "prerequisites"
bash scripts/setup.sh

if want unit; then
  s=$SECONDS
  step "cargo fmt --check"
  cargo fmt --all -- --check

  step "cargo clippy --all-targets --all-features -D warnings (every test tier)"
  cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

  step "the worker's Telnyx contract: the committed copy is what ../shared/telnyx gives today"
  if [ -d ../shared/telnyx ]; then
    python3 scripts/telnyx-contract.py --check
  elif [ -n "${CI:-}" ]; then
    echo "test.sh: ../shared/telnyx is missing; CI always has it" >&2; exit 1
  else
    echo "(no ../shared beside this clone: the committed copy is used as it is)"
  fi

  step "cargo test --workspace: the unit tests (no cluster, no npm, no ../shared)"
  counted cargo test --workspace --no-fail-fast

  step "the worker's API fuzzed from its OpenAPI document (scripts/fuzz.sh, bounded: 10 cases per operation, 60 s)"
  scripts/fuzz.sh worker 10 60

  step "TypeScript: the packages built, their unit tests, npm pack installed in fresh projects"
  npm run --silent build
  npx vitest run --project client --project react --project pack --reporter=default \
    --reporter=json --outputFile.json="$DIALTONE_CLUSTER_DIR/vitest-unit.json"
  counted node scripts/vitest-count.mjs "$DIALTONE_CLUSTER_DIR/vitest-unit.json" packages
  stage_done unit "$s"
fi

if want e2e; then
  s=$SECONDS
  step "images (scripts/images.sh)"
  scripts/images.sh

  step "cluster up, real node (state: $DIALTONE_CLUSTER_DIR, apiserver port $DIALTONE_APISERVER_PORT)"
  DIALTONE_NODE=real scripts/cluster.sh up

  step "the e2e and contract tiers on the real node"
  # E2E tests mostly wait on the cluster: run more of them at once than there are cores.
  E2E=(e2e_chart e2e_drain e2e_faults e2e_leader e2e_operator e2e_readiness contract node_network)
  targets=()
  for t in "${E2E[@]}"; do targets+=(--test "$t"); done
  RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}" counted cargo test --no-fail-fast \
    -p telephony-operator -p telephony-pod -p testing \
    --features telephony-operator/e2e,telephony-pod/contract,testing/e2e "${targets[@]}"
  # A tier that silently didn't run is a failure, not a pass.
  for t in "${E2E[@]}"; do
    grep -q "Running tests/$t.rs" "$LOG" || { echo "test.sh: the $t tests did not run" >&2; exit 1; }
  done

  step "the readiness service's API fuzzed from its OpenAPI document (scripts/fuzz.sh, bounded: 10 cases per operation, 60 s)"
  scripts/fuzz.sh readiness 10 60

  step "the app side in headless Chromium: the Next.js example on real worker pods (scripts/web-e2e.sh)"
  DIALTONE_WEB_E2E_OUT="$REPO/target/web-e2e" counted scripts/web-e2e.sh

  step "the demo (scripts/demo.sh), end to end on the same cluster, and its app"
  DIALTONE_DEMO_PORT=28080 scripts/demo.sh
  DIALTONE_APP_PORT=23001 scripts/demo.sh app

  step "newer Kubernetes: the chart, the operator's objects and its live Events against 1.25/1.30/1.37 schemas; checkov"
  KUBECONFIG="$DIALTONE_KUBECONFIG" counted scripts/schemas.sh

  step "no secret in any log, Event or status written above (scripts/leak-check.sh)"
  scripts/leak-check.sh
  scripts/demo.sh stop # also brings the cluster down

  step "the real node's lifecycle: a killed node cleaned up by the next up; down leaves the host as it was"
  counted cargo test -p testing --features e2e --test node_lifecycle
  stage_done e2e "$s"
fi

if want bench; then
  s=$SECONDS
  step "benchmarks, once at a tiny size (so they can't rot; real figures: scripts/bench.sh)"
  cargo build --quiet -p bench -p telephony-operator -p telephony-pod
  if [ "$STAGE" = bench ]; then scripts/images.sh; fi
  DIALTONE_NODE=real scripts/cluster.sh up
  "$T/dialtone-bench" real-detection --kills 2 --hangs 2 --applies 2 --services 2 --operator "$T/telephony-operator"
  "$T/dialtone-bench" heartbeat --streams 20 --seconds 1 --operator "$T/telephony-operator"
  scripts/cluster.sh down

  step "cluster up, simulated node (the benchmarks' scale mode): its harness test, the scale benchmarks"
  DIALTONE_NODE=sim scripts/cluster.sh up
  counted cargo test -p sim-node --features e2e --no-fail-fast
  "$T/dialtone-bench" detection --samples 2 --operator "$T/telephony-operator"
  "$T/dialtone-bench" convergence --sizes 3 --rounds 2 --operator "$T/telephony-operator"
  "$T/dialtone-bench" readiness --services 5 --seconds 1 --connections 4 --operator "$T/telephony-operator"
  "$T/dialtone-bench" sse-load --subscribers 20 --services 5 --rounds 3 --round-ms 100 --operator "$T/telephony-operator"
  "$T/dialtone-bench" chaos --services 5 --operator-kills 2 --apiserver-restarts 1 --etcd-restarts 0 --operator "$T/telephony-operator"
  "$T/dialtone-bench" worker --requests 20 --starts 1 --worker "$T/telephony-pod"
  stage_done bench "$s"
fi

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "\nworkspace: %d passed, %d failed\n", p, f }' "$LOG"
step "all checks passed in $((SECONDS - t0))s (${TIMES[*]})"
