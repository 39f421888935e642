# The real node: containerd + runc + CNI bridge (from apt), kubelet + kube-proxy (built with the
# control plane), sourced by scripts/cluster.sh. Everything it writes lives in the cluster dir,
# except what Linux keeps per host: the bridge, the iptables rules, the route for the service range,
# the kubepods cgroups, a few sysctls, and three paths kubelet 1.20 and containerd 1.6 hard-code.
# Those are recorded in $NODE_STATE, so that `up` can undo a run that was killed (CI kills the
# session's processes and then clones the repository elsewhere: the cluster dir may not be ours).
#
# One real node per machine: the bridge, the pod range and kubelet's device-plugin socket
# (/var/lib/kubelet/device-plugins) can't be shared.

NODE_NAME=dialtone-node
BRIDGE=dialtone0
POD_CIDR=10.244.0.0/24
GATEWAY=10.244.0.1 # the bridge's address: node IP, apiserver advertise address, host services for pods
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1 # the `kubernetes` Service
# Every address a pod of either node may have (the simulated node hands out 10.244.x.y): routed to
# the bridge (real node) or nowhere (simulated node), never out of the machine.
POD_GUARD=10.244.0.0/16
KUBELET_PORT=20250
KUBELET_HEALTHZ_PORT=20248
RULE=dialtone-node # comment on every iptables rule we add
NODE_STATE=/run/dialtone-node
SOCK="$DIR/run/containerd.sock"
CTR=(ctr --address "$SOCK" -n k8s.io)
# Host sysctls changed by kubelet (vm.*, kernel.*), the bridge plugin (ip_forward) and kube-proxy
# (route_localnet): saved on the way up, restored on the way down.
SYSCTLS="net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes"
HOST_DIRS="/var/log/pods /var/log/containers /run/containerd /var/lib/kubelet /var/lib/cni"

