#!/usr/bin/env bash
# Fuzzes every target of fuzz/ (or those named) for SECONDS each (default 600), one at a time,
# at the lowest CPU priority, and prints a table: target, seconds, executions, executions per
# second, corpus size, findings.
#
#   bench/fuzz.sh                    # every target, 10 minutes each
#   bench/fuzz.sh 60 graph backoff   # two targets, a minute each
#
# Each target starts from its committed corpus and regressions (fuzz/corpus/TARGET,
# fuzz/regressions/TARGET) copied to fuzz/target/corpus/TARGET, which keeps what the runs add
# from one run to the next; the committed corpus only changes by hand (minimise first:
# `cargo +nightly fuzz cmin TARGET fuzz/target/corpus/TARGET`). libFuzzer runs in fork mode
# with one job at a time (-fork=1), so that a finding is kept and fuzzing goes on: findings
# land in fuzz/artifacts/TARGET/ (crash-*, timeout-* for an input over 10 s, oom-*), each to be
# kept in fuzz/regressions/TARGET/ once fixed (crates/stormguard-fuzz/tests/replay.rs replays
# them). libFuzzer's output is in fuzz/target/logs/TARGET.log.
#
# Needs the nightly toolchain and cargo-fuzz (installed here with `cargo install cargo-fuzz
# --locked` when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-600}
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for file in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$file" .rs)")
  done
fi

say() { printf '%s\n' "$*" >&2; }

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  say "fuzzing needs the nightly toolchain (rustup toolchain install nightly)"
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked >&2
fi

say "building the fuzz targets (cargo +nightly fuzz build)"
nice -n 19 cargo +nightly fuzz build >&2

mkdir -p fuzz/target/logs
rows=()
for target in "${targets[@]}"; do
  corpus=fuzz/target/corpus/$target
  artifacts=fuzz/artifacts/$target
  log=fuzz/target/logs/$target.log
  mkdir -p "$corpus" "$artifacts"
  for kept in fuzz/corpus/"$target" fuzz/regressions/"$target"; do
    [ -d "$kept" ] && find "$kept" -maxdepth 1 -type f -exec cp -n {} "$corpus"/ \;
  done
  found_before=$(find "$artifacts" -maxdepth 1 -type f | wc -l)
  say "fuzzing $target for ${SECONDS_EACH}s (log: $log)"
  start=$(date +%s)
  # A finding is not a failure of this script: it is counted and kept.
  nice -n 19 cargo +nightly fuzz run "$target" "$corpus" -- \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -timeout=10 -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1 || true
  elapsed=$(( $(date +%s) - start ))
  # Fork mode reports `#EXECUTIONS: cov: ... corp: FILES ... exec/s: RATE ...` as it goes.
  last=$(grep -E '^#[0-9]+: ' "$log" | tail -n 1 || true)
  executions=$(sed -nE 's/^#([0-9]+): .*/\1/p' <<<"$last")
  executions=${executions:-0}
  files=$(find "$corpus" -maxdepth 1 -type f | wc -l)
  bytes=$(du -sb "$corpus" | cut -f1)
  found=$(( $(find "$artifacts" -maxdepth 1 -type f | wc -l) - found_before ))
  rate=$(( elapsed > 0 ? executions / elapsed : 0 ))
  rows+=("$(printf '%-18s %8s %13s %9s %16s %9s' "$target" "$elapsed" "$executions" "$rate" \
    "$files / $((bytes / 1024))KiB" "$found")")
done

printf '%-18s %8s %13s %9s %16s %9s\n' target seconds executions exec/s corpus findings
printf '%s\n' "${rows[@]}"
