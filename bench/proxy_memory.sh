#!/usr/bin/env bash
# Memory of the stormguard proxy under clients that hold connections for nothing, on loopback.
# Prints one table: the proxy's resident memory (RSS) before each kind of client comes, at its
# peak while they hold, just after they leave and after a short settle, and how many of them
# the proxy closed while they held.
#
#   silent  bare TCP connects that send nothing
#   heads   connections that each send ~60 KB of a request head and stop (no blank line)
#   slow    GETs of a 1 MiB response, from an upstream this script runs, never read (the
#           client's receive buffer is 4 KiB, so the response stays with the proxy)
#
# The proxy runs with its defaults (max_connections 10,000, max_header_bytes 64 KiB,
# header_read_timeout 5 s, first_byte_timeout 10 s where the binary has it, ...): what a client
# gets from a proxy nobody tuned. Each kind holds for HOLD seconds, less than the 5 s a head
# may take, so that what is measured is what the limits hold, not what the timeouts cut (on a
# loaded machine opening them all takes seconds too: "open s" says how long, and heads opened
# more than 5 s before the check are closed by header_read_timeout).
#
# The proxy uses mimalloc, which gives freed memory back to the system lazily (and an idle
# process not at all): "after" and "settled" show what the proxy still holds only with
# MIMALLOC_PURGE_DELAY=0 in the environment, which the proxy inherits.
#
# Environment: CLIENTS (per kind, default 1000), KINDS (default "silent heads slow"), HOLD
# (seconds, default 3), SETTLE (seconds after they leave, default 5), STORMGUARD_BIN (use this
# binary instead of building), KEEP_TMP=1 (keep the config and logs). Needs cargo (unless
# STORMGUARD_BIN) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

CLIENTS=${CLIENTS:-1000}
HOLD=${HOLD:-3}
SETTLE=${SETTLE:-5}
KINDS=${KINDS:-silent heads slow}

say() { printf '%s\n' "$*" >&2; }

command -v python3 >/dev/null || { say "python3 not found"; exit 3; }

# Each client holds a descriptor here and two in the proxy (client and upstream sides).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((3 * CLIENTS + 200))
if [ "$(ulimit -n)" -lt "$need" ]; then
  say "warning: ulimit -n is $(ulimit -n), below the $need descriptors $CLIENTS clients need"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/proxy-memory.XXXXXX")

