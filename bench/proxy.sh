#!/usr/bin/env bash
# stormguard proxy against nginx and HAProxy, with equivalent settings (bench/proxy/*: two
# instances, one retry on the other instance, connect timeout 1 s, request timeout 10 s,
# keep-alive to the upstream, an instance whose connection fails taken out for about a second,
# one worker thread or process each), driven by wrk on loopback.
# Prints one table with all instances up (requests/s, p50, p99, CPU seconds of the proxy, ratios
# to stormguard) and one with one of the two instances down (success rate, requests/s, p99, CPU),
# then `sg-nolog`'s ratios to HAProxy in both and whether the issue's target is met in each.
# stormguard runs three times: `stormguard` with its access log on (the default; one line per request
# on stderr, which the script sends to a file, $tmp/stormguard.out, as a container runtime or
# journald would take it) and `sg-nolog` with `listen.access_log = false`. nginx and HAProxy log
# no requests (`access_log off`, no `log`), so compare them with `sg-nolog`. `sg-hyper` is sg-nolog
# with hyper's HTTP/1.1 client (`http1_client = "hyper"`) instead of the direct one (the default).
#
# Cores: the proxy under test runs on core 0 alone; wrk and the upstream (two tiny nginx
# processes answering 200 "ok") share core 1. stormguard is held to one worker by `taskset -c 0`
# and TOKIO_WORKER_THREADS=1, with which `stormguard proxy` runs one thread (tokio's
# current-thread runtime), as nginx and HAProxy run one worker.
#
# Scale (a third table, before the run with an instance down): the proxies without an access
# log again, each with one worker pinned to core 0 and then with two workers (threads for
# stormguard and HAProxy, processes for nginx) on both cores, under the same paced load: wrk
# with SCALE_CONNECTIONS connections (default 16), each waiting 1 ms before every request, far
# below what one worker can serve, so every row serves about the same rate and the CPU time per
# request compares how efficiently each proxy spreads over two cores (wrk and the upstream share
# the cores with the two-worker proxies, as in a pod). SCALE=0 skips it.
#
# Interleaved: each table's time per proxy (DURATION) is cut into ROUNDS slices, and every round
# gives each proxy one slice in turn, so that a minute when a neighbour takes the machine slows
# every proxy alike rather than the one whose turn it was (this machine moves by 10-20% from one
# minute to the next). A row sums its slices' requests, time and CPU; its p50 and p99 are the
# medians of its slices'.
#
# Environment: DURATION (wrk time per proxy and table, whole seconds, default 10s), ROUNDS
# (default 5; 1 runs each proxy's DURATION at once, as this script did before), WARMUP (before
# a proxy's first slice of a table, default 2s, 0 for none), CONNECTIONS
# (default 50), BACKOFF (stormguard's backoff between attempts: "none" by default, as nginx and
# HAProxy retry at once; "recommended" for the library's default; or any backoff text),
# STORMGUARD_BIN (use this binary instead of building), KEEP_TMP=1 (keep configs and logs).
# Needs Debian's nginx, haproxy and wrk, which it installs when missing, and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
here=$repo/bench/proxy

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-50}
BACKOFF=${BACKOFF:-none}
SCALE=${SCALE:-1}
SCALE_CONNECTIONS=${SCALE_CONNECTIONS:-16}

say() { printf '%s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------------
# Debian puts nginx and haproxy in /usr/sbin, which a non-root PATH often lacks.
find_tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; }; }

missing=()
for pkg in nginx haproxy wrk; do
  find_tool "$pkg" >/dev/null || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  say "installing from Debian: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
nginx_bin=$(find_tool nginx)
haproxy_bin=$(find_tool haproxy)
wrk_bin=$(find_tool wrk)

# A proxy holds two descriptors per request in flight; lift the soft limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d "${TMPDIR:-/tmp}/proxy-bench.XXXXXX")
# nginx workers drop to nobody when started as root, and must still reach their temp paths.
chmod 755 "$tmp"

