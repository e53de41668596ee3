#!/usr/bin/env bash
# etcd snapshot benchmark: etcdctl snapshot save vs drctl etcd snapshot (local and RGW) on the
# same 100 MB+ database in one run, then the cost of a second snapshot after a 1 % change.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p drctl -p lifeboat-tests --bin drctl --bin bench-etcd
target_dir="${CARGO_TARGET_DIR:-target}"
DRCTL_BIN="$target_dir/release/drctl" "$target_dir/release/bench-etcd"