# --- processes ---------------------------------------------------------------------------------
pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
cleanup() {
  stop_all
  if [ "${KEEP_TMP:-0}" = 1 ]; then say "config and logs kept in $tmp"; else rm -rf "$tmp"; fi
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

# --- upstream: 1 MiB for /big, "ok" for anything else, any number of connections ----------------
up_port=$(free_port)
cat >"$tmp/upstream.py" <<'PY'
import asyncio, sys

BIG = b"x" * (1 << 20)

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            body = BIG if head.startswith(b"GET /big ") else b"ok"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()

asyncio.run(main(int(sys.argv[1])))
PY
python3 "$tmp/upstream.py" "$up_port" >"$tmp/upstream.out" 2>&1 &
pids+=($!)
wait_listening "$!" "$up_port" || { say "the upstream did not start:"; cat "$tmp/upstream.out" >&2; exit 3; }

# --- proxy -------------------------------------------------------------------------------------
sg_bin=${STORMGUARD_BIN:-}
if [ -z "$sg_bin" ]; then
  command -v cargo >/dev/null || { say "cargo not found (or set STORMGUARD_BIN)"; exit 3; }
  say "building: cargo build --release -p stormguard-cli"
  cargo build --release -p stormguard-cli >"$tmp/cargo.log" 2>&1 || {
    say "cargo build failed: $(grep -m1 '^error' "$tmp/cargo.log" || tail -n 1 "$tmp/cargo.log")"
    exit 3
  }
  sg_bin=${CARGO_TARGET_DIR:-$repo/target}/release/stormguard
fi
port=$(free_port)
admin_port=$(free_port)
cat >"$tmp/stormguard.toml" <<TOML
[listen]
address = "127.0.0.1:$port"

[admin]
address = "127.0.0.1:$admin_port"

[upstreams.app]
instances = ["127.0.0.1:$up_port"]

[[routes]]
name = "app"
upstream = "app"
timeout = "60s"
TOML
"$sg_bin" proxy --config "$tmp/stormguard.toml" >"$tmp/stormguard.out" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
wait_listening "$proxy_pid" "$port" || {
  say "the proxy did not start:"
  tail -n 5 "$tmp/stormguard.out" >&2
  exit 3
}

say "proxy:    $sg_bin (pid $proxy_pid) on 127.0.0.1:$port, defaults; upstream 127.0.0.1:$up_port (python asyncio)"
say "clients:  $CLIENTS of each kind ($KINDS), holding ${HOLD}s; settle ${SETTLE}s; ulimit -n $(ulimit -n); MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-default}"
say "machine:  $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- clients -----------------------------------------------------------------------------------
cat >"$tmp/clients.py" <<'PY'
import asyncio, socket, sys, time

port, admin, pid, clients, hold, settle = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                           int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
kinds = sys.argv[7].split()
ADDR = ("127.0.0.1", port)

def open_connections():
    """The proxy's stormguard_proxy_connections gauge, from its admin endpoint."""
    with socket.create_connection(("127.0.0.1", admin)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        text = b""
        while chunk := sock.recv(65536):
            text += chunk
    for line in text.decode().splitlines():
        if line.startswith("stormguard_proxy_connections "):
            return int(float(line.split()[1]))
    return -1

def rss_kib():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")

def mib(kib):
    return f"{kib / 1024:.1f}"

HEAD = b"GET /items HTTP/1.1\r\nhost: app\r\nx-pad: "
HEAD += b"a" * (60_000 - len(HEAD))
GET_BIG = b"GET /big HTTP/1.1\r\nhost: app\r\n\r\n"

async def connect(kind):
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if kind == "slow":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ADDR)
        if kind == "heads":
            await loop.sock_sendall(sock, HEAD)
        elif kind == "slow":
            await loop.sock_sendall(sock, GET_BIG)
    except OSError:
        pass  # refused or reset at once: the proxy closed it, counted below
    return sock

def closed_by_proxy(sock):
    """Whether the proxy has closed this connection; only for clients that expect no bytes."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True

async def get_ok():
    reader, writer = await asyncio.open_connection(*ADDR)
    writer.write(b"GET /ok HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    return answer.startswith(b"HTTP/1.1 200")

async def phase(kind):
    before = rss_kib()
    peak = before
    stop = asyncio.Event()

    async def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kib())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    socks = []
    start = time.monotonic()
    for first in range(0, clients, 100):
        batch = range(first, min(first + 100, clients))
        socks += await asyncio.gather(*(connect(kind) for _ in batch))
    opened = time.monotonic() - start
    await asyncio.sleep(hold)
    closed = "-" if kind == "slow" else str(sum(closed_by_proxy(s) for s in socks))
    served = await get_ok()
    for sock in socks:
        sock.close()
    await asyncio.sleep(0.5)
    stop.set()
    await sampler
    after = rss_kib()
    await asyncio.sleep(settle)
    settled = rss_kib()
    print(f"{kind:<8} {clients:>8} {closed:>8} {'yes' if served else 'NO':>7} {mib(before):>10} "
          f"{mib(peak):>10} {mib(after):>10} {mib(settled):>10} {open_connections():>8} "
          f"{opened:>8.1f}", flush=True)

async def main():
    for _ in range(20):
        assert await get_ok(), "the proxy does not answer 200"
    print(f"{'clients':<8} {'count':>8} {'closed':>8} {'served':>7} {'before':>10} {'peak':>10} "
          f"{'after':>10} {'settled':>10} {'conns':>8} {'open s':>8}")
    for kind in kinds:
        await phase(kind)

asyncio.run(main())
PY
echo
echo "RSS of the proxy in MiB: before the clients, peak while they hold (${HOLD}s), just after they"
echo "leave, after ${SETTLE}s more; closed = closed by the proxy while holding; served = a GET from"
echo "another client answered 200 while they held; conns = client connections the proxy still"
echo "counts when settled; open s = time to open them all"
python3 "$tmp/clients.py" "$port" "$admin_port" "$proxy_pid" "$CLIENTS" "$HOLD" "$SETTLE" "$KINDS"
