#!/usr/bin/env python3
"""Writes the seed inputs of each fuzz target into fuzz/seeds/TARGET/ (committed): small,
valid examples of each format as docs/FORMAT.md and the CSI/Kubernetes docs describe them,
so libFuzzer starts from the real shapes. Needs the stock `zstd` and `age` tools.

    fuzz/make_seeds.py
"""

import base64
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
H = "0123456789abcdef" * 2  # 32 hex digits
BLOB = "ab" * 32


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def zstd(data, *args):
    return subprocess.run(["zstd", "-q", "-c", *args], input=data, capture_output=True, check=True).stdout


def raw_frame(data):
    """A zstd frame of raw blocks, as the pack writer stores incompressible data."""
    out = struct.pack("<I", 0xFD2FB528) + bytes([0xA0]) + struct.pack("<I", len(data))
    blocks = [data[i:i + 131072] for i in range(0, len(data), 131072)] or [b""]
    for i, b in enumerate(blocks):
        h = (len(b) << 3) | (1 if i == len(blocks) - 1 else 0)
        out += struct.pack("<I", h)[:3] + b
    return out


def node(path, kind, **extra):
    n = {"path": path, "type": kind, "mode": 493 if kind == "dir" else 420, "uid": 0, "gid": 0,
         "mtime_ns": 1764101296441720911, "ctime_ns": 1764101296441720911, "inode": 131073,
         "size": 0}
    n.update(extra)
    return json.dumps(n, separators=(",", ":"))


