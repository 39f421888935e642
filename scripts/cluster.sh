#!/usr/bin/env bash
# The local Kubernetes cluster Dialtone is tested and demonstrated on: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler (1.20.2, built from Debian's source package by
# scripts/build-control-plane.sh), and one node:
#   real (default)  kubelet + kube-proxy (same build), containerd + runc + CNI bridge (apt):
#                   pods really run (scripts/real-node/node.sh; needs root)
#   sim             the simulated node (sim-node/): writes pod status, runs nothing; for scale
#                   benchmarks with thousands of pods
#
#   scripts/cluster.sh up          start everything (builds on first use; idempotent); first undoes
#                                  a real node left behind by a run that was killed
#   scripts/cluster.sh down        stop what `up` started (by pid file) and undo its host changes
#   scripts/cluster.sh status      what runs, and whether the apiserver is ready
#   scripts/cluster.sh kubeconfig  print the admin kubeconfig's path
#   scripts/cluster.sh env         print `export KUBECONFIG=...; export PATH=...` for eval
#   scripts/cluster.sh spare up|down  a second apiserver on the same etcd (port +2) that tests
#                                  may stop and start; `up` prints its kubeconfig
#   scripts/cluster.sh restart-etcd   stop etcd and start it again on its data (chaos tests)
#
# Settings (override to run two checkouts side by side; only one real node fits on a machine):
#   DIALTONE_NODE (real|sim), DIALTONE_APISERVER_PORT (16443), DIALTONE_ETCD_PORT (12379, peer +1),
#   DIALTONE_CLUSTER_DIR (<repo>/.cluster), DIALTONE_CACHE (~/.cache/dialtone)
#   DIALTONE_SIM_NODE_ARGS extra flags for the simulated node (e.g. "--ready-ms 300")
#   DIALTONE_APISERVER_PROFILING=true  serve /debug/pprof on the apiserver (off: it costs nothing
#                                  when idle, but the endpoint is an admin's tool, not a default)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DIALTONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dialtone}"
BIN="$CACHE/bin"
DIR="${DIALTONE_CLUSTER_DIR:-$REPO/.cluster}"
API_PORT="${DIALTONE_APISERVER_PORT:-16443}"
ETCD_PORT="${DIALTONE_ETCD_PORT:-12379}"
ETCD_PEER_PORT=$((ETCD_PORT + 1))
KUBECONFIG_FILE="$DIR/kubeconfig"
PKI="$DIR/pki"
LOGS="$DIR/logs"
RUN="$DIR/run"
# The node this cluster dir runs: set by `up` (DIALTONE_NODE), read back by `down` and `status`.
NODE_MODE="${DIALTONE_NODE:-$(cat "$DIR/node" 2>/dev/null || echo real)}"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# fail_with NAME MESSAGE: the component's log tail, then the error.
fail_with() { tail -n 30 "$LOGS/$1.log" >&2 2>/dev/null || true; die "$2 (log: $LOGS/$1.log)"; }

# pid_alive_in DIR NAME: DIR's NAME runs. A killed process its parent hasn't reaped yet is a
# zombie, and dead: kill -0 alone would call it alive.
pid_alive_in() {
  [ -f "$1/run/$2.pid" ] || return 1
  local pid state
  pid=$(cat "$1/run/$2.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$pid/stat" 2>/dev/null)
  [ -n "$state" ] && [ "$state" != Z ]
}
pid_alive() { pid_alive_in "$DIR" "$1"; }

# start NAME CMD...: runs CMD in its own session, logs to $LOGS/NAME.log, pid in $RUN/NAME.pid.
start() {
  local name=$1; shift
  if pid_alive "$name"; then return 0; fi
  log "starting $name"
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
}

# stop_in DIR NAME: TERM the process group of DIR's NAME, KILL after 5 s.
stop_in() {
  local pidfile="$1/run/$2.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
stop() { stop_in "$DIR" "$1"; }

# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "[cluster] no $what after ${secs}s" >&2; return 1; }
    sleep 0.2
  done
}

# shellcheck source=real-node/node.sh
. "$REPO/scripts/real-node/node.sh"

# The CA, the apiserver's serving certificate (loopback, the bridge address pods reach it on, and
# the `kubernetes` Service's ClusterIP), its client certificate for kubelets, the service-account
# keys, and a token per user and component.
pki() {
  [ -f "$PKI/kubelet-client.crt" ] && return 0
  rm -rf "$PKI" && mkdir -p "$PKI"
  command -v openssl >/dev/null || die "openssl is required"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=dialtone-local-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    sign apiserver "/CN=kube-apiserver" serverAuth \
      "IP:127.0.0.1,IP:$GATEWAY,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    # How the apiserver authenticates to the kubelet (logs, exec, port-forward).
    sign kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    {
      echo "$(openssl rand -hex 24),admin,admin,system:masters"
      echo "$(openssl rand -hex 24),system:kube-controller-manager,kcm,system:masters"
      echo "$(openssl rand -hex 24),system:kube-scheduler,scheduler"
      echo "$(openssl rand -hex 24),system:kube-proxy,kube-proxy"
      echo "$(openssl rand -hex 24),system:node:$NODE_NAME,kubelet,system:nodes"
    } >tokens.csv.tmp
    mv tokens.csv.tmp tokens.csv
  )
}

