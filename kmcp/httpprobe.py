"""What a local HTTP server answers, asked the way a kubelet's httpGet probe asks: one GET, the status line only,
no client library. The start-up waits of ``kmcp run`` and the Inspector, and the pod runner's probes, use it."""

from __future__ import annotations

import trio


async def http_status(port: int, path: str = "/", *, within: float = 1.0) -> int | None:
    """The status code of ``GET http://127.0.0.1:PORT/PATH`` (redirects not followed), or None when nothing
    answers within ``within`` seconds."""
    with trio.move_on_after(within):
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
