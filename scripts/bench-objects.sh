#!/usr/bin/env bash
# Kubernetes objects benchmark: raw creates vs drctl backup/restore of 10,000 objects on the
# same API server in one run (the test server, or a real one via KUBEBUILDER_ASSETS or
# USE_EXISTING_CLUSTER=true + KUBECONFIG).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p drctl -p lifeboat-tests --bin drctl --bin bench-objects
target_dir="${CARGO_TARGET_DIR:-target}"
DRCTL_BIN="$target_dir/release/drctl" "$target_dir/release/bench-objects"
