#!/usr/bin/env python3
"""The memory of `stormguard proxy` under HTTP/1.1 clients that never read (issue 12).

Starts an upstream (in this process: a 1 GiB answer to /large, "ok" to anything else), a proxy
with `stream_idle_timeout = STREAM_IDLE`, and READERS connections that ask for /large with a
4 KiB receive buffer and never read. Prints the proxy's resident memory (VmRSS) before, while
the readers hold their responses, after `stream_idle_timeout` (the readers still connected),
and after the readers left; and whether a plain request was served at each point.

    cargo build --release -p stormguard-cli
    bench/slow_readers.py target/release/stormguard

Environment: READERS (default 300), STREAM_IDLE (default "5s"), HOLD (seconds the readers hold
before the first figure, default 3; keep it under STREAM_IDLE), AFTER (seconds after the
readers left, default 2). Loopback only.
"""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

READERS = int(os.environ.get("READERS", "300"))
STREAM_IDLE = os.environ.get("STREAM_IDLE", "5s")
HOLD = float(os.environ.get("HOLD", "3"))
AFTER = float(os.environ.get("AFTER", "2"))
CHUNK = b"x" * 65536


async def answer(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.split(b" ")[1] != b"/large":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (1 << 30))
            for _ in range((1 << 30) // len(CHUNK)):
                writer.write(CHUNK)
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def served(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        return type(error).__name__


async def main(binary):
    upstream = await asyncio.start_server(answer, "127.0.0.1", 0)
    upstream_port = upstream.sockets[0].getsockname()[1]
    port, admin = free_port(), free_port()
    settings = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    settings.write(
        f'[listen]\naddress = "127.0.0.1:{port}"\nstream_idle_timeout = "{STREAM_IDLE}"\n'
        f'[admin]\naddress = "127.0.0.1:{admin}"\n'
        f'[upstreams.api]\ninstances = ["127.0.0.1:{upstream_port}"]\n'
        f'[[routes]]\nname = "api"\nupstream = "api"\ntimeout = "10s"\n'
    )
    settings.close()
    proxy = subprocess.Popen([binary, "proxy", "--config", settings.name],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)

        async def figure(moment):
            status = await asyncio.to_thread(served, port)
            print(f"{moment:<44} {rss_mib(proxy.pid):8.1f} MiB   plain request: {status}")

        await figure("before")
        readers = []
        for _ in range(READERS):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /large HTTP/1.1\r\nhost: api\r\n\r\n")
            readers.append(s)
        await asyncio.sleep(HOLD)
        await figure(f"{READERS} readers holding, after {HOLD:g} s")
        idle = float(STREAM_IDLE.rstrip("ms")) / (1000 if STREAM_IDLE.endswith("ms") else 1)
        await asyncio.sleep(max(0.0, idle * 1.25 - HOLD) + 1)
        await figure(f"after stream_idle_timeout ({STREAM_IDLE}), readers still on")
        for s in readers:
            s.close()
        await asyncio.sleep(AFTER)
        await figure(f"{AFTER:g} s after the readers left")
    finally:
        proxy.terminate()
        proxy.wait()
        upstream.close()
        os.unlink(settings.name)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "target/release/stormguard"))
