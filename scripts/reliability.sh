#!/usr/bin/env bash
# What Dialtone survives, measured, written to docs/reliability.md: each promise, the fault, the
# test or run that checks it, and its figures from this run. Runs the fuzzers at full size
# (scripts/fuzz.sh), the connection-abuse tests, chaos on the control plane (dialtone-bench
# chaos, on the simulated node), and the readiness service's SSE load and soak (dialtone-bench
# sse-load); reads nothing from earlier runs.
#   scripts/reliability.sh       (scripts/bench.sh runs it last, on its own cluster)
#   FUZZ_CASES=25 FUZZ_SECONDS=900 READINESS_FUZZ_CASES=2000 READINESS_FUZZ_SECONDS=600 \
#     CHAOS_SERVICES=50 CHAOS_KILLS=50 CHAOS_APISERVER_RESTARTS=5 CHAOS_ETCD_RESTARTS=1 \
#     SSE_SUBSCRIBERS=1000 SSE_SERVICES=100 SSE_ROUNDS=20 SOAK_SECONDS=600 scripts/reliability.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
T="${CARGO_TARGET_DIR:-$REPO/target}/release"
export DIALTONE_CLUSTER_DIR="${DIALTONE_CLUSTER_DIR:-$REPO/.cluster-bench}"
export DIALTONE_APISERVER_PORT="${DIALTONE_APISERVER_PORT:-46443}" DIALTONE_ETCD_PORT="${DIALTONE_ETCD_PORT:-42379}"
export DIALTONE_KUBECONFIG="$DIALTONE_CLUSTER_DIR/kubeconfig"
if ! KUBECONFIG="$DIALTONE_KUBECONFIG" kubectl get --raw /readyz >/dev/null 2>&1; then
  bash scripts/setup.sh
  cargo build --quiet --release -p bench -p telephony-operator -p sim-node
  trap 'scripts/cluster.sh down' EXIT
  DIALTONE_NODE=sim DIALTONE_SIM_NODE_BIN="$T/sim-node" scripts/cluster.sh up
fi
[ "$(cat "$DIALTONE_CLUSTER_DIR/node" 2>/dev/null)" = sim ] ||
  { echo "reliability.sh: the chaos harness needs the simulated node: DIALTONE_NODE=sim scripts/cluster.sh up" >&2; exit 1; }
cargo build --quiet --release -p bench -p telephony-operator
work=$(mktemp -d)
say() { printf '\n[reliability] %s\n' "$*"; }

say "the worker's API fuzzed"
scripts/fuzz.sh worker "${FUZZ_CASES:-25}" "${FUZZ_SECONDS:-900}" | tee "$work/fuzz-worker.txt"
say "the readiness service's API fuzzed"
scripts/fuzz.sh readiness "${READINESS_FUZZ_CASES:-2000}" "${READINESS_FUZZ_SECONDS:-600}" | tee "$work/fuzz-readiness.txt"
say "connection abuse: slow heads, oversized heads and bodies, half-closed clients, the connection bound"
cargo test --quiet -p dialtone-serving 2>&1 | tee "$work/abuse.txt"
cargo test --quiet -p telephony-pod --test api oversized 2>&1 | tee -a "$work/abuse.txt"
cargo test --quiet -p dialtone-readiness falls_behind 2>&1 | tee -a "$work/abuse.txt"
say "chaos on the control plane"
"$T/dialtone-bench" chaos --services "${CHAOS_SERVICES:-50}" --operator-kills "${CHAOS_KILLS:-50}" \
  --apiserver-restarts "${CHAOS_APISERVER_RESTARTS:-5}" --etcd-restarts "${CHAOS_ETCD_RESTARTS:-1}" \
  --operator "$T/telephony-operator" | tee "$work/chaos.txt"
say "the readiness service under SSE load"
"$T/dialtone-bench" sse-load --subscribers "${SSE_SUBSCRIBERS:-1000}" --services "${SSE_SERVICES:-100}" \
  --rounds "${SSE_ROUNDS:-20}" --operator "$T/telephony-operator" | tee "$work/load.txt"
say "the readiness service soaked"
"$T/dialtone-bench" sse-load --subscribers "${SOAK_SUBSCRIBERS:-100}" --services "${SSE_SERVICES:-100}" \
  --seconds "${SOAK_SECONDS:-600}" --round-ms 2000 --operator "$T/telephony-operator" | tee "$work/soak.txt"

