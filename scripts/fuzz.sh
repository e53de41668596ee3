#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for a fixed time, after replaying the
# regression inputs of each (crashes found earlier, kept in fuzz/regressions/TARGET/), and
# prints one line per target: executions, executions per second, corpus entries, outcome.
#
#   scripts/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]     (default 15 s, every target)
#
# On stable Rust it builds with `--sanitizer none`: coverage-guided, finding panics, integer
# overflow (debug assertions are on), any single allocation over 1 GiB (the fuzz crate's own
# allocator aborts: libFuzzer's -malloc_limit_mb needs a sanitizer), memory over
# -rss_limit_mb and inputs slower than -timeout. With a nightly toolchain,
# LIFEBOAT_FUZZ_TOOLCHAIN=nightly LIFEBOAT_FUZZ_SANITIZER=address adds AddressSanitizer (for the
# FFI below the Rust code). A long run is one command: `scripts/fuzz.sh 3600 tree`. A crash
# leaves its input in fuzz/artifacts/TARGET/; docs/testing.md ("Fuzzing") says how it becomes a
# regression test. Exit status: 0 when every target ran clean, 1 when one crashed or failed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-15}
[ $# -gt 0 ] && shift
sanitizer=${LIFEBOAT_FUZZ_SANITIZER:-none}
# release (default): optimised, ~15x the executions per second; dev: builds in less than half
# the time, for short runs (CI) where the build dominates.
profile=()
[ "${LIFEBOAT_FUZZ_PROFILE:-release}" = dev ] && profile=(--dev)
toolchain=()
[ -n "${LIFEBOAT_FUZZ_TOOLCHAIN:-}" ] && toolchain=("+${LIFEBOAT_FUZZ_TOOLCHAIN}")

if ! cargo "${toolchain[@]}" fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is not installed (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if [ $# -gt 0 ]; then
  targets=("$@")
else
  list=$(cargo "${toolchain[@]}" fuzz list)
  mapfile -t targets <<<"$list"
  if [ -z "$list" ]; then
    echo "fuzz.sh: cargo fuzz list named no target" >&2
    exit 1
  fi
fi

echo "== cargo fuzz build (sanitizer: $sanitizer, profile: ${LIFEBOAT_FUZZ_PROFILE:-release})"
# cargo-fuzz has no --locked: check that fuzz/Cargo.lock needs no change first.
cargo "${toolchain[@]}" metadata --locked --format-version 1 >/dev/null
if ! cargo "${toolchain[@]}" fuzz build "${profile[@]}" --sanitizer "$sanitizer" --debug-assertions; then
  echo "fuzz.sh: the fuzz targets do not build" >&2
  exit 1
fi

# libFuzzer options: a wall-clock budget, 2 GiB of memory, no single allocation over 1 GiB
# (a length field an attacker controls must not size an allocation; enforced by the fuzz
# crate's allocator without a sanitizer), 10 s per input.
options=(-max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10
  -print_final_stats=1)
status=0
results=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "seeds/$target" "regressions/$target"
  log=$(mktemp)
  outcome=ok
  if compgen -G "regressions/$target/*" >/dev/null; then
    if ! cargo "${toolchain[@]}" fuzz run "${profile[@]}" --sanitizer "$sanitizer" --debug-assertions "$target" regressions/"$target"/* \
      -- -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 >"$log" 2>&1; then
      outcome="REGRESSION (replay: cargo fuzz run -s $sanitizer $target fuzz/regressions/$target/*)"
      tail -n 40 "$log" >&2
      status=1
    fi
  fi
  if [ "$outcome" = ok ]; then
    if ! cargo "${toolchain[@]}" fuzz run "${profile[@]}" --sanitizer "$sanitizer" --debug-assertions "$target" "corpus/$target" "seeds/$target" \
      -- "${options[@]}" >"$log" 2>&1; then
      artifact=$(grep -o "artifact_prefix='[^']*'; Test unit written to [^ ]*" "$log" | sed 's/.*written to //' | tail -n 1 || true)
      outcome="CRASH ${artifact:-see the log above}"
      tail -n 40 "$log" >&2
      status=1
    fi
  fi
  # (No stats after a regression or a fuzzer killed from outside.)
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1 || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1 || true)
  entries=$(find "corpus/$target" -type f | wc -l)
  results+=("$(printf '%-16s %12s %10s %8s  %s' "$target" "${runs:--}" "${rate:--}" "$entries" "$outcome")")
  rm -f "$log"
done

echo "== fuzzing: ${seconds} s per target"
printf '%-16s %12s %10s %8s  %s\n' target executions "exec/s" corpus outcome
printf '%s\n' "${results[@]}"
exit "$status"
