#!/usr/bin/env bash
# Installs what Lifeboat's build and test suite need on a Debian bookworm machine:
# the real services the tests start (etcd, Ceph with RGW, nfs-ganesha), the C libraries the
# build links (librados, librbd), protoc for gRPC code, and the anchors benchmarks compare
# against (restic, etcdctl, the rbd CLI). Idempotent; silent when everything is present.
set -euo pipefail

packages=(
  # build
  pkg-config protobuf-compiler librados-dev librbd-dev
  # etcd
  etcd-server etcd-client
  # Ceph: monitor, manager, OSD, CLI, S3 gateway, FUSE mapper for node tests
  ceph-mon ceph-mgr ceph-osd ceph-common radosgw rbd-fuse
  # NFS server and a userspace client
  nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils
  # tools the tests and benchmarks call (acl: setfacl for the ACL restore tests; b3sum and jq:
  # the docs/FORMAT.md recovery recipe and tests/recovery/recover.py)
  openssl age zstd restic util-linux procps time acl b3sum jq
  # CSI node tests: filesystems made and grown on RBD images
  e2fsprogs xfsprogs
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Azure Blob emulator (Microsoft's Azurite, from npm) and the Python SDK the harness uses to
# create containers in it.
if ! command -v azurite-blob >/dev/null 2>&1; then
  echo "install-deps: installing azurite" >&2
  npm install -g --silent azurite@3.37.0 >/dev/null
fi
if ! python3 -c "import azure.storage.blob" >/dev/null 2>&1; then
  echo "install-deps: installing azure-storage-blob" >&2
  python3 -m pip install -q azure-storage-blob==12.26.0 >/dev/null
fi
