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

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
