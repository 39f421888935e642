#!/usr/bin/env bash
# The app side, end to end: the chart and a TelephonyService with real worker pods on the local
# cluster, the Next.js example app (next build, next start) in front of them, and headless
# Chromium (Debian's, driven by playwright-core) clicking through it while the workers are killed.
#
# Needs the local cluster with its real node and the images (scripts/test.sh brings both; by hand:
# scripts/cluster.sh up && scripts/images.sh). Leaves nothing behind: the release, the namespaces
# and the app server go at exit. The screenshot of the health monitor during the outage is saved
# in $DIALTONE_WEB_E2E_OUT (default target/web-e2e/).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
eval "$(scripts/cluster.sh env)"
DIR="${DIALTONE_CLUSTER_DIR:-$REPO/.cluster}"
OUT="${DIALTONE_WEB_E2E_OUT:-$REPO/target/web-e2e}"
PORT="${DIALTONE_WEB_PORT:-23000}"
RELEASE=web-e2e SYSTEM=dialtone-web-e2e NS=web-e2e-shop
mkdir -p "$OUT"
say() { printf '[web-e2e] %s\n' "$*"; }

APP_PID=""
cleanup() {
  local rc=$?
  set +e # every step runs; the script's status stays the tests'
  # next start runs in its own process group (npx, next, next-server): stop all of it.
  if [ -n "$APP_PID" ]; then
    kill -- "-$APP_PID" 2>/dev/null
    wait "$APP_PID" 2>/dev/null
  fi
  kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  helm uninstall "$RELEASE" -n "$SYSTEM" --wait=legacy --timeout 60s >/dev/null 2>&1 || true
  kubectl delete namespace "$SYSTEM" --ignore-not-found --wait=false >/dev/null 2>&1
  exit "$rc"
}
trap cleanup EXIT

say "the packages and the example app built (next build, telemetry off)"
bash scripts/setup.sh >/dev/null # npm ci when needed
npm run --silent build >/dev/null
(cd examples/nextjs-app && NEXT_TELEMETRY_DISABLED=1 npx next build >"$OUT/next-build.log" 2>&1) \
  || { tail -30 "$OUT/next-build.log"; exit 1; }

say "helm install $RELEASE (watching $NS only), and the TelephonyService calls with 2 real workers"
for ns in "$NS" "$SYSTEM"; do
  if [ "$(kubectl get namespace "$ns" -o jsonpath='{.status.phase}' 2>/dev/null)" = Terminating ]; then
    kubectl wait --for=delete "namespace/$ns" --timeout=180s >/dev/null
  fi
done
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
helm upgrade --install "$RELEASE" charts/dialtone -n "$SYSTEM" --create-namespace --wait=legacy --timeout 180s \
  --set watchNamespace="$NS" >/dev/null
kubectl apply -n "$NS" -f examples/telnyx-secret.yaml >/dev/null
# The example, pointed at the local Telnyx mock, with 2 s probes and room in the budget for the
# test's four kills.
sed -e "s|connectionId: .*|connectionId: \"1234567890\"\n    baseUrl: http://10.244.0.1:4010/v2|" \
    -e "s|periodSeconds: 30 .*|periodSeconds: 2|" -e "s|maxRestarts: 3 .*|maxRestarts: 10|" \
    examples/telephonyservice.yaml | kubectl apply -n "$NS" -f - >/dev/null
kubectl wait tsvc/calls -n "$NS" --for=jsonpath='{.status.phase}'=Ready --timeout=120s >/dev/null \
  || { kubectl get tsvc calls -n "$NS" -o yaml; exit 1; }

# The app runs on the host: it reaches the Services by ClusterIP (kube-proxy handles the host's
# connections too); in a cluster it would use their DNS names.
READINESS="http://$(kubectl get svc "$RELEASE-dialtone-readiness" -n "$SYSTEM" -o jsonpath='{.spec.clusterIP}')"
WORKER="http://$(kubectl get svc calls-worker -n "$NS" -o jsonpath='{.spec.clusterIP}'):8080"
say "next start on 127.0.0.1:$PORT (readiness $READINESS, worker $WORKER)"
if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
  echo "web-e2e: port $PORT is taken (a leftover next start?); set DIALTONE_WEB_PORT" >&2
  exit 1
fi
(cd examples/nextjs-app && DIALTONE_READINESS_URL="$READINESS" DIALTONE_NAMESPACE="$NS" DIALTONE_SERVICE=calls \
  DIALTONE_WORKER_URL="$WORKER" NEXT_TELEMETRY_DISABLED=1 exec setsid npx next start -H 127.0.0.1 -p "$PORT") \
  >"$OUT/next-start.log" 2>&1 &
APP_PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.2; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/" || { tail -20 "$OUT/next-start.log"; exit 1; }

say "headless Chromium on the app (vitest + playwright-core)"
DIALTONE_APP_URL="http://127.0.0.1:$PORT" DIALTONE_READINESS_URL="$READINESS" DIALTONE_NAMESPACE="$NS" \
DIALTONE_CONTAINERD_SOCK="$DIR/run/containerd.sock" DIALTONE_WEB_E2E_OUT="$OUT" \
  npx vitest run --config examples/nextjs-app/e2e/vitest.config.ts --reporter=default \
  --reporter=json --outputFile.json="$OUT/vitest.json"
node scripts/vitest-count.mjs "$OUT/vitest.json" web-e2e
say "screenshot of the health monitor during the outage: $OUT/health-monitor-outage.png"