# fuzz_line FILE: the fuzzer's count line, without its prefix.
fuzz_line() { grep -oE '\[fuzz\] (worker|readiness): .*' "$1" | sed 's/^\[fuzz\] //'; }
cases() { grep -o '[0-9]* generated, [0-9]* passed' "$1" | head -1; }
tests_passed() { grep -o 'test result: ok. [0-9]* passed' "$1" | awk '{ n += $4 } END { print n + 0 }'; }
table() { sed -n '/^| measure/,/^$/p' "$1" | sed '/^$/d'; }
out="$REPO/docs/reliability.md"
{
  echo "# Reliability"
  echo
  echo "Produced by \`scripts/reliability.sh\` (run by \`scripts/bench.sh\`) on $(date -u +%Y-%m-%d): $(nproc) cores,"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB, release builds, the readiness service on loopback against the local apiserver."
  echo "Every figure below is from this run. Each promise names the test that checks it on every CI run"
  echo "(\`scripts/test.sh\`: the same tests, or the same tools at a bounded size)."
  echo "Fuzzing budgets: the worker ${FUZZ_CASES:-25} cases per operation within ${FUZZ_SECONDS:-900} s, the readiness"
  echo "service ${READINESS_FUZZ_CASES:-2000} within ${READINESS_FUZZ_SECONDS:-600} s."
  echo
  echo "## Promises"
  echo
  echo "| promise | under | checked by | figures (this run) |"
  echo "| --- | --- | --- | --- |"
  echo "| Bad input gets a documented 4xx with a JSON error; nothing panics; no 5xx but the documented 502/503 with \`Retry-After\` | schema-based fuzzing of the worker's API from its own OpenAPI document | \`scripts/fuzz.sh worker\` (schemathesis 4.32.5, every check) | $(fuzz_line "$work/fuzz-worker.txt"); schemathesis: $(cases "$work/fuzz-worker.txt") |"
  echo "| the same, for the readiness service | fuzzing of \`/v1/status\`, probes, metrics and the dashboard from its OpenAPI document | \`scripts/fuzz.sh readiness\` | $(fuzz_line "$work/fuzz-readiness.txt"); schemathesis: $(cases "$work/fuzz-readiness.txt") |"
  echo "| A slow or broken client can't hold the server | a head sent a byte at a time (slowloris), silent and idle connections, heads over 16 KiB or 100 headers (431), bodies over 64 KiB (413), half-closed clients, a client that stops reading an endless response, more connections than the bound | \`serving/src/tests.rs\`, \`telephony-pod/tests/api.rs\` (\`oversized_…\`), \`readiness/src/http.rs\` (\`a_subscriber_that_falls_behind_…\`) | $(tests_passed "$work/abuse.txt") tests passed; limits below |"
  echo "| Every SSE subscriber ends with every service's final state (no lost update); a subscriber that falls 1,024 changes behind is told \`resync\` and closed, never buffered without bound | ${SSE_SUBSCRIBERS:-1000} subscribers and steady GETs while ${SSE_SERVICES:-100} services flap | \`dialtone-bench sse-load\` (a tiny run in \`scripts/test.sh bench\`) | the load table below |"
  echo "| Memory stays flat over time | a ${SOAK_SECONDS:-600} s soak: ${SOAK_SUBSCRIBERS:-100} subscribers, every service flipped every 2 s | \`dialtone-bench sse-load --seconds\` | the soak table below (target: RSS growth ≤ 5 %) |"
  echo "| No secret in any log, status, Event, error body or metrics output | every artifact of the e2e tier | \`scripts/leak-check.sh\` (every CI run) | — |"
  echo "| Crash-safety of the operator: no orphaned or duplicated Deployments or Services, every worker failure counted exactly once, no stale \`Ready\`, leadership regained in bound, no Event without a failure, no panic | ${CHAOS_KILLS:-50} SIGKILLs of the leading operator (2 replicas) at random moments, ${CHAOS_APISERVER_RESTARTS:-5} apiserver and ${CHAOS_ETCD_RESTARTS:-1} etcd restarts, a proxy cutting the operators' connections (watches included), spec edits and re-creates, while workers crash | \`dialtone-bench chaos\` (a tiny run in \`scripts/test.sh bench\`) | the chaos tables below |"
  echo
  echo "## Limits"
  echo
  echo "Every HTTP server here (the worker, the readiness service, the operator's admin endpoint) runs"
  echo "through \`dialtone-serving\`, which states them (\`serving/src/lib.rs\`):"
  echo
  echo "| limit | worker | readiness service | admin endpoint |"
  echo "| --- | --- | --- | --- |"
  echo "| request head must arrive within (also: idle keep-alive) | 30 s | 30 s | 30 s |"
  echo "| largest request head (431 beyond) | 16 KiB | 16 KiB | 16 KiB |"
  echo "| most headers (431 beyond) | 100 | 100 | 100 |"
  echo "| largest body (413 beyond) | 64 KiB (Telnyx's webhooks too) | no body is read | no body is read |"
  echo "| connections at once (more wait in the kernel's queue) | 1,024 | 4,096 | 1,024 |"
  echo "| a write stalled this long (the client stopped reading) closes the connection | 30 s | 30 s | 30 s |"
  echo "| SSE: a subscriber behind by | — | 1,024 changes: \`resync\`, then closed | — |"
  echo
  echo "## Chaos on the control plane"
  echo
  sed -n '/^| fault/,$p' "$work/chaos.txt"
  echo
  echo "Command: \`target/release/dialtone-bench chaos --services ${CHAOS_SERVICES:-50} --operator-kills ${CHAOS_KILLS:-50} --apiserver-restarts ${CHAOS_APISERVER_RESTARTS:-5} --etcd-restarts ${CHAOS_ETCD_RESTARTS:-1}\`"
  echo "(the operators reach the apiserver through the proxy and a second apiserver on the same etcd, which"
  echo "is the one restarted; each round injects worker crashes, an edit, a kill, and waits for all Ready)."
  echo
  echo "## Readiness under load"
  echo
  table "$work/load.txt"
  echo
  echo "Command: \`target/release/dialtone-bench sse-load --subscribers ${SSE_SUBSCRIBERS:-1000} --services ${SSE_SERVICES:-100} --rounds ${SSE_ROUNDS:-20}\`"
  echo "(the subscribers run in the benchmark's process, on the same 2 cores as the service)."
  echo
  echo "## Readiness soak"
  echo
  table "$work/soak.txt"
  echo
  echo "Command: \`target/release/dialtone-bench sse-load --subscribers ${SOAK_SUBSCRIBERS:-100} --services ${SSE_SERVICES:-100} --seconds ${SOAK_SECONDS:-600} --round-ms 2000\`"
} >"$out"
rm -rf "$work"
echo "wrote $out"