def main():
    # pack: frames then the trailer (skippable frame 0x184D2A5B listing the blobs).
    blobs = [b"hello lifeboat\n" * 40, os.urandom(300), b"x"]
    frames = [zstd(blobs[0]), raw_frame(blobs[1]), zstd(blobs[2], "--no-check")]
    listed, plain, offset = [], b"", 0
    for i, (blob, frame) in enumerate(zip(blobs, frames)):
        listed.append({"id": f"{i:02x}" * 32, "offset": offset, "length": len(frame), "raw_length": len(blob)})
        plain += frame
        offset += len(frame)
    trailer = json.dumps({"kind": "data", "blobs": listed}).encode()
    write("pack", "three-blobs", plain + struct.pack("<II", 0x184D2A5B, len(trailer)) + trailer)
    tree_trailer = json.dumps({"kind": "tree", "blobs": listed[:1]}).encode()
    write("pack", "tree", frames[0] + struct.pack("<II", 0x184D2A5B, len(tree_trailer)) + tree_trailer)

    # blob_frame: claimed length (4 bytes LE), then a frame.
    for i, (blob, frame) in enumerate(zip(blobs, frames)):
        write("blob_frame", f"frame-{i}", struct.pack("<I", len(blob)) + frame)

    # index_file
    write("index_file", "two-packs", json.dumps({"packs": [
        {"id": "11" * 32, "kind": "data", "size": 16781234, "blobs": listed},
        {"id": "22" * 32, "kind": "tree", "size": 900, "blobs": [
            {"id": BLOB, "offset": 0, "length": 60, "raw_length": 600}]}]}))

    # tree: sorted JSON lines; a dir, a non-UTF-8 name, a symlink, a hard-linked pair, a volume.
    raw = base64.b64encode(b"data/caf\xe9").decode()
    lines = [
        node("data", "dir"),
        json.dumps({"path_raw": raw, "type": "file", "mode": 420, "uid": 0, "gid": 0, "mtime_ns": 1,
                    "ctime_ns": 1, "inode": 7, "size": 0}, separators=(",", ":")),
        node("data/a", "file", inode=9, dev=2049, nlink=2, size=3, chunks=[BLOB]),
        node("data/b", "file", inode=9, dev=2049, nlink=2, size=3, chunks=[BLOB]),
        node("data/link", "symlink", mode=511, target="../etc/passwd"),
        node("data/sub", "dir", mode=1023),
        node("data/sub/x", "file", mode=2541, uid=1000, gid=50, size=6, chunks=[BLOB, BLOB],
             xattrs=[{"name": "user.origin", "value": "bWFpbA=="}]),
    ]
    write("tree", "files", "\n".join(lines) + "\n")
    write("tree", "volume", node("volume.img", "volume", mode=384, size=2147483648,
                                 chunks=[BLOB, BLOB, BLOB],
                                 extents=[{"offset": 0, "length": 65536, "chunks": 1},
                                          {"offset": 8388608, "length": 1048576, "chunks": 2}]) + "\n")
    write("tree", "damaged", "\n".join([node("x", "symlink", mode=511, target="/etc"), node("x", "file", mode=2559),
                                        node("x/y", "file"), node("../z", "file")]) + "\n")

    # snapshot_file: line i is named (i as a byte) * 32.
    summary = {"files": 2, "dirs": 1, "bytes": 6, "files_read": 2, "new_bytes": 6, "stored_bytes": 6,
               "new_blobs": 1, "duration_ms": 8, "warnings": [], "skipped": []}
    files = {"time": "2026-11-25T20:08:16.441720911Z", "hostname": "node-1", "kind": "files",
             "source": "files:/data", "paths": ["/data"], "tags": {"env": "prod"}, "parent": None,
             "tree": [BLOB], "meta": {}, "summary": summary}
    full = dict(files, kind="etcd", source="etcd:c1", paths=["https://127.0.0.1:2379"],
                meta={"cluster_id": "c1", "member_id": "m1", "endpoint": "https://127.0.0.1:2379",
                      "revision": "100", "type": "full"})
    delta = dict(full, parent="01" * 32, meta=dict(full["meta"], type="delta", base="01" * 32,
                                                  first_revision="101", last_revision="150"))
    delta2 = dict(delta, parent="02" * 32, meta=dict(delta["meta"], first_revision="151", last_revision="180"))
    write("snapshot_file", "files-and-etcd-chain",
          "\n".join(json.dumps(s) for s in [files, full, delta, delta2]) + "\n")

    # etcd_delta
    ev = lambda rev, put, k, v: json.dumps({"rev": rev, "put": put, "key": base64.b64encode(k).decode(),
                                            "value": base64.b64encode(v).decode()})
    # etcd_delta/compacted.db (kept, not written here) is `etcdctl snapshot save` of an etcd
    # 3.4 after `put /a`, `put /b`, `del /a` and `compact 4 --physical`: revision 4, which
    # lives only in bucket `meta` once compaction removed the tombstone.
    write("etcd_delta", "events", "\n".join([ev(101, True, b"/registry/a", b"1"), ev(102, False, b"/registry/b", b"")]) + "\n")

    # csi_ids
    for name, text in {
        "rbd-volume": f"rbd:ceph-a:replicapool:csi-vol-{H}",
        "nfs-volume": f"nfs:10.0.0.1:/srv/export:base/vol-{H}:retain",
        "rbd-snapshot": f"rbd:ceph-a:replicapool:csi-vol-{H}:csi-snap-{H}",
        "nfs-snapshot": f"nfs:nfs.local:/:vol-{H}:delete:snap-{H}",
        "group": f"rbd-group:ceph-a:replicapool:csi-group-{H}",
        "params": "clusterID=ceph-a\npool=replicapool\nimageFeatures=layering,exclusive-lock\n"
                  "server=10.0.0.1\nshare=/srv\nonDelete=archive\nqosReadIopsLimit=100\n",
        "token": base64.b16encode(f"rbd:ceph-a:replicapool:csi-vol-{H}".encode()).decode().lower(),
    }.items():
        write("csi_ids", name, text)

    # objects_restore
    write("objects_restore", "shop", json.dumps({
        "spec": {"backupName": "nightly", "includedNamespaces": ["shop*"], "excludedResources": ["events"],
                 "namespaceMapping": {"shop": "shop-dr"}, "storageClassMapping": {"fast": "standard"},
                 "labels": {"restored": "yes"}, "restoreStatus": True, "existingResourcePolicy": "update"},
        "resources": {
            "configmaps": {"group": "", "version": "v1", "kind": "ConfigMap", "plural": "configmaps", "namespaced": True},
            "persistentvolumeclaims": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim",
                                       "plural": "persistentvolumeclaims", "namespaced": True, "status_subresource": True},
            "rolebindings.rbac.authorization.k8s.io": {"group": "rbac.authorization.k8s.io", "version": "v1",
                                                       "kind": "RoleBinding", "plural": "rolebindings", "namespaced": True},
            "namespaces": {"group": "", "version": "v1", "kind": "Namespace", "plural": "namespaces", "namespaced": False}},
        "paths": ["lifeboat/resources.json", "resources/configmaps/namespaces/shop/a.json",
                  "resources/persistentvolumeclaims/namespaces/shop/data.json",
                  "resources/namespaces/cluster/shop.json", "resources/persistentvolumes/cluster/pv-1.json"],
        "claims": [{"metadata": {"name": "data", "namespace": "shop"},
                    "spec": {"volumeName": "pv-1", "storageClassName": "fast"}}],
        "volumes": [{"metadata": {"name": "pv-1"}, "spec": {"storageClassName": "fast",
                     "claimRef": {"namespace": "shop", "name": "data", "uid": "u"}}}],
        "objects": [{"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "a", "namespace": "shop", "uid": "x", "resourceVersion": "7",
                                  "ownerReferences": [], "labels": {"kubernetes.io/metadata.name": "shop"}},
                     "data": {"k": "v"}, "status": {"phase": "Bound"},
                     "subjects": [{"kind": "ServiceAccount", "name": "s", "namespace": "shop"}]}]}))

    # discovery
    write("discovery", "groups", json.dumps({
        "groups": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
            {"name": "example.com", "versions": [{"groupVersion": "example.com/v1beta1", "version": "v1beta1"},
                                                 {"groupVersion": "example.com/v1alpha1", "version": "v1alpha1"}],
             "preferredVersion": {"groupVersion": "example.com/v1beta1", "version": "v1beta1"}},
            {"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}]}]},
        "crds": [{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                  "metadata": {"name": "widgets.example.com"},
                  "spec": {"group": "example.com", "scope": "Namespaced",
                           "names": {"plural": "widgets", "kind": "Widget"},
                           "versions": [{"name": "v1alpha1", "served": True, "storage": True},
                                        {"name": "v1beta1", "served": True, "storage": False}]}}],
        "apiservices": [{"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                         "metadata": {"name": "v1beta1.metrics.k8s.io"},
                         "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                                  "versionPriority": 100, "service": {"namespace": "kube-system", "name": "metrics-server"}},
                         "status": {"conditions": [{"type": "Available", "status": "False",
                                                    "reason": "MissingEndpoints"}]}}],
        "resources": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": True, "kind": "Deployment",
             "verbs": ["create", "list", "get"]},
            {"name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment",
             "verbs": ["get", "patch"]}]}}))

    # specs: first line the short text, then a document.
    plan = open(os.path.join(HERE, "..", "docs", "examples", "failover-plan.yaml")).read() \
        if os.path.exists(os.path.join(HERE, "..", "docs", "examples", "failover-plan.yaml")) else \
        "apiVersion: lifeboat.dev/v1alpha1\nkind: FailoverPlan\nmetadata:\n  name: shop\nspec:\n" \
        "  applications:\n    - name: shop\n      namespaces: [shop]\n  primary: c1\n  standbys: [c2]\n" \
        "  repositories:\n    - url: /srv/repo\n  rpoSeconds: 300\n  rtoSeconds: 60\n"
    for name, short in {"cron": "Europe/Paris|0 3 * * 1-5", "ttl": "72h30m", "rate": "50MiB/s",
                        "selector": "app=web,tier!=db", "url": "s3://bucket/prefix",
                        "globs": "shop-*,kube-*"}.items():
        write("specs", name, short + "\n" + plan)
    write("specs", "backup-spec", "1h\nincludedNamespaces: [shop]\nttl: 720h\nvolumes:\n  enabled: true\n")

    # key_file: mode byte, then an age file (0) or identity-file text (1).
    ident = subprocess.run(["age-keygen"], capture_output=True, check=True).stdout
    write("key_file", "identity-text", b"\x01" + ident)
    recipient = [l for l in ident.decode().splitlines() if l.startswith("# public key: ")][0][14:]
    wrapped = subprocess.run(["age", "-r", recipient], input=ident, capture_output=True, check=True).stdout
    write("key_file", "age-file", b"\x00" + wrapped)
    armored = subprocess.run(["age", "-a", "-r", recipient], input=b"x", capture_output=True, check=True).stdout
    write("key_file", "age-armored", b"\x00" + armored)


if __name__ == "__main__":
    sys.exit(main())
