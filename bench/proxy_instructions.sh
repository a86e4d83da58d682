#!/usr/bin/env bash
# Instructions the proxy spends in user space per request, counted by callgrind: stormguard
# (with its access log and without) and nginx with the settings of bench/proxy.sh (two instances, one retry on the other, keep-alive
# upstream), each under valgrind behind wrk -c10, twice (2 s and DURATION): the difference of the
# two instruction counts over the difference of their requests, so start-up does not count.
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

# Runs `$@` under callgrind listening on $port for a wrk run of $1 after a 1 s warm-up; prints
# "requests instructions".
run_once() { # duration name port command...
  local duration=$1 name=$2 port=$3 out=$tmp/$2.callgrind
  shift 3
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$tmp/$name.out" 2>&1 &
  local pid=$!
  wait_listening "$port" || { echo "$name did not listen: $(tail -n 3 "$tmp/$name.out")" >&2; exit 3; }
  "$wrk_bin" -t1 -c10 -d1s "http://127.0.0.1:$port/" >/dev/null # connections and pools warm
  local requests
  requests=$("$wrk_bin" -t1 -c10 "-d$duration" "http://127.0.0.1:$port/" \
    | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
  kill -TERM "$pid"
  wait "$pid" || true
  echo "$requests $(callgrind_annotate "$out" 2>/dev/null \
    | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)"
}

# Two runs, short and long: the difference of their counts over the difference of their
# requests leaves start-up, warm-up and shutdown out.
measure() { # name port command...
  local r1 i1 r2 i2
  read -r r1 i1 < <(run_once 2s "$@")
  read -r r2 i2 < <(run_once "$DURATION" "$@")
  printf '%-12s %10s %12s %14s\n' "$1" "$r2" "$i2" "$(((i2 - i1) / (r2 - r1)))"
}

printf '%-12s %10s %12s %14s\n' proxy requests instructions "instr/request"
# One worker thread, as in bench/proxy.sh; set here, since valgrind does not follow `env`'s exec.
export TOKIO_WORKER_THREADS=1
# With its access log (the default; its lines go to a file, $tmp/stormguard.out) and without
# (sg-nolog), as bench/proxy.sh runs it: nginx here logs no requests.
for variant in stormguard:true sg-nolog:false; do
  name=${variant%%:*}
  port=$(free_port)
  fill "$here/stormguard.toml" "$tmp/$name.toml" PORT="$port" ADMIN_PORT="$(free_port)" \
    UP1="${up[0]}" UP2="${up[1]}" BACKOFF='backoff = "none"' ACCESS_LOG="${variant#*:}"
  measure "$name" "$port" "$sg_bin" proxy --config "$tmp/$name.toml"
done
port=$(free_port)
mkdir -p "$tmp/nginx-tmp"
fill "$here/nginx.conf" "$tmp/nginx.conf" DIR="$tmp" PORT="$port" UP1="${up[0]}" UP2="${up[1]}"
# One process: the master would otherwise hand the work to a worker valgrind does not follow.
sed -i 's/^worker_processes 1;/worker_processes 1;\nmaster_process off;/' "$tmp/nginx.conf"
measure nginx "$port" "$nginx_bin" -p "$tmp" -e "$tmp/nginx.error.log" -c "$tmp/nginx.conf"