# --- processes ---------------------------------------------------------------------------------
pids=()
# The pids whose parent is $1, from the fourth field of /proc/PID/stat.
children_of() {
  local parent=$1 stat rest
  for stat in /proc/[0-9]*/stat; do
    rest=$(cat "$stat" 2>/dev/null) || continue
    rest=${rest##*) } # after the command name, which may hold spaces
    # shellcheck disable=SC2086 # numeric fields, split on purpose
    set -- $rest
    [ "$2" = "$parent" ] && echo "${stat//[^0-9]/}"
  done
  return 0
}
# Every pid of a process and its descendants (nginx's master forwards work to its worker).
tree_of() {
  local pid=$1 child
  echo "$pid"
  for child in $(children_of "$pid"); do tree_of "$child"; done
}
# Waits up to 5 s for every pid given to exit.
wait_gone() {
  local pid
  for _ in $(seq 50); do
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && break; done
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}
stop_all() {
  local pid all=()
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && mapfile -t -O "${#all[@]}" all < <(tree_of "$pid")
  done
  [ ${#all[@]} -gt 0 ] || return 0
  kill -TERM "${all[@]}" 2>/dev/null || true
  wait_gone "${all[@]}"
  kill -KILL "${all[@]}" 2>/dev/null || true
}
cleanup() {
  stop_all
  if [ "${KEEP_TMP:-0}" = 1 ]; then say "configs and logs kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port below the kernel's ephemeral range (so no outgoing connection can hold it) that
# nothing listens on.
read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range
taken=" "
free_port() {
  local port
  while :; do
    port=$((10000 + RANDOM % (ephemeral_low - 10000)))
    case $taken in *" $port "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      taken="$taken$port "
      echo "$port"
      return
    fi
  done
}

wait_listening() {
  local pid=$1 port=$2
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# The status code of one GET through a proxy, to check it works before measuring it.
http_status() {
  # shellcheck disable=SC2016 # expanded by the inner bash, whose $1 is the port
  timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit
    printf "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" >&3
    read -r _ status _ <&3 && echo "$status"' _ "$1" 2>/dev/null || true
}

# CPU time of a process and its descendants, in clock ticks (utime + stime of /proc/PID/stat).
cpu_ticks() {
  local pid total=0 rest
  for pid in $(tree_of "$1"); do
    rest=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${rest##*) }
    # shellcheck disable=SC2086 # numeric fields, split on purpose
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

fill() { # template output key=value...
  local template=$1 out=$2 script="" pair
  shift 2
  for pair in "$@"; do script="${script}s|@${pair%%=*}@|${pair#*=}|g;"; done
  sed "$script" "$template" >"$out"
}

# --- cores -------------------------------------------------------------------------------------
cores=$(nproc)
proxy_core=0
load_core=1
if [ "$cores" -lt 2 ]; then
  load_core=0
  say "warning: $cores core: proxy, wrk and upstream share core 0; figures are not comparable"
fi

# --- upstream ----------------------------------------------------------------------------------
up_ports=()
up_pids=()
for n in 1 2; do
  port=$(free_port)
  mkdir -p "$tmp/upstream-$n-tmp"
  fill "$here/upstream.nginx.conf" "$tmp/upstream-$n.conf" DIR="$tmp" NAME="upstream-$n" PORT="$port"
  taskset -c "$load_core" "$nginx_bin" -p "$tmp" -e "$tmp/upstream-$n.error.log" \
    -c "$tmp/upstream-$n.conf" >"$tmp/upstream-$n.out" 2>&1 &
  pids+=($!)
  up_pids+=($!)
  up_ports+=("$port")
  wait_listening "$!" "$port" || { say "upstream $n did not start:"; cat "$tmp/upstream-$n.out" >&2; exit 3; }
done

# --- proxies -----------------------------------------------------------------------------------
names=()
declare -A proxy_pid proxy_port not_runnable

proxy_cpus=$proxy_core
start_proxy() { # name port command... (pinned to $proxy_cpus)
  local name=$1 port=$2
  shift 2
  taskset -c "$proxy_cpus" "$@" >"$tmp/$name.out" 2>&1 &
  local pid=$!
  pids+=("$pid")
  names+=("$name")
  if ! wait_listening "$pid" "$port"; then
    not_runnable[$name]="did not listen on $port: $(tail -n 3 "$tmp/$name.out" | tr '\n' ' ')"
    return
  fi
  local status
  status=$(http_status "$port")
  if [ "$status" != 200 ]; then
    not_runnable[$name]="a GET through it answered '${status:-nothing}', not 200"
    return
  fi
  proxy_pid[$name]=$pid
  proxy_port[$name]=$port
}

# stormguard first: it is the row the ratios divide by.
sg_bin=${STORMGUARD_BIN:-}
sg_why=""
if [ -z "$sg_bin" ]; then
  if ! command -v cargo >/dev/null; then
    sg_why="cargo not found"
  else
    say "building: cargo build --release -p stormguard-cli"
    if cargo build --release -p stormguard-cli >"$tmp/cargo.log" 2>&1; then
      sg_bin=${CARGO_TARGET_DIR:-$repo/target}/release/stormguard
    else
      sg_why="cargo build failed: $(grep -m1 '^error' "$tmp/cargo.log" || tail -n 1 "$tmp/cargo.log")"
    fi
  fi
fi
if [ -z "$sg_why" ] && ! "$sg_bin" proxy --help >/dev/null 2>&1; then
  sg_why="$sg_bin has no \`proxy\` subcommand yet"
fi
case $BACKOFF in
  recommended) backoff_line="# backoff: the library's recommended one" ;;
  *) backoff_line="backoff = \"$BACKOFF\"" ;;
esac
start_stormguard() { # name access-log workers [http1-client, default direct]
  local name=$1 port
  port=$(free_port)
  fill "$here/stormguard.toml" "$tmp/$name.toml" PORT="$port" ADMIN_PORT="$(free_port)" \
    UP1="${up_ports[0]}" UP2="${up_ports[1]}" BACKOFF="$backoff_line" ACCESS_LOG="$2" \
    HTTP1_CLIENT="${4:-direct}"
  start_proxy "$name" "$port" env TOKIO_WORKER_THREADS="$3" "$sg_bin" proxy --config "$tmp/$name.toml"
}
start_nginx() { # name workers
  local name=$1 port
  port=$(free_port)
  mkdir -p "$tmp/$name-tmp"
  fill "$here/nginx.conf" "$tmp/$name.conf" DIR="$tmp" NAME="$name" \
    PORT="$port" UP1="${up_ports[0]}" UP2="${up_ports[1]}" WORKERS="$2"
  start_proxy "$name" "$port" "$nginx_bin" -p "$tmp" -e "$tmp/$name.error.log" -c "$tmp/$name.conf"
}
# HAProxy refuses to start when maxconn needs more descriptors (two per connection) than the
# limit allows, so it gets what the limit allows, which is far more than wrk opens anyway.
maxconn=$(( ($(ulimit -n) - 100) / 2 ))
[ "$maxconn" -le 4096 ] || maxconn=4096
start_haproxy() { # name threads
  local name=$1 port
  port=$(free_port)
  fill "$here/haproxy.cfg" "$tmp/$name.cfg" PORT="$port" UP1="${up_ports[0]}" UP2="${up_ports[1]}" \
    MAXCONN="$maxconn" WORKERS="$2"
  start_proxy "$name" "$port" "$haproxy_bin" -db -f "$tmp/$name.cfg"
}

if [ -z "$sg_why" ]; then
  start_stormguard stormguard true 1
  start_stormguard sg-nolog false 1
  start_stormguard sg-hyper false 1 hyper
else
  for name in stormguard sg-nolog sg-hyper; do
    names+=("$name")
    not_runnable[$name]=$sg_why
  done
fi

start_nginx nginx 1
start_haproxy haproxy 1

for name in "${names[@]}"; do
  [ -n "${not_runnable[$name]:-}" ] && say "$name: not runnable: ${not_runnable[$name]}"
done

# --- load --------------------------------------------------------------------------------------
# Each slice of DURATION: whole seconds, at least one.
duration_s=${DURATION%s}
[[ $duration_s =~ ^[0-9]+$ ]] || { say "DURATION must be whole seconds (10 or 10s), not $DURATION"; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { say "ROUNDS must be a positive count, not $ROUNDS"; exit 2; }
slice="$(( duration_s / ROUNDS > 0 ? duration_s / ROUNDS : 1 ))s"
wrk_args=(-t1 "-c$CONNECTIONS" "-d$slice" --latency --timeout 11s -s "$here/report.lua")
say "upstream: 2 x nginx 'return 200' on 127.0.0.1:${up_ports[0]} and :${up_ports[1]}, core $load_core"
say "proxies:  $(for n in "${names[@]}"; do [ -n "${proxy_pid[$n]:-}" ] && printf '%s ' "$n"; done)on core $proxy_core, one worker each"
say "load:     taskset -c $load_core wrk ${wrk_args[*]}, $ROUNDS rounds, the proxies in turn (warm-up $WARMUP before each one's first)"
say "machine:  $cores cores, $(uname -r), $("$nginx_bin" -v 2>&1 | sed 's/.*: //'), haproxy $("$haproxy_bin" -v | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p'), stormguard backoff: $BACKOFF, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on these cores skews every row)"

declare -A rps p50 p99 cpu ok
# Each row's sums over its slices so far, and its slices' p50 and p99 (microseconds).
declare -A req_sum dur_sum tick_sum bad_sum err_sum p50_list p99_list
# What measure runs wrk with, and on which cores: the tables set them before their runs.
load_cpus=$load_core
warm_args=(-t1 "-c$CONNECTIONS" "-d$WARMUP")
median() { # numbers...
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
measure() { # name phase: one slice of wrk against the proxy, added to its row of the phase
  local name=$1 phase=$2 url="http://127.0.0.1:${proxy_port[$1]}/" before after line
  local key=$name/$phase
  if [ -z "${req_sum[$key]:-}" ] && [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
    taskset -c "$load_cpus" "$wrk_bin" "${warm_args[@]}" "$url" >/dev/null 2>&1 || true
  fi
  before=$(cpu_ticks "${proxy_pid[$name]}")
  taskset -c "$load_cpus" "$wrk_bin" "${wrk_args[@]}" "$url" >"$tmp/wrk-$name-$phase.out" 2>&1 || true
  after=$(cpu_ticks "${proxy_pid[$name]}")
  if ! kill -0 "${proxy_pid[$name]}" 2>/dev/null; then
    local code=0
    wait "${proxy_pid[$name]}" || code=$?
    not_runnable[$name]="died (exit $code) during the $phase run: $(tail -n 3 "$tmp/$name.out" | tr '\n' ' ')"
    return 1
  fi
  line=$(grep '^RESULT ' "$tmp/wrk-$name-$phase.out") || {
    not_runnable[$name]="wrk gave no result: $(tail -n 3 "$tmp/wrk-$name-$phase.out" | tr '\n' ' ')"
    return 1
  }
  local requests duration_us p50_us p99_us status connect read write timeout
  eval "${line#RESULT }" # wrk's own counts, written by report.lua as key=number pairs
  req_sum[$key]=$(( ${req_sum[$key]:-0} + requests ))
  dur_sum[$key]=$(( ${dur_sum[$key]:-0} + duration_us ))
  tick_sum[$key]=$(( ${tick_sum[$key]:-0} + after - before ))
  bad_sum[$key]=$(( ${bad_sum[$key]:-0} + status + timeout ))
  err_sum[$key]=$(( ${err_sum[$key]:-0} + connect + read + write ))
  p50_list[$key]="${p50_list[$key]:-} $p50_us"
  p99_list[$key]="${p99_list[$key]:-} $p99_us"
  local r=${req_sum[$key]} d=${dur_sum[$key]} t=${tick_sum[$key]}
  rps[$key]=$(awk -v r="$r" -v d="$d" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
  # shellcheck disable=SC2086 # the lists are numbers separated by spaces
  p50[$key]=$(awk -v u="$(median ${p50_list[$key]})" 'BEGIN { printf "%.2f", u / 1000 }')
  # shellcheck disable=SC2086
  p99[$key]=$(awk -v u="$(median ${p99_list[$key]})" 'BEGIN { printf "%.2f", u / 1000 }')
  cpu[$key]=$(awk -v t="$t" -v hz="$hz" -v r="$r" \
    'BEGIN { printf "%.2f %.1f", t / hz, r ? t / hz / r * 1e6 : 0 }')
  # A success is a completed 2xx/3xx answer within wrk's timeout; connections wrk could not
  # make, or that broke mid-request, are failed requests that wrk does not count as requests.
  ok[$key]=$(awk -v r="$r" -v b="${bad_sum[$key]}" -v e="${err_sum[$key]}" \
    'BEGIN { n = r + e; printf "%.3f", n ? (r - b) / n * 100 : 0 }')
}
ratio() { # value stormguard-value
  if [ -z "$2" ]; then echo "-"; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; fi
}

# ROUNDS rounds of one slice for each proxy named (after the phase) that still runs, in turn; a
# proxy that dies or gives no result leaves the table's later rounds.
run_rounds() { # phase name...
  local phase=$1 round name
  shift
  for round in $(seq "$ROUNDS"); do
    for name in "$@"; do
      [ -n "${proxy_pid[$name]:-}" ] || continue
      say "running: $name ($phase, round $round of $ROUNDS)"
      if ! measure "$name" "$phase"; then
        say "$name: ${not_runnable[$name]}"
        unset "proxy_pid[$name]"
      fi
    done
  done
}

run_phase() { # phase
  run_rounds "$1" "${names[@]}"
}

run_phase up

# --- scale: one worker on one core, then two workers on both, at the same paced load ----------
scale_rows=()
if [ "$SCALE" != 0 ] && [ "$cores" -ge 2 ]; then
  # report.lua, and a pause of 1 ms before every request of every connection.
  { cat "$here/report.lua"; echo 'delay = function() return 1 end'; } >"$tmp/paced.lua"
  saved_args=("${wrk_args[@]}")
  wrk_args=(-t1 "-c$SCALE_CONNECTIONS" "-d$slice" --latency --timeout 11s -s "$tmp/paced.lua")
  warm_args=(-t1 "-c$SCALE_CONNECTIONS" "-d$WARMUP" -s "$tmp/paced.lua")
  say "scale:    taskset -c $load_core wrk ${wrk_args[*]} against one worker on core $proxy_core"
  run_rounds paced1 sg-nolog nginx haproxy
  for name in sg-nolog nginx haproxy; do
    if [ -n "${proxy_pid[$name]:-}" ] && [ -n "${rps[$name/paced1]:-}" ]; then
      scale_rows+=("$name/paced1")
    fi
  done
  # Two workers on both cores, sharing them with wrk and the upstream.
  proxy_cpus=0,1
  load_cpus=0,1
  [ -z "$sg_why" ] && start_stormguard sg-nolog-2w false 2
  start_nginx nginx-2w 2
  start_haproxy haproxy-2w 2
  # Rows of this table only: the other tables list the one-worker proxies.
  kept=()
  for name in "${names[@]}"; do
    case $name in *-2w) ;; *) kept+=("$name") ;; esac
  done
  names=("${kept[@]}")
  say "scale:    taskset -c $load_cpus wrk ${wrk_args[*]} against two workers on cores $proxy_cpus"
  for name in sg-nolog-2w nginx-2w haproxy-2w; do
    [ -n "${proxy_pid[$name]:-}" ] || say "$name: not runnable: ${not_runnable[$name]:-not started}"
  done
  run_rounds paced2 sg-nolog-2w nginx-2w haproxy-2w
  for name in sg-nolog-2w nginx-2w haproxy-2w; do
    if [ -n "${proxy_pid[$name]:-}" ] && [ -n "${rps[$name/paced2]:-}" ]; then
      scale_rows+=("$name/paced2")
    fi
  done
  proxy_cpus=$proxy_core
  load_cpus=$load_core
  wrk_args=("${saved_args[@]}")
  warm_args=(-t1 "-c$CONNECTIONS" "-d$WARMUP")
fi

# One instance down for good: its master and worker both go, so connections to it are refused.
mapfile -t down < <(tree_of "${up_pids[1]}")
kill -TERM "${down[@]}"
wait_gone "${down[@]}"
run_phase down
if [ -f "$tmp/stormguard.out" ]; then
  say "stormguard's access log: $(grep -c 'stormguard::access' "$tmp/stormguard.out" || true) lines written to $tmp/stormguard.out (sg-nolog: $(grep -c 'stormguard::access' "$tmp/sg-nolog.out" || true))"
fi

echo
echo "All instances up: wrk -t1 -c$CONNECTIONS, $ROUNDS rounds of $slice for each proxy in turn, proxy on core $proxy_core, wrk + upstream on core $load_core"
printf '%-11s %10s %8s %8s %7s %9s %8s %8s\n' proxy "req/s" "p50 ms" "p99 ms" "cpu s" "cpu us/rq" "rps/sg" "p99/sg"
for name in "${names[@]}"; do
  k=$name/up
  if [ -z "${rps[$k]:-}" ]; then
    printf '%-11s not runnable: %s\n' "$name" "${not_runnable[$name]}"
    continue
  fi
  read -r cpu_s cpu_us <<<"${cpu[$k]}"
  printf '%-11s %10s %8s %8s %7s %9s %8s %8s\n' "$name" "${rps[$k]}" "${p50[$k]}" "${p99[$k]}" \
    "$cpu_s" "$cpu_us" "$(ratio "${rps[$k]}" "${rps[stormguard/up]:-}")" \
    "$(ratio "${p99[$k]}" "${p99[stormguard/up]:-}")"
done
if [ ${#scale_rows[@]} -gt 0 ]; then
  echo
  echo "Paced: wrk -c$SCALE_CONNECTIONS, 1 ms before each request; one worker on core $proxy_core (wrk + upstream on core $load_core), then two on cores 0,1 (shared with wrk + upstream)"
  printf '%-13s %8s %10s %8s %8s %7s %9s %10s\n' proxy workers "req/s" "p50 ms" "p99 ms" "cpu s" "cpu us/rq" "us/rq x1w"
  declare -A one_worker_us
  for k in "${scale_rows[@]}"; do
    read -r cpu_s cpu_us <<<"${cpu[$k]}"
    name=${k%/*}
    base=${name%-2w}
    case $k in
      */paced1) workers=1; one_worker_us[$base]=$cpu_us ;;
      *) workers=2 ;;
    esac
    printf '%-13s %8s %10s %8s %8s %7s %9s %10s\n' "$name" "$workers" "${rps[$k]}" "${p50[$k]}" \
      "${p99[$k]}" "$cpu_s" "$cpu_us" "$(ratio "$cpu_us" "${one_worker_us[$base]:-}")"
  done
fi
echo
echo "One of two instances down (connections to it refused), same load and rounds"
printf '%-11s %10s %10s %8s %7s %9s %8s %8s\n' proxy "success %" "req/s" "p99 ms" "cpu s" "cpu us/rq" \
  "rps/sg" "p99/sg"
for name in "${names[@]}"; do
  k=$name/down
  if [ -z "${rps[$k]:-}" ]; then
    printf '%-11s not runnable: %s\n' "$name" "${not_runnable[$name]}"
    continue
  fi
  read -r cpu_s cpu_us <<<"${cpu[$k]}"
  printf '%-11s %10s %10s %8s %7s %9s %8s %8s\n' "$name" "${ok[$k]}" "${rps[$k]}" "${p99[$k]}" \
    "$cpu_s" "$cpu_us" "$(ratio "${rps[$k]}" "${rps[stormguard/down]:-}")" \
    "$(ratio "${p99[$k]}" "${p99[stormguard/down]:-}")"
done

# The issue's target, read off the tables: stormguard without its access log against HAProxy
# (which logs no requests either), at least its requests, at most its p99 and CPU a request.
echo
echo "Target (sg-nolog against haproxy: req/s >= 1, p99 <= 1, CPU a request <= 1)"
printf '%-8s %8s %8s %10s %s\n' phase "req/s" "p99" "cpu us/rq" verdict
for phase in up down; do
  a=sg-nolog/$phase
  b=haproxy/$phase
  if [ -z "${rps[$a]:-}" ] || [ -z "${rps[$b]:-}" ]; then
    printf '%-8s not measured\n' "$phase"
    continue
  fi
  read -r _ us_a <<<"${cpu[$a]}"
  read -r _ us_b <<<"${cpu[$b]}"
  r_rps=$(ratio "${rps[$a]}" "${rps[$b]}")
  r_p99=$(ratio "${p99[$a]}" "${p99[$b]}")
  r_cpu=$(ratio "$us_a" "$us_b")
  # From the figures themselves, not the rounded ratios.
  verdict=$(awk -v ra="${rps[$a]}" -v rb="${rps[$b]}" -v pa="${p99[$a]}" -v pb="${p99[$b]}" \
    -v ca="$us_a" -v cb="$us_b" \
    'BEGIN { print (ra >= rb && pa <= pb && ca <= cb) ? "met" : "not met" }')
  printf '%-8s %8s %8s %10s %s\n' "$phase" "$r_rps" "$r_p99" "$r_cpu" "$verdict"
done
