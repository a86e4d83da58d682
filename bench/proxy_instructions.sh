#!/usr/bin/env bash
# Instructions the proxy spends in user space per request, counted by callgrind: stormguard
# (with its access log and without) and nginx with the settings of bench/proxy.sh (two
# instances, one retry on the other, keep-alive upstream), each under valgrind behind wrk -c10:
# after a warm-up, a run of 2 s and one of DURATION, each dumped on its own; the difference of
# the two instruction counts over the difference of their requests, so that neither start-up nor
# warm-up counts.
#
# Why a second proxy benchmark: bench/proxy.sh measures requests/s, which moves by 10-20%
# between runs on a shared machine; instruction counts do not, so a change to the data path
# can be judged here to within about a hundred instructions, whatever else the machine does.
# The kernel's work (the same four syscalls a request for every proxy) is not counted.
# HAProxy is left out: under valgrind its scheduler spins between events, so its count says
# more about valgrind than about HAProxy.
#
# Environment: DURATION (default 10s), STORMGUARD_BIN (use this binary instead of building).
# Needs valgrind, nginx and wrk (Debian packages; installed when missing, as bench/proxy.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
here=$repo/bench/proxy
DURATION=${DURATION:-10s}

find_tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; }; }
missing=()
for pkg in valgrind nginx wrk; do find_tool "$pkg" >/dev/null || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
nginx_bin=$(find_tool nginx)
wrk_bin=$(find_tool wrk)

sg_bin=${STORMGUARD_BIN:-}
if [ -z "$sg_bin" ]; then
  cargo build --release -p stormguard-cli >/dev/null 2>&1
  sg_bin=${CARGO_TARGET_DIR:-$repo/target}/release/stormguard
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/proxy-instructions.XXXXXX")
chmod 755 "$tmp"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Ports below the ephemeral range that nothing listens on.
read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range
free_port() {
  local port
  while :; do
    port=$((10000 + RANDOM % (ephemeral_low - 10000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}
wait_listening() {
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
fill() { # template output key=value...
  local template=$1 out=$2 script="" pair
  shift 2
  for pair in "$@"; do script="${script}s|@${pair%%=*}@|${pair#*=}|g;"; done
  sed "$script" "$template" >"$out"
}

up=()
for n in 1 2; do
  port=$(free_port)
  mkdir -p "$tmp/upstream-$n-tmp"
  fill "$here/upstream.nginx.conf" "$tmp/upstream-$n.conf" DIR="$tmp" NAME="upstream-$n" PORT="$port"
  "$nginx_bin" -p "$tmp" -e "$tmp/upstream-$n.error.log" -c "$tmp/upstream-$n.conf" >/dev/null 2>&1 &
  pids+=($!)
  up+=("$port")
  wait_listening "$port"
done

# The instructions of one callgrind dump (the events since the last dump or zeroing).
dump_total() { sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$1" | head -n 1; }

# The requests one wrk run of $1 against port $2 made.
wrk_requests() { # duration port
  "$wrk_bin" -t1 -c10 "-d$1" "http://127.0.0.1:$2/" | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p'
}

# Runs `$@` under callgrind listening on $port: a 1 s warm-up (connections and pools), then
# the counters zeroed, a wrk run of 2 s and a dump, a wrk run of DURATION and a dump. Each dump
# holds what was done since the one before, so the difference of the two counts over the
# difference of their requests leaves start-up, warm-up, shutdown and whatever a dump itself
# costs out. (Counting from start-up, as this script did first, put the warm-up's requests in
# the instructions but not in the requests: that moved the figure by some 3k between runs.)
measure() { # name port command...
  local name=$1 port=$2 out=$tmp/$1.callgrind
  shift 2
  valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out" "$@" \
    >"$tmp/$name.out" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_listening "$port" || { echo "$name did not listen: $(tail -n 3 "$tmp/$name.out")" >&2; exit 3; }
  wrk_requests 1s "$port" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  local r1 r2 i1 i2
  r1=$(wrk_requests 2s "$port")
  callgrind_control -d "$pid" >/dev/null 2>&1
  r2=$(wrk_requests "$DURATION" "$port")
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -TERM "$pid"
  wait "$pid" || true
  i1=$(dump_total "$out.1")
  i2=$(dump_total "$out.2")
  printf '%-12s %10s %12s %14s\n' "$name" "$r2" "$i2" "$(((i2 - i1) / (r2 - r1)))"
}

printf '%-12s %10s %12s %14s\n' proxy requests instructions "instr/request"
# One worker thread, as in bench/proxy.sh; set here, since valgrind does not follow `env`'s exec.
export TOKIO_WORKER_THREADS=1
# With its access log (the default; its lines go to a file, $tmp/stormguard.out) and without
# (sg-nolog), as bench/proxy.sh runs it: nginx here logs no requests.
# sg-hyper: sg-nolog with hyper's HTTP/1.1 client (`http1_client = "hyper"`) instead of the
# direct one (the default).
for variant in stormguard:true:direct sg-nolog:false:direct sg-hyper:false:hyper; do
  IFS=: read -r name log client <<<"$variant"
  port=$(free_port)
  fill "$here/stormguard.toml" "$tmp/$name.toml" PORT="$port" ADMIN_PORT="$(free_port)" \
    UP1="${up[0]}" UP2="${up[1]}" BACKOFF='backoff = "none"' ACCESS_LOG="$log" \
    HTTP1_CLIENT="$client"
  measure "$name" "$port" "$sg_bin" proxy --config "$tmp/$name.toml"
done
port=$(free_port)
mkdir -p "$tmp/nginx-tmp"
fill "$here/nginx.conf" "$tmp/nginx.conf" DIR="$tmp" NAME=nginx PORT="$port" UP1="${up[0]}" \
  UP2="${up[1]}" WORKERS=1
# One process: the master would otherwise hand the work to a worker valgrind does not follow.
sed -i 's/^worker_processes 1;/worker_processes 1;\nmaster_process off;/' "$tmp/nginx.conf"
measure nginx "$port" "$nginx_bin" -p "$tmp" -e "$tmp/nginx.error.log" -c "$tmp/nginx.conf"
