#!/usr/bin/env bash
# CSI provisioning benchmark: CreateVolume + DeleteVolume through lifeboat-csi's socket at 1 and
# 16 requests in flight, against `rbd create` / `rbd rm` on the same test Ceph in the same run.
# PROFILE=debug skips the release build (quicker, driver overhead slightly overstated).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
profile="${PROFILE:-release}"
flag=(); [ "$profile" = release ] && flag=(--release)
cargo build "${flag[@]}" -q -p lifeboat-tests --bin csi-driver --bin bench-csi
target_dir="${CARGO_TARGET_DIR:-target}"
"$target_dir/$profile/bench-csi"
