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
echo "== cargo test (at ${SECONDS} s)"
cargo test --workspace --locked --no-fail-fast
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
