#!/usr/bin/env bash
# Container images without Docker: each image is one release binary, the libraries `ldd` names,
# CA certificates, /etc/passwd with the `nonroot` user and a /tmp, written as an OCI archive by
# scripts/oci-image.py. They keep the promises of operator/Dockerfile and telephony-pod/Dockerfile
# (distroless cc, user 65532, the same entrypoint and ports, no shell) and carry the names the
# chart's defaults and examples/ use, so `helm install` and `kubectl apply -f examples/` find them
# in the node's containerd without a registry.
#
#   scripts/images.sh          build the operator and worker images (cargo build --release), import
#                              them into the running real node, print their sizes
#   scripts/images.sh pause    the pod sandbox image (pause.c from the Kubernetes source, built by
#                              build-control-plane.sh); prints the archive's path
#
# Settings: DIALTONE_IMAGE_REGISTRY (ghcr.io/dialtone-dev), DIALTONE_CLUSTER_DIR (<repo>/.cluster)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DIALTONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dialtone}"
DIR="${DIALTONE_CLUSTER_DIR:-$REPO/.cluster}"
REGISTRY="${DIALTONE_IMAGE_REGISTRY:-ghcr.io/dialtone-dev}"
VERSION=$(awk -F'"' '/^appVersion:/ {print $2}' "$REPO/charts/dialtone/Chart.yaml")
OUT="${CARGO_TARGET_DIR:-$REPO/target}/images"
log() { printf '[images] %s\n' "$*" >&2; }

# rootfs DIR BINARY: the binary at /usr/local/bin and what distroless/cc-debian12:nonroot has.
rootfs() {
  local root=$1 bin=$2 lib
  install -D -m 0755 "$bin" "$root/usr/local/bin/$(basename "$bin")"
  # Every shared library the binary loads, at the same path (glibc, libgcc_s, the ELF loader).
  for lib in $(ldd "$bin" | grep -oE '/[^ ]+' | sort -u); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$root/etc/group"
  echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
  mkdir -p "$root/tmp" "$root/home/nonroot" && chmod 1777 "$root/tmp"
}

# image NAME BINARY PORT CMD-JSON: writes $OUT/NAME.tar.
image() {
  local name=$1 bin=$2 port=$3 cmd=$4 root
  root=$(mktemp -d)
  rootfs "$root" "$bin"
  local size; size=$(du -sk "$root" | cut -f1)
  python3 "$REPO/scripts/oci-image.py" "$root" "$REGISTRY/$name:$VERSION" "$OUT/$name.tar" \
    --entrypoint "[\"/usr/local/bin/$name\"]" ${cmd:+--cmd "$cmd"} --user 65532:65532 --port "$port" \
    | awk -v kb="$size" -F'\t' '{printf "%-52s %6.1f MiB compressed, %6.1f MiB unpacked\n", $1, $2/1048576, kb/1024}'
  rm -rf "$root"
}

pause_image() {
  local bin="$CACHE/bin/pause" out="$CACHE/images/pause.tar" root
  [ -x "$bin" ] || { log "error: $bin missing: run scripts/build-control-plane.sh"; exit 1; }
  if [ ! -f "$out" ] || [ "$bin" -nt "$out" ]; then
    mkdir -p "$CACHE/images"
    root=$(mktemp -d)
    install -D -m 0755 "$bin" "$root/pause"
    python3 "$REPO/scripts/oci-image.py" "$root" localhost/pause:3.4 "$out" \
      --entrypoint '["/pause"]' --user 65535:65535 >/dev/null
    rm -rf "$root"
  fi
  echo "$out"
}

if [ "${1:-}" = pause ]; then pause_image; exit 0; fi

log "cargo build --release (telephony-operator, telephony-pod)"
(cd "$REPO" && cargo build --release --locked --quiet -p telephony-operator -p telephony-pod)
target="${CARGO_TARGET_DIR:-$REPO/target}/release"
mkdir -p "$OUT"
image telephony-operator "$target/telephony-operator" 8081 '["run"]'
image telephony-pod "$target/telephony-pod" 8080 ''

sock="$DIR/run/containerd.sock"
if [ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1; then
  for a in "$OUT/telephony-operator.tar" "$OUT/telephony-pod.tar"; do
    ctr --address "$sock" -n k8s.io images import --no-unpack=false "$a" >/dev/null
  done
  log "imported into the real node ($sock)"
else
  log "no real node running for $DIR: archives in $OUT (scripts/cluster.sh up imports them)"
fi
