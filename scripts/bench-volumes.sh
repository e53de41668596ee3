#!/usr/bin/env bash
# Volume benchmark: drctl volume backup/restore vs restic on the mounted ext4 and vs
# `rbd export-diff` / `rbd import`, on one 2 GiB RBD image of the harness's Ceph, in one run.
# Prints a side-by-side table. Needs root (rbd-fuse, loop, mount).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p drctl -p lifeboat-tests --bin drctl --bin bench-volumes
target_dir="${CARGO_TARGET_DIR:-target}"
DRCTL_BIN="$target_dir/release/drctl" "$target_dir/release/bench-volumes"
