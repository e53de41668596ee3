#!/usr/bin/env bash
# Copy benchmark: `drctl repo copy` of a repository holding the 1 GiB benchmark set, Ceph RGW
# to Azurite and RGW to local disk, against each store's raw rate (plain parallel GET/PUT of
# the same objects, same parallelism) measured in the same run; then an incremental copy after
# a 1 % change, and a copy killed half way and resumed. Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p drctl -p lifeboat-tests --bin drctl --bin bench-copy
target_dir="${CARGO_TARGET_DIR:-target}"
DRCTL_BIN="$target_dir/release/drctl" "$target_dir/release/bench-copy"
