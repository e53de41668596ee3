#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is needed, check formatting and lints,
# then run every test against real services started on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# Reuse a warm target directory kept outside the clone when the machine has one.
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /var/cache/lifeboat-target ]; then
  export CARGO_TARGET_DIR=/var/cache/lifeboat-target
fi

echo "== cargo fmt --check (at ${SECONDS} s)"
cargo fmt --all --check
echo "== cargo clippy (at ${SECONDS} s)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo deny (licenses, bans, sources) (at ${SECONDS} s)"
cargo deny --locked check --hide-inclusion-graph licenses bans sources
# The RustSec database comes from GitHub, which CI cannot reach: check advisories only
# against a copy fetched earlier (`cargo deny fetch`), and say so when there is none.
if [ -d "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs" ]; then
  echo "== cargo deny (advisories, database as fetched earlier) (at ${SECONDS} s)"
  cargo deny --locked check --disable-fetch --hide-inclusion-graph advisories
else
  echo "SKIPPED cargo deny advisories: no RustSec database in ${CARGO_HOME:-$HOME/.cargo}/advisory-dbs (needs github.com: run \`cargo deny fetch\` where it is reachable)"
fi
echo "== cargo test: build every test target (at ${SECONDS} s)"
cargo test --workspace --locked --no-run
# Test targets run in two lanes at once, then a few alone (a sequential run spent most of its
# 36 minutes waiting: for a killed client's watch to lapse, a driver's retries, OSD I/O).
# - The Ceph lane: targets that mostly wait on Ceph. One at a time among themselves: the CSI
#   tests count the node's mounts, loop devices and rbd-fuse clients.
# - The main lane: every other target, unit tests and doc tests. It shares the harness's Ceph
#   (a pool and a bucket per test) with the Ceph lane, as separate processes always could.
# - Alone, after both: targets that pause or stop the OSDs, which would stall every other user.
# A target named here that no longer exists fails the run (`no test target named …`).
ceph_lane=(csi_faults csi_rbd csi_groups csi_node csi_spec csi_nfs secrets_trace volume_rbd
  kill_volume_backup group_point federation_volumes volumes_backup volumes_rados_namespace
  rbd_trash rbd_groups verify_image)
alone=(csi_osd_pause ceph_stale_watches rbd_timeouts)
main_lane=$(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
skip = set(sys.argv[1:])
names = {t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "test" in t["kind"]}
print(" ".join(sorted(names - skip)))' "${ceph_lane[@]}" "${alone[@]}")
as_tests() { for t in "$@"; do printf -- '--test\n%s\n' "$t"; done; }
mapfile -t ceph_args < <(as_tests "${ceph_lane[@]}")
mapfile -t alone_args < <(as_tests "${alone[@]}")
# shellcheck disable=SC2086 # target names are plain words
mapfile -t main_args < <(as_tests $main_lane)
echo "== cargo test: the Ceph lane (its lines start with [ceph]) beside the main lane (at ${SECONDS} s)"
(cargo test --workspace --locked --no-fail-fast "${ceph_args[@]}" 2>&1 | sed -u 's/^/[ceph] /') &
ceph_pid=$!
failed=()
cargo test --workspace --locked --no-fail-fast --lib --bins "${main_args[@]}" || failed+=("main lane")
cargo test --workspace --locked --no-fail-fast --doc || failed+=("doc tests")
echo "== cargo test: main lane done, waiting for the Ceph lane (at ${SECONDS} s)"
wait "$ceph_pid" || failed+=("Ceph lane (lines starting with [ceph])")
echo "== cargo test: targets that pause or stop the OSDs, alone (at ${SECONDS} s)"
cargo test --workspace --locked --no-fail-fast "${alone_args[@]}" || failed+=("${alone[*]}")
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 101
fi
# Every fuzz target for a few seconds (regressions replayed first); longer runs: docs/testing.md.
# Unoptimised (LIFEBOAT_FUZZ_PROFILE=dev): its build takes less than half the time, which is
# most of so short a run.
echo "== fuzzing (scripts/fuzz.sh, ${LIFEBOAT_FUZZ_SECONDS:-8} s per target) (at ${SECONDS} s)"
LIFEBOAT_FUZZ_PROFILE=${LIFEBOAT_FUZZ_PROFILE:-dev} scripts/fuzz.sh "${LIFEBOAT_FUZZ_SECONDS:-8}"
# Ignored tests (`#[ignore = "why"]`) run where what they need is given, and are otherwise
# counted as ignored by the test runner: `child_backup` is run by its parent test in
# backup_recovery; the GCS conformance test needs a real bucket.
# The multi-cluster partition tests cut links between network namespaces: root and iproute2.
if [ "$(id -u)" = 0 ] && ip netns list >/dev/null 2>&1; then
  echo "== network-namespace tests (federation_partition, federation_three) (at ${SECONDS} s)"
  cargo test -p drctl --test federation_partition --test federation_three --locked -- --ignored
else
  echo "ignored federation_partition, federation_three: they need root and \`ip netns\` (iproute2)"
fi
if [ -n "${LIFEBOAT_TEST_GCS_URL:-}" ]; then
  echo "== GCS conformance (LIFEBOAT_TEST_GCS_URL) (at ${SECONDS} s)"
  cargo test -p lifeboat-tests --test object_stores --locked -- --ignored --exact gcs_store_conforms
else
  echo "ignored gcs_store_conforms: set LIFEBOAT_TEST_GCS_URL=gs://bucket/prefix and GOOGLE_SERVICE_ACCOUNT to run it"
fi
echo "== done (at ${SECONDS} s)"
