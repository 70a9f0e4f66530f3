"""Session-open time through the kmcp adapter, with and without a warm pool of pre-started servers.

A session opens when its `initialize` is answered. Without a pool, that waits for the server's cold start
(a Python interpreter importing the MCP SDK, or Node loading server-everything); with one, a process started
ahead of demand is handed over. Sessions are opened one at a time with a pause between them, so the pool has
refilled, as for a client that connects now and then.

Usage: python bench/session_open.py [--sessions 15] [--pause 2.0]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KMCP_BENCH_CACHE", Path.home() / ".cache" / "kmcp" / "bench"))
SERVERS = {
    "fastmcp (Python)": [sys.executable, str(ROOT / "tests/servers/fastmcp_server.py")],
    "server-everything (Node)": [str(CACHE / "node_modules/.bin/mcp-server-everything"), "stdio"],
}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(server: list[str], warm_pool: int, sessions: int, pause: float) -> list[float]:
    port = free_port()
    adapter = subprocess.Popen(
        [sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}", "--warm-pool", str(warm_pool),
         "--", *server], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/mcp"
    times: list[float] = []
    try:
        with httpx.Client(timeout=60) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            time.sleep(pause)  # the pool fills
            for _ in range(sessions):
                start = time.perf_counter()
                response = client.post(url, json=INIT, headers=HEADERS)
                response.read()
                times.append(time.perf_counter() - start)
                response.raise_for_status()
                if '"result"' not in response.text:
                    raise RuntimeError(f"initialize failed: {response.text[:300]}")
                client.delete(url, headers={"Mcp-Session-Id": response.headers["mcp-session-id"]})
                time.sleep(pause)
    finally:
        os.killpg(adapter.pid, signal.SIGTERM)
        adapter.wait(30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=15)
    parser.add_argument("--pause", type=float, default=2.0)
    args = parser.parse_args()
    print("| server | warm pool | session-open p50 ms | p90 ms |")
    print("|---|---|---|---|")
    for name, server in SERVERS.items():
        for pool in (0, 1):
            times = sorted(measure(server, pool, args.sessions, args.pause))
            p90 = times[int(len(times) * 0.9) - 1]
            print(f"| {name} | {pool} | {statistics.median(times) * 1e3:.1f} | {p90 * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