sign() { # NAME SUBJECT EXTENDED-KEY-USAGE [SUBJECT-ALT-NAMES]
  local name=$1
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$2" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$3"
    [ -z "${4:-}" ] || echo "subjectAltName=$4"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr"
}

token_of() { awk -F, -v u="$1" '$2==u {print $1}' "$PKI/tokens.csv"; }

write_kubeconfig() { # FILE USER [PORT]
  local file=$1 user=$2 port=${3:-$API_PORT} ca
  ca=$(base64 -w0 <"$PKI/ca.crt")
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dialtone-local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $(token_of "$user")
contexts:
- name: dialtone-local
  context: {cluster: dialtone-local, user: $user, namespace: default}
current-context: dialtone-local
EOF
  chmod 600 "$file.tmp"; mv "$file.tmp" "$file"
}

# shellcheck disable=SC2120 # the spare's port is passed through wait_for
apiserver_ready() { # [PORT]
  curl -fsS --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(token_of admin)" \
    "https://127.0.0.1:${1:-$API_PORT}/readyz" >/dev/null
}

sim_node_bin() {
  if [ -n "${DIALTONE_SIM_NODE_BIN:-}" ]; then echo "$DIALTONE_SIM_NODE_BIN"; return; fi
  local target="${CARGO_TARGET_DIR:-$REPO/target}"
  (cd "$REPO" && cargo build --quiet -p sim-node) >&2
  echo "$target/debug/sim-node"
}

# start_apiserver NAME PORT: a kube-apiserver on etcd, with the shared PKI. With the real node the
# main one listens on every address (an INPUT rule admits only loopback and pods), advertises the
# bridge address, and keeps the `kubernetes` Service's endpoint (the spare never does: two
# apiservers on one address would fight over its port).
start_apiserver() {
  local name=$1 port=$2
  local where=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
  pid_alive "$name" && return 0
  if [ "$NODE_MODE" = real ] && [ "$name" = kube-apiserver ]; then
    where=(--bind-address 0.0.0.0 --advertise-address "$GATEWAY"
      --kubelet-client-certificate "$PKI/kubelet-client.crt" --kubelet-client-key "$PKI/kubelet-client.key"
      --kubelet-preferred-address-types InternalIP)
  fi
  start "$name" "$BIN/kube-apiserver" "${where[@]}" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" --secure-port "$port" --insecure-port 0 \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged=true --profiling="${DIALTONE_APISERVER_PROFILING:-false}" --max-requests-inflight 800 --max-mutating-requests-inflight 400
}

# start_etcd [keep]: etcd on fresh data, or with `keep` on the data it had (a restart).
start_etcd() {
  pid_alive etcd && return 0
  # etcd's data is scratch (each `up` starts an empty cluster): tmpfs makes its fsyncs free.
  local data="$DIR/etcd"
  [ -d /dev/shm ] && [ -w /dev/shm ] && data="/dev/shm/dialtone-etcd-$ETCD_PORT"
  [ "${1:-}" = keep ] || rm -rf "$data" # a run that was killed left its data: never resume it
  start etcd etcd --name dialtone --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "dialtone=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn
  wait_for 30 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health" || fail_with etcd "etcd did not start"
}

start_controllers() {
  local off='-nodeipam,-cloud-node-lifecycle,-route,-service,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-pv-protection,-pvc-protection,-csrsigning,-csrapproving,-csrcleaner,-bootstrapsigner,-tokencleaner'
  # The real kubelet registers tainted not-ready; the node lifecycle controller lifts the taint
  # once it is Ready. The simulated node keeps no lease for it to watch.
  [ "$NODE_MODE" = real ] || off="$off,-nodelifecycle"
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$DIR/kcm.kubeconfig" --leader-elect=false --port 0 --secure-port 0 \
    --controllers "*,$off" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=false --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 \
    --kube-api-qps 200 --kube-api-burst 400
  if [ "$NODE_MODE" = real ]; then # the simulated node binds its pods itself
    start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$DIR/scheduler.kubeconfig" \
      --leader-elect=false --port 0 --secure-port 0
  fi
}

start_sim_node() {
  pid_alive sim-node && return 0
  local sim; sim=$(sim_node_bin)
  # shellcheck disable=SC2086
  KUBECONFIG="$KUBECONFIG_FILE" RUST_LOG="${SIM_NODE_LOG:-info}" start sim-node "$sim" ${DIALTONE_SIM_NODE_ARGS:-}
  wait_for 60 "node sim-node Ready" "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" wait --for=condition=Ready \
    node/sim-node --timeout=2s || fail_with sim-node "simulated node not Ready"
}

