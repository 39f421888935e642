#!/usr/bin/env bash
# The local Kubernetes control plane Dialtone is tested and demonstrated on:
# etcd + kube-apiserver + kube-controller-manager (built from Debian's source package by
# scripts/build-control-plane.sh) and the simulated node (sim-node/), all on loopback.
#
#   scripts/cluster.sh up          start everything (builds on first use; idempotent)
#   scripts/cluster.sh down        stop what `up` started (by pid file, never by name)
#   scripts/cluster.sh status      what runs, and whether the apiserver is ready
#   scripts/cluster.sh kubeconfig  print the admin kubeconfig's path
#   scripts/cluster.sh env         print `export KUBECONFIG=...; export PATH=...` for eval
#   scripts/cluster.sh spare up|down  a second apiserver on the same etcd (port +2) that tests
#                                  may stop and start; `up` prints its kubeconfig
#
# Ports and places (override to run two checkouts side by side):
#   DIALTONE_APISERVER_PORT (16443), DIALTONE_ETCD_PORT (12379, peer +1),
#   DIALTONE_CLUSTER_DIR (<repo>/.cluster), DIALTONE_CACHE (~/.cache/dialtone)
#   DIALTONE_SIM_NODE_ARGS extra flags for the simulated node (e.g. "--ready-ms 300")
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

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pid_alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# start NAME CMD...: runs CMD in its own session, logs to $LOGS/NAME.log, pid in $RUN/NAME.pid.
start() {
  local name=$1; shift
  if pid_alive "$name"; then return 0; fi
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
}

stop() {
  local name=$1 pid
  [ -f "$RUN/$name.pid" ] || return 0
  pid=$(cat "$RUN/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "[cluster] no $what after ${secs}s" >&2; return 1; }
    sleep 0.2
  done
}

pki() {
  [ -f "$PKI/tokens.csv" ] && return 0
  mkdir -p "$PKI"
  command -v openssl >/dev/null || die "openssl is required"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=dialtone-local-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    cat >apiserver.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
EXT
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    admin=$(openssl rand -hex 24); kcm=$(openssl rand -hex 24)
    printf '%s,admin,admin,system:masters\n%s,system:kube-controller-manager,kcm,system:masters\n' \
      "$admin" "$kcm" >tokens.csv.tmp
    mv tokens.csv.tmp tokens.csv
  )
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

# start_apiserver NAME PORT: a kube-apiserver on etcd, with the shared PKI.
start_apiserver() {
  local name=$1 port=$2
  pid_alive "$name" && return 0
  start "$name" "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" --insecure-port 0 \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
    --allow-privileged=true --profiling=false --max-requests-inflight 800 --max-mutating-requests-inflight 400
}

cmd_up() {
  local t0=$SECONDS
  bash "$REPO/scripts/build-control-plane.sh" >/dev/null
  command -v etcd >/dev/null || die "etcd missing after build-control-plane.sh"
  mkdir -p "$DIR" "$LOGS" "$RUN"
  pki

  # etcd's data is scratch: tmpfs makes its fsyncs free.
  local etcd_data="$DIR/etcd"
  [ -d /dev/shm ] && [ -w /dev/shm ] && etcd_data="/dev/shm/dialtone-etcd-$ETCD_PORT"
  if ! pid_alive etcd; then
    start etcd etcd --name dialtone --data-dir "$etcd_data" \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster "dialtone=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn
    wait_for 30 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health" || { tail -n 20 "$LOGS/etcd.log" >&2; die "etcd did not start"; }
  fi

  start_apiserver kube-apiserver "$API_PORT"
  wait_for 120 apiserver apiserver_ready || { tail -n 30 "$LOGS/kube-apiserver.log" >&2; die "kube-apiserver not ready (log: $LOGS/kube-apiserver.log)"; }
  write_kubeconfig "$KUBECONFIG_FILE" admin
  write_kubeconfig "$DIR/kcm.kubeconfig" system:kube-controller-manager

  if ! pid_alive kube-controller-manager; then
    start kube-controller-manager "$BIN/kube-controller-manager" \
      --kubeconfig "$DIR/kcm.kubeconfig" --leader-elect=false --port 0 --secure-port 0 \
      --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-pv-protection,-pvc-protection,-csrsigning,-csrapproving,-csrcleaner,-bootstrapsigner,-tokencleaner' \
      --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
      --use-service-account-credentials=false --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 \
      --kube-api-qps 200 --kube-api-burst 400
  fi

  if ! pid_alive sim-node; then
    local sim; sim=$(sim_node_bin)
    # shellcheck disable=SC2086
    KUBECONFIG="$KUBECONFIG_FILE" RUST_LOG="${SIM_NODE_LOG:-info}" start sim-node "$sim" ${DIALTONE_SIM_NODE_ARGS:-}
  fi
  local kubectl="$BIN/kubectl --kubeconfig $KUBECONFIG_FILE"
  wait_for 60 node $kubectl wait --for=condition=Ready node/sim-node --timeout=2s \
    || { tail -n 20 "$LOGS/sim-node.log" >&2; die "simulated node not Ready"; }
  # Pods need the namespace's default ServiceAccount, made by the controller-manager.
  wait_for 60 serviceaccount $kubectl get serviceaccount default -n default \
    || { tail -n 20 "$LOGS/kube-controller-manager.log" >&2; die "controller-manager not working"; }
  log "up in $((SECONDS - t0))s: apiserver https://127.0.0.1:$API_PORT, kubeconfig $KUBECONFIG_FILE"
}

# A second apiserver on the same etcd, for tests that stop and start "the apiserver" without
# disturbing everything else: `spare up` prints its kubeconfig, `spare down` stops it.
SPARE_PORT=$((API_PORT + 2))
cmd_spare() {
  case "${1:-}" in
    up)
      start_apiserver kube-apiserver-spare "$SPARE_PORT"
      wait_for 120 spare apiserver_ready "$SPARE_PORT" || die "spare apiserver not ready ($LOGS/kube-apiserver-spare.log)"
      write_kubeconfig "$DIR/spare.kubeconfig" admin "$SPARE_PORT"
      echo "$DIR/spare.kubeconfig" ;;
    down) stop kube-apiserver-spare ;;
    *) die "usage: $0 spare up|down" ;;
  esac
}

cmd_down() {
  for p in sim-node kube-controller-manager kube-apiserver-spare kube-apiserver etcd; do stop "$p"; done
  rm -rf "/dev/shm/dialtone-etcd-$ETCD_PORT" "$DIR/etcd"
  log "down"
}

cmd_status() {
  local rc=0
  for p in etcd kube-apiserver kube-controller-manager sim-node; do
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
  env) echo "export KUBECONFIG=$KUBECONFIG_FILE; export PATH=$BIN:\$PATH" ;;
  *) echo "usage: $0 up|down|status|kubeconfig|env|spare up|down" >&2; exit 2 ;;
esac
