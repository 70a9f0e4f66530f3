"""Adapter RSS with clients that never read what they are sent (issue 18, bounded memory).

Starts ``kmcp adapter`` over tests/servers/raw_server.py and measures the adapter process's RSS (VmRSS; the
server children are not counted) in two phases:

1. ``sse``: N legacy ``/sse`` clients read the endpoint event and then never read again; each POSTs M echo
   calls whose replies (``--reply-kb`` each) go to the stream it does not read. RSS once every POST is answered.
2. ``rounds``: R rounds of N Streamable HTTP sessions whose GET stream is never read; each gets M notifications
   of ``--reply-kb`` on that stream (a JSON-only POST of ``notify``), then every session is DELETEd and the
   clients stay connected. RSS after each round's DELETEs (what is left is what ended sessions still hold).

Usage: python bench/unread_clients.py [--clients 100] [--messages 20] [--reply-kb 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, str(ROOT / "tests/servers/raw_server.py")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def http(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head.encode() + b"\r\n" + body


async def read_head(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def roundtrip(port: int, request: bytes) -> tuple[bytes, bytes]:
    """One request on a fresh connection: (head, body) of the answer (content-length bodies only)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        head, body = await read_head(stream)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            body += chunk
        return head, body


def echo_body(request_id: int, kb: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"text": "x" * (kb * 1024)}}}).encode()


INIT = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}).encode()
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def sse_client(port: int, messages: int, kb: int, held: list[trio.SocketStream]) -> int:
    """Open /sse, learn the endpoint, never read again; POST ``messages`` echo calls. Answers 202 counted."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    held.append(stream)
    await stream.send_all(http("GET", "/sse", headers={"accept": "text/event-stream"}))
    _, rest = await read_head(stream)
    while b"sessionId=" not in rest or b"\n\n" not in rest.split(b"sessionId=", 1)[1]:
        rest += await stream.receive_some(65536)
    session = rest.split(b"sessionId=", 1)[1].split(b"\n", 1)[0].strip().decode()
    accepted = 0
    for i in range(messages):
        with trio.move_on_after(10):
            answer, _ = await roundtrip(port, http("POST", f"/message?sessionId={session}", echo_body(i + 1, kb),
                                                   {"content-type": "application/json"}))
            accepted += answer.startswith(b"HTTP/1.1 202")
    return accepted


async def streamable_client(port: int, messages: int, kb: int, held: list[trio.SocketStream]) -> str:
    head, _ = await roundtrip(port, http("POST", "/mcp", INIT, JSON_HEADERS))
    session = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"mcp-session-id:"))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    held.append(stream)
    await stream.send_all(http("GET", "/mcp", headers={"accept": "text/event-stream", "mcp-session-id": session}))
    await read_head(stream)  # then never read again
    for i in range(messages):
        body = json.dumps({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                           "params": {"name": "notify", "arguments": {"text": "x" * (kb * 1024)}}}).encode()
        with trio.move_on_after(10):  # JSON-only: the notification goes to the GET stream
            await roundtrip(port, http("POST", "/mcp", body, {"content-type": "application/json",
                                                              "accept": "application/json",
                                                              "mcp-session-id": session}))
    return session


async def settle(pid: int, seconds: float = 6.0) -> float:
    await trio.sleep(seconds)
    return rss_mb(pid)


async def bench(port: int, pid: int, args: argparse.Namespace) -> None:
    print(f"adapter RSS at start: {rss_mb(pid):.0f} MB", flush=True)
    held: list[trio.SocketStream] = []
    accepted: list[int] = []

    async def one_sse() -> None:
        accepted.append(await sse_client(port, args.messages, args.reply_kb, held))

    async with trio.open_nursery() as nursery:
        for _ in range(args.clients):
            nursery.start_soon(one_sse)
    after = await settle(pid)
    print(f"sse: {args.clients} unread /sse streams x {args.messages} replies of {args.reply_kb} KB "
          f"({sum(accepted)} POSTs answered 202): RSS {after:.0f} MB", flush=True)
    for stream in held:
        await stream.aclose()
    held.clear()
    print(f"sse: clients gone: RSS {await settle(pid):.0f} MB", flush=True)
    for round_ in range(1, args.rounds + 1):
        sessions: list[str] = []

        async def one_streamable(sessions: list[str]) -> None:
            sessions.append(await streamable_client(port, args.messages, args.reply_kb, held))

        async with trio.open_nursery() as nursery:
            for _ in range(args.clients):
                nursery.start_soon(one_streamable, sessions)
        buffered = rss_mb(pid)
        for session in sessions:
            await roundtrip(port, http("DELETE", "/mcp", headers={"mcp-session-id": session}))
        after = await settle(pid)
        print(f"round {round_}: {args.clients} unread GET streams x {args.messages} notifications of "
              f"{args.reply_kb} KB: RSS {buffered:.0f} MB buffered, {after:.0f} MB after DELETE "
              f"(clients still connected)", flush=True)
    for stream in held:
        await stream.aclose()
    print(f"all clients gone: RSS {await settle(pid):.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--reply-kb", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("adapter_args", nargs="*", help="extra kmcp adapter options")
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}",
               "--max-sessions", str(args.clients * 2), *args.adapter_args, "--", *SERVER]
    adapter = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        trio.run(bench, port, adapter.pid, args)
    finally:
        adapter.send_signal(signal.SIGTERM)
        try:
            adapter.wait(15)
        except subprocess.TimeoutExpired:
            adapter.kill()


if __name__ == "__main__":
    main()
