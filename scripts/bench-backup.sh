#!/usr/bin/env bash
# Backup benchmark: drctl vs restic (Debian package, repository format 2) on a 1 GiB dataset,
# to a local directory and to Ceph RGW, in one run. Prints a side-by-side table.
# BENCH_SKIP_RGW=1 skips the RGW half.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p drctl -p lifeboat-tests --bin drctl --bin bench-backup
target_dir="${CARGO_TARGET_DIR:-target}"
DRCTL_BIN="$target_dir/release/drctl" "$target_dir/release/bench-backup"
