#!/usr/bin/env bash
# Kubernetes objects benchmark: raw creates vs drctl backup/restore on the same API server in
# one run, at 10,000 objects (50 namespaces) and 100,000 objects (500 namespaces), printed
# side by side (the test server, or a real one via KUBEBUILDER_ASSETS or
# USE_EXISTING_CLUSTER=true + KUBECONFIG). BENCH_OBJECTS_SIZES=10000:50 runs one size.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p drctl -p lifeboat-tests --bin drctl --bin bench-objects
target_dir="${CARGO_TARGET_DIR:-target}"
DRCTL_BIN="$target_dir/release/drctl" "$target_dir/release/bench-objects" \
  --sizes "${BENCH_OBJECTS_SIZES:-10000:50,100000:500}"
