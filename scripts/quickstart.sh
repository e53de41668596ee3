#!/usr/bin/env bash
# The main job, end to end on this machine: build drctl, create an encrypted repository in a
# local directory, back up a directory twice (the second run is incremental), verify the
# repository, restore, and compare. Usage: scripts/quickstart.sh [DIR_TO_BACK_UP]
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir="$(realpath "${1:-docs}")"
scripts/install-deps.sh
cargo build --release -q -p drctl
drctl="${CARGO_TARGET_DIR:-target}/release/drctl"

work="$(mktemp -d -t lifeboat-quickstart-XXXXXX)"
age-keygen -o "$work/me.age" 2>/dev/null
export DRCTL_REPO="$work/repo" DRCTL_IDENTITY="$work/me.age"
mkdir -p "$DRCTL_REPO"

echo "== repository in $DRCTL_REPO"
"$drctl" repo init --recipient "$(age-keygen -y "$work/me.age")"
echo "== backup of $source_dir"
"$drctl" backup files "$source_dir" --tag demo=quickstart
"$drctl" backup files "$source_dir"
"$drctl" snapshots
echo "== check"
"$drctl" repo check --read-data
echo "== restore"
"$drctl" restore files latest --target "$work/restored"
diff -r "$source_dir" "$work/restored${source_dir}" && echo "restored copy is identical to $source_dir"
echo "(repository, key and restored copy left in $work)"
