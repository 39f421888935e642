#!/usr/bin/env bash
# Schema-based fuzzing of the worker's HTTP API: schemathesis (PyPI, pinned) generates valid and
# malformed requests from the worker's own OpenAPI document (GET /openapi.json) and checks every
# answer against it: no 500, only documented status codes and content types, bodies matching
# their schemas, invalid input refused. The worker runs as a process on loopback against Prism
# serving Telnyx's contract (the project's copy), with webhooks and the bearer token on.
#
#   scripts/fuzz.sh [CASES] [SECONDS]   CASES per operation (default 100), a time budget (600)
#
# The event streams (/v1/events, /v1/heartbeat) never end, so they are left out here; the token,
# probes and the rest are fuzzed. Output: target/fuzz/ (junit report, the worker's log).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CASES="${1:-100}"
SECONDS_BUDGET="${2:-600}"
CACHE="${DIALTONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dialtone}"
OUT="$REPO/target/fuzz"
mkdir -p "$OUT"
say() { printf '[fuzz] %s\n' "$*"; }

VENV="$CACHE/fuzz-venv"
if [ ! -x "$VENV/bin/schemathesis" ] || ! "$VENV/bin/schemathesis" --version | grep -q 4.32.5; then
  say "installing schemathesis 4.32.5 into $VENV"
  python3 -m venv "$VENV" 2>/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
PRISM="$CACHE/prism-5.16.0/node_modules/.bin/prism"
[ -x "$PRISM" ] || { echo "fuzz: Prism missing at $PRISM: run scripts/setup.sh" >&2; exit 1; }
cargo build --quiet -p telephony-pod
WORKER="${CARGO_TARGET_DIR:-$REPO/target}/debug/telephony-pod"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
wait_for() { # URL WHAT
  for _ in $(seq 1 300); do curl -fsS -o /dev/null -H 'Authorization: Bearer k' "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "fuzz: $2 did not start" >&2; exit 1
}

TELNYX_PORT=$(free_port)
"$PRISM" mock -h 127.0.0.1 -p "$TELNYX_PORT" telephony-pod/tests/telnyx/telnyx.openapi.yml >"$OUT/prism.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$TELNYX_PORT/v2/telephony_credentials?page%5Bsize%5D=1" "Prism"

PORT=$(free_port)
TOKEN="fuzz-token-$(date +%s)-0123456789"
# A real ed25519 public key (RFC 8032's first test vector), so the webhook route verifies.
PUBLIC_KEY="11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
env -i PATH="$PATH" TELNYX_API_KEY=fuzz-key TELNYX_CONNECTION_ID=fuzz \
  TELNYX_BASE_URL="http://127.0.0.1:$TELNYX_PORT/v2" PORT="$PORT" TELNYX_MAX_ATTEMPTS=1 \
  TELNYX_PUBLIC_KEY="$PUBLIC_KEY" DIALTONE_API_TOKEN="$TOKEN" LOG_FORMAT=text RUST_LOG=warn \
  "$WORKER" >"$OUT/worker.log" 2>&1 &
PIDS+=($!)
WORKER_PID=$!
wait_for "http://127.0.0.1:$PORT/readyz" "the worker"
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$WORKER_PID/status")

say "schemathesis: $CASES cases per operation, at most ${SECONDS_BUDGET}s, against the worker on :$PORT"
set +e
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
  -n "$CASES" --max-time "$SECONDS_BUDGET" -w 2 --seed 42 \
  --mode all \
  --exclude-path /v1/events --exclude-path /v1/heartbeat \
  -H "Authorization: Bearer $TOKEN" \
  --report junit --report-dir "$OUT" >"$OUT/schemathesis.txt" 2>&1
rc=$?
set -e
tail -25 "$OUT/schemathesis.txt"
kill -0 "$WORKER_PID" 2>/dev/null || { echo "fuzz: the worker died (log: $OUT/worker.log)" >&2; exit 1; }
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$WORKER_PID/status")
if grep -q 'panicked' "$OUT/worker.log"; then echo "fuzz: the worker panicked (log: $OUT/worker.log)" >&2; exit 1; fi
say "worker RSS: $((rss_before / 1024)) MiB before, $((rss_after / 1024)) MiB after; no panic"
[ "$rc" = 0 ] || { echo "fuzz: schemathesis found problems (above; full output: $OUT/schemathesis.txt)" >&2; exit "$rc"; }
