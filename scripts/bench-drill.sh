#!/usr/bin/env bash
# Drill benchmark: 1,000 objects and a 2 GiB RBD volume drilled from one API test server into
# another over the harness's real Ceph; prints each step's cost, the drill's timeline, and
# RPO/RTO against issue 20's targets. Needs no root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p drctl -p lifeboat-tests --bin drctl --bin bench-drill
target_dir="${CARGO_TARGET_DIR:-target}"
DRCTL_BIN="$target_dir/release/drctl" "$target_dir/release/bench-drill"