cmd_up() {
  local t0=$SECONDS
  case "$NODE_MODE" in real | sim) ;; *) die "DIALTONE_NODE must be real or sim, not '$NODE_MODE'" ;; esac
  bash "$REPO/scripts/build-control-plane.sh" >/dev/null
  command -v etcd >/dev/null || die "etcd missing after build-control-plane.sh"
  if [ -f "$DIR/node" ] && [ "$(cat "$DIR/node")" != "$NODE_MODE" ] && pid_alive kube-apiserver; then
    die "this cluster runs the $(cat "$DIR/node") node: '$0 down' first"
  fi
  mkdir -p "$DIR" "$LOGS" "$RUN"
  echo "$NODE_MODE" >"$DIR/node"
  pki
  if [ "$NODE_MODE" = real ]; then
    node_preflight
    node_clean_stale
    node_network_up # before the apiserver, which advertises the bridge's address
  fi
  start_etcd
  start_apiserver kube-apiserver "$API_PORT"
  wait_for 120 apiserver apiserver_ready || fail_with kube-apiserver "kube-apiserver not ready"
  write_kubeconfig "$KUBECONFIG_FILE" admin
  write_kubeconfig "$DIR/kcm.kubeconfig" system:kube-controller-manager
  write_kubeconfig "$DIR/scheduler.kubeconfig" system:kube-scheduler
  write_kubeconfig "$DIR/kube-proxy.kubeconfig" system:kube-proxy
  write_kubeconfig "$DIR/kubelet.kubeconfig" "system:node:$NODE_NAME"
  start_controllers
  if [ "$NODE_MODE" = real ]; then
    node_up; telnyx_mock_up; node_wait_ready
  else
    # The simulated pods' IPs lead nowhere: a connection to one must fail here, not leave.
    if [ "$(id -u)" = 0 ]; then ip route replace blackhole "$POD_GUARD"; fi
    start_sim_node
  fi
  # Pods need the namespace's default ServiceAccount, made by the controller-manager.
  wait_for 60 serviceaccount "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" get serviceaccount default -n default \
    || fail_with kube-controller-manager "controller-manager not working"
  log "up in $((SECONDS - t0))s ($NODE_MODE node): apiserver https://127.0.0.1:$API_PORT, kubeconfig $KUBECONFIG_FILE"
}

# A second apiserver on the same etcd, for tests that stop and start "the apiserver" without
# disturbing everything else: `spare up` prints its kubeconfig, `spare down` stops it.
SPARE_PORT=$((API_PORT + 2))
cmd_spare() {
  case "${1:-}" in
    up)
      start_apiserver kube-apiserver-spare "$SPARE_PORT"
      wait_for 120 spare apiserver_ready "$SPARE_PORT" || fail_with kube-apiserver-spare "spare apiserver not ready"
      write_kubeconfig "$DIR/spare.kubeconfig" admin "$SPARE_PORT"
      echo "$DIR/spare.kubeconfig" ;;
    down) stop kube-apiserver-spare ;;
    *) die "usage: $0 spare up|down" ;;
  esac
}

cmd_down() {
  if [ "$NODE_MODE" = real ]; then node_down; fi
  if [ "$NODE_MODE" = sim ] && [ "$(id -u)" = 0 ]; then ip route del blackhole "$POD_GUARD" 2>/dev/null || true; fi
  for p in sim-node kube-scheduler kube-controller-manager kube-apiserver-spare kube-apiserver etcd; do stop "$p"; done
  rm -rf "/dev/shm/dialtone-etcd-$ETCD_PORT" "$DIR/etcd"
  log "down"
}

cmd_status() {
  local rc=0 p procs="etcd kube-apiserver kube-controller-manager sim-node"
  [ "$NODE_MODE" = real ] && procs="etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy telnyx-mock"
  echo "node: $NODE_MODE"
  for p in $procs; do
    if pid_alive "$p"; then echo "$p: running (pid $(cat "$RUN/$p.pid"))"; else echo "$p: stopped"; rc=1; fi
  done
  if [ -f "$PKI/tokens.csv" ] && apiserver_ready 2>/dev/null; then echo "apiserver: ready at https://127.0.0.1:$API_PORT"; else echo "apiserver: not ready"; rc=1; fi
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubeconfig) echo "$KUBECONFIG_FILE" ;;
  spare) cmd_spare "${2:-}" ;;
  restart-etcd) stop etcd; start_etcd keep; log "etcd restarted on its data" ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_FILE; export PATH=$BIN:\$PATH" ;;
  *) echo "usage: $0 up|down|status|kubeconfig|env|spare up|down|restart-etcd" >&2; exit 2 ;;
esac
