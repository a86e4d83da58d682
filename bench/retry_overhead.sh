#!/usr/bin/env bash
# Instructions per request on the no-failure path, for each variant of
# crates/stormguard/benches/support/mod.rs, counted by callgrind: repeatable whatever else the
# machine is doing. Each variant runs twice (N1 and N2 requests) and the difference is divided by
# N2 - N1, so start-up costs cancel. Then the same variants timed in interleaved rounds.
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p stormguard --all-features --bench retry_overhead_count --no-run >/dev/null 2>&1
bin=$(ls -t target/release/deps/retry_overhead_count-* | grep -v '\.d$' | head -1)
n1=2000
n2=12000
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '%-45s %14s %10s\n' "variant" "instr/request" "vs bare"
bare=""
while IFS= read -r variant; do
  a=$(count "$variant" $n1)
  b=$(count "$variant" $n2)
  per=$(( (b - a) / (n2 - n1) ))
  [ -z "$bare" ] && bare=$per
  printf '%-45s %14d %+10d\n' "$variant" "$per" $(( per - bare ))
done <<'VARIANTS'
bare service
tower::retry + TpsBudget
tower::retry + TpsBudget + Timeout
stormguard RetryLayer (recommended)
stormguard RetryLayer (no deadline header)
bare service, 1 KiB body read
stormguard RetryLayer, 1 KiB body read
VARIANTS
echo
"$bin"
