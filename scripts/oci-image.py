#!/usr/bin/env python3
"""Writes a root filesystem as a one-layer OCI image archive that `ctr images import` reads.

No Docker, buildah or registry exists on Dialtone's machines, and no Debian package turns a directory
into an OCI image without a daemon; the format is a tar of JSON and blobs, so it is written here.
The layer is reproducible: sorted entries, owner root, mtime 0, so the same files give the same
digest.

usage: oci-image.py ROOTFS NAME OUT.tar --entrypoint JSON [--cmd JSON] [--user UID:GID]
                    [--port N ...] [--env K=V ...]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(rootfs: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in dirnames + sorted(filenames):
                path = os.path.join(dirpath, name)
                info = tar.gettarinfo(path, os.path.relpath(path, rootfs))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return raw.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rootfs")
    ap.add_argument("name")
    ap.add_argument("out")
    ap.add_argument("--entrypoint", required=True)
    ap.add_argument("--cmd")
    ap.add_argument("--user", default="")
    ap.add_argument("--port", action="append", default=[])
    ap.add_argument("--env", action="append", default=[])
    a = ap.parse_args()

    tar = layer(a.rootfs)
    compressed = gzip.compress(tar, mtime=0)
    config = {
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] + a.env,
        "Entrypoint": json.loads(a.entrypoint),
        "WorkingDir": "/",
    }
    if a.cmd:
        config["Cmd"] = json.loads(a.cmd)
    if a.user:
        config["User"] = a.user
    if a.port:
        config["ExposedPorts"] = {f"{p}/tcp": {} for p in a.port}
    image_config = json.dumps({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [digest(tar)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/images.sh"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(image_config), "size": len(image_config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(compressed), "size": len(compressed)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(manifest), "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": a.name,
                            "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1]},
        }],
    }, sort_keys=True).encode()

    def add(out: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))

    with tarfile.open(a.out, "w") as out:
        add(out, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for blob in (compressed, image_config, manifest):
            add(out, "blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)
        add(out, "index.json", index)
    print(f"{a.name}\t{len(compressed)}\t{digest(manifest)}")


if __name__ == "__main__":
    main()