# What the real node needs from the machine; says what is missing and how to do without it.
node_preflight() {
  local missing=()
  [ "$(id -u)" = 0 ] || missing+=("root (kubelet, containerd and the bridge need it)")
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || missing+=("the overlay filesystem")
  [ -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || missing+=("cgroups (memory controller)")
  local c
  for c in containerd runc ctr iptables ip; do command -v "$c" >/dev/null || missing+=("$c"); done
  [ -x /usr/lib/cni/bridge ] || missing+=("CNI plugins (/usr/lib/cni/bridge)")
  for c in kubelet kube-proxy kube-scheduler; do [ -x "$BIN/$c" ] || missing+=("$BIN/$c"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "the real node can't run here; missing:"
  printf '[cluster]   - %s\n' "${missing[@]}" >&2
  die "install what is missing (scripts/build-control-plane.sh does, as root), or use the simulated node: DIALTONE_NODE=sim $0 up"
}

# Undoes a real node that this cluster dir doesn't own or whose processes died (a killed run).
node_clean_stale() {
  local owner="$DIR"
  if [ -f "$NODE_STATE/dir" ]; then
    owner=$(cat "$NODE_STATE/dir")
    if pid_alive_in "$owner" containerd || pid_alive_in "$owner" kubelet; then
      [ "$owner" = "$DIR" ] && return 0
      die "the real node of $owner is running (one fits on a machine): stop it with DIALTONE_CLUSTER_DIR=$owner $0 down"
    fi
  elif host_is_clean; then
    return 0
  fi
  log "cleaning up a real node left behind by a run that was killed (cluster dir $owner)"
  node_teardown "$owner"
}

# Stops this dir's real node. A node another dir left behind when it was killed is undone too
# (its record would go with this one's); one that still runs is left alone.
node_down() {
  local owner
  owner=$(cat "$NODE_STATE/dir" 2>/dev/null || echo "$DIR")
  if [ "$owner" != "$DIR" ]; then
    if pid_alive_in "$owner" containerd || pid_alive_in "$owner" kubelet; then
      log "the real node belongs to $owner, which still runs: left alone"
      return 0
    fi
    log "cleaning up a real node left behind by a run that was killed (cluster dir $owner)"
    node_teardown "$owner"
  fi
  node_teardown "$DIR"
}

# True when no bridge, rule or chain of a real node is on the host.
host_is_clean() {
  ! ip link show "$BRIDGE" >/dev/null 2>&1 && ! iptables-save 2>/dev/null | grep -q "$RULE\|KUBE-\|CNI-"
}

node_alive() { pid_alive containerd && pid_alive kubelet && pid_alive kube-proxy; }

# Starts containerd (with the pause image), the kubelet and kube-proxy. The network is up already.
node_up() {
  node_alive && return 0
  mkdir -p "$DIR"/{containerd,cni/net.d,cni/ipam,kubelet}
  render cni.conflist.in >"$DIR/cni/net.d/10-dialtone.conflist"
  render containerd.toml.in >"$DIR/containerd.toml"
  start containerd containerd --config "$DIR/containerd.toml"
  wait_for 30 containerd "${CTR[@]}" version || fail_with containerd "containerd did not start"
  # The pause image, and Dialtone's own when scripts/images.sh has built them.
  node_import "$(bash "$REPO/scripts/images.sh" pause)" "${CARGO_TARGET_DIR:-$REPO/target}"/images/*.tar
  render kubelet.yaml.in >"$DIR/kubelet.yaml"
  start kubelet "$BIN/kubelet" --config "$DIR/kubelet.yaml" --kubeconfig "$DIR/kubelet.kubeconfig" \
    --root-dir "$DIR/kubelet" --cert-dir "$DIR/kubelet/pki" --hostname-override "$NODE_NAME" \
    --node-ip "$GATEWAY" --container-runtime remote --container-runtime-endpoint "unix://$SOCK" \
    --image-service-endpoint "unix://$SOCK" --runtime-request-timeout 2m \
    --pod-infra-container-image localhost/pause:3.4 --oom-score-adj 0 --v 1
  start kube-proxy "$BIN/kube-proxy" --kubeconfig "$DIR/kube-proxy.kubeconfig" \
    --hostname-override "$NODE_NAME" --proxy-mode iptables --cluster-cidr "$POD_CIDR" \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    --metrics-bind-address 127.0.0.1:20249 --healthz-bind-address 127.0.0.1:20256 --oom-score-adj 0 --v 1
}

# Records, before anything on the host changes, who owns the node and what to restore.
node_claim() {
  mkdir -p "$NODE_STATE"
  echo "$DIR" >"$NODE_STATE/dir"
  local s d
  if [ ! -f "$NODE_STATE/sysctl.orig" ]; then
    for s in $SYSCTLS; do echo "$s=$(sysctl -n "$s")"; done >"$NODE_STATE/sysctl.orig"
  fi
  for d in $HOST_DIRS; do [ -e "$d" ] || echo "$d"; done >>"$NODE_STATE/created"
}

# The bridge (made before the apiserver, which advertises its address), and the rules that keep
# every packet of the pod and service ranges on this machine.
node_network_up() {
  node_claim
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  # The bridge plugin turns ip_forward on: this rule is what stops a pod's packet for any address
  # that is not another pod from being forwarded out of eth0.
  rule FORWARD -s "$POD_CIDR" ! -o "$BRIDGE" -j DROP
  # Only this machine and its pods may reach the apiserver (it listens on every address so pods can).
  rule INPUT -p tcp --dport "$API_PORT" ! -s "$POD_CIDR" -m addrtype ! --src-type LOCAL -j DROP
  # The service range is virtual: kube-proxy DNATs the ClusterIPs it knows. Any other (or one not
  # yet programmed) would follow the default route off the machine. A blackhole route would break
  # the host's own ClusterIP connections (routing happens before the OUTPUT DNAT), so route the
  # range onto the bridge, where nothing answers.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE"
  ip route replace "$POD_GUARD" dev "$BRIDGE"
  # Bridged pod-to-pod traffic must pass iptables for ClusterIP DNAT.
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
}

rule() { # CHAIN MATCH... : insert once, first in the chain, with our comment
  local chain=$1; shift
  iptables -C "$chain" "$@" -m comment --comment "$RULE" 2>/dev/null \
    || iptables -I "$chain" 1 "$@" -m comment --comment "$RULE"
}

render() {
  sed -e "s#@DIR@#$DIR#g" -e "s#@SOCK@#$SOCK#g" -e "s#@BRIDGE@#$BRIDGE#g" -e "s#@POD_CIDR@#$POD_CIDR#g" \
    -e "s#@GATEWAY@#$GATEWAY#g" -e "s#@KUBELET_PORT@#$KUBELET_PORT#g" \
    -e "s#@KUBELET_HEALTHZ_PORT@#$KUBELET_HEALTHZ_PORT#g" "$REPO/scripts/real-node/$1"
}

# node_import ARCHIVE...: OCI archives into the node's containerd (what the kubelet runs).
node_import() {
  local a
  for a in "$@"; do
    [ -f "$a" ] || continue
    "${CTR[@]}" images import --no-unpack=false "$a" >/dev/null || die "importing $a failed"
  done
}

# The Telnyx mock of the local cluster: Prism serving Telnyx's OpenAPI spec on the bridge, where
# worker pods reach it (http://10.244.0.1:4010/v2) and so does the host.
TELNYX_PORT=4010
telnyx_mock_up() {
  local spec="${DIALTONE_TELNYX_SPEC:-$REPO/telephony-pod/tests/telnyx/telnyx.openapi.yml}"
  local prism="$CACHE/prism-5.16.0/node_modules/.bin/prism"
  [ -f "$spec" ] || die "the Telnyx spec for the mock is missing: $spec (set DIALTONE_TELNYX_SPEC)"
  [ -x "$prism" ] || die "Prism missing at $prism: run scripts/build-control-plane.sh"
  start telnyx-mock "$prism" mock -h "$GATEWAY" -p "$TELNYX_PORT" "$spec"
  wait_for 60 "Telnyx mock" curl -fsS -H 'Authorization: Bearer local' \
    "http://$GATEWAY:$TELNYX_PORT/v2/telephony_credentials?page%5Bsize%5D=1" || fail_with telnyx-mock "Prism did not start"
}

node_wait_ready() {
  local kubectl="$BIN/kubectl --kubeconfig $KUBECONFIG_FILE"
  wait_for 90 "node $NODE_NAME Ready" $kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s \
    || fail_with kubelet "node $NODE_NAME not Ready"
  wait_for 30 "kube-proxy's rules" sh -c "iptables -S FORWARD | grep -q KUBE-FORWARD" \
    || fail_with kube-proxy "kube-proxy wrote no rules"
  # kube-proxy prepends its FORWARD jump (it accepts established pod flows): ours goes first again,
  # so no pod packet for an outside address is ever forwarded. kube-proxy only checks that its
  # jump exists, not where.
  iptables -D FORWARD -s "$POD_CIDR" ! -o "$BRIDGE" -j DROP -m comment --comment "$RULE"
  rule FORWARD -s "$POD_CIDR" ! -o "$BRIDGE" -j DROP
}

# node_teardown DIR: stops the real node of cluster dir DIR and undoes every host change. Pods are
# deleted through the API first when it still answers, so the kubelet releases their IPs (CNI DEL).
node_teardown() {
  local dir=$1 sock="$1/run/containerd.sock" kubectl="$BIN/kubectl --kubeconfig $1/kubeconfig"
  local ctr=(ctr --address "$sock" -n k8s.io)
  if pid_alive_in "$dir" kubelet && $kubectl get --raw /readyz >/dev/null 2>&1; then
    $kubectl delete pods --all-namespaces --all --grace-period=1 --wait=false >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 40); do [ -z "$("${ctr[@]}" tasks ls -q 2>/dev/null)" ] && break; sleep 0.25; done
  fi
  stop_in "$dir" kubelet; stop_in "$dir" kube-proxy; stop_in "$dir" telnyx-mock
  if pid_alive_in "$dir" containerd; then
    local t
    for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  fi
  stop_in "$dir" containerd
  # Shims outlive containerd by design; ours name our socket. Then any container process left.
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null || true
  kill_cgroup_processes
  umount_under "$dir"
  rm -rf "$dir/cni/ipam" "$dir/containerd" "$dir/kubelet"
  iptables_clean
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
  ip route del "$POD_GUARD" 2>/dev/null || true
  local port
  for port in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 || true); do
    ip link del "$port" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  remove_cgroups
  restore_host
}

kill_cgroup_processes() {
  local f
  for f in $(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods -name cgroup.procs 2>/dev/null); do
    xargs -r kill -KILL <"$f" 2>/dev/null || true
  done
}

umount_under() {
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r)
}

# kube-proxy's and the CNI plugins' chains, and our own rules (by comment).
iptables_clean() {
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  local table chain r
  for table in filter nat mangle; do
    while read -r r; do
      eval "iptables -t $table ${r/#-A /-D }" 2>/dev/null || true
    done < <(iptables -t "$table" -S 2>/dev/null | grep -E -- "-j (KUBE-|CNI-)|--comment \"?$RULE" || true)
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ {print $2}'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}

restore_host() {
  [ -d "$NODE_STATE" ] || return 0
  local kv d
  if [ -f "$NODE_STATE/sysctl.orig" ]; then
    while IFS= read -r kv; do sysctl -qw "$kv" 2>/dev/null || true; done <"$NODE_STATE/sysctl.orig"
  fi
  if [ -f "$NODE_STATE/created" ]; then
    while IFS= read -r d; do [ -n "$d" ] && rm -rf "$d"; done <"$NODE_STATE/created"
  fi
  rm -rf "$NODE_STATE"
}
