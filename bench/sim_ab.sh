#!/usr/bin/env bash
# The simulator's speed, this working tree against another commit: both builds of
# `cargo bench -p stormguard-sim --bench sim_throughput`, run in alternation, ROUNDS times each,
# with each row's attempts per second (in millions) side by side, and the digests of three runs
# compared first (a change made for speed must not change what a run computes).
#
# Why a script: on a shared machine the same build moves by 2-5% from one minute to the next,
# as much as most speed changes; only builds run in alternation compare like with like. And
# each build needs a target directory of its own: a worktree built into the main target
# directory writes its artifacts under the same hashes, and cargo then kept stale libraries in
# the main build (it once made a change look faster than it was).
#
# Usage: bench/sim_ab.sh [BASE_COMMIT] (default HEAD, to compare uncommitted work); ROUNDS
# (default 3). The base is built in a worktree under ${TMPDIR:-/tmp}, removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
base=${1:-HEAD}
rounds=${ROUNDS:-3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sim-ab.XXXXXX")
cleanup() {
  git -C "$repo" worktree remove --force "$tmp/base" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Builds the bench in $1 with target directory $2 and prints the binary's path.
build() {
  (cd "$1" && CARGO_TARGET_DIR=$2 cargo bench -p stormguard-sim --bench sim_throughput --no-run \
    --message-format=json 2>/dev/null) |
    sed -n 's/.*"executable":"\([^"]*sim_throughput[^"]*\)".*/\1/p' | tail -n 1
}

git worktree add -q --detach "$tmp/base" "$base"
old=$(build "$tmp/base" "$tmp/base-target")
new=$(build "$repo" "${CARGO_TARGET_DIR:-$repo/target}")
[ -x "$old" ] && [ -x "$new" ] || { echo "a build failed" >&2; exit 1; }

echo "digests (base, this tree):"
for run in "storm 60" "healthy 60" "wide4 30"; do
  # shellcheck disable=SC2086
  a=$("$old" once $run | sed 's/.*outcome //')
  # shellcheck disable=SC2086
  b=$("$new" once $run | sed 's/.*outcome //')
  mark=same
  [ "$a" = "$b" ] || mark=DIFFERENT
  printf '  %-11s %s %s %s\n' "$run" "$a" "$b" "$mark"
done

# Each run's table, one line per row: "table row attempts/s".
rows() {
  "$1" --bench | awk '
    /^healthy/ {t="healthy"} /^storm:/ {t="storm"} /^the storm side by side/ {t="copies"}
    $1 ~ /^[0-9]+$/ && NF == 5 {print t, $1, $4}'
}
for round in $(seq "$rounds"); do
  rows "$old" | sed "s/^/base $round /" >>"$tmp/rows"
  rows "$new" | sed "s/^/tree $round /" >>"$tmp/rows"
done
echo
echo "M attempts/s, best of five per row, $rounds rounds alternated (base | this tree):"
awk '
  { key = $3 " " $4; v[$1, key] = v[$1, key] sprintf(" %.2f", $5 / 1e6)
    if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
  END { for (i = 0; i < n; i++) printf "  %-12s%s |%s\n", order[i], v["base", order[i]], v["tree", order[i]] }
' "$tmp/rows"
