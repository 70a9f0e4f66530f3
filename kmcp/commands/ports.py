"""Local ports: whether one is free (what ``run``, ``dev up`` and the Inspector check before they bind), and what a
local HTTP server on one answers (their start-up waits)."""

from __future__ import annotations

import socket

import trio


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:PORT can be bound (a socket in TIME_WAIT does not count as in use)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


PROBE_SECONDS = 1.0


async def http_status(port: int, path: str = "/") -> int | None:
    """The status code of ``GET http://127.0.0.1:PORT/PATH`` (redirects not followed), or None when nothing
    answers within PROBE_SECONDS: a probe, like a kubelet's httpGet, reading the status line only."""
    with trio.move_on_after(PROBE_SECONDS):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                      "Connection: close\r\n\r\n".encode())
                head = b""
                while b"\r\n" not in head and len(head) < 1024:
                    chunk = await stream.receive_some(1024)
                    if not chunk:
                        break
                    head += chunk
        except (OSError, trio.BrokenResourceError):
            return None
        version, _, rest = head.partition(b" ")
        code = rest[:3]
        if version in (b"HTTP/1.1", b"HTTP/1.0") and code.isdigit():
            return int(code)
    return None
