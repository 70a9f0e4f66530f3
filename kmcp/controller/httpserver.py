"""A tiny HTTP/1.1 server for the probe and metrics ports: h11 knows HTTP, this module only moves bytes.

A handler gets the request and returns (status, headers, body); one request per connection is plenty for probes and
scrapes, but keep-alive is honoured while the client asks for it."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import h11
import trio

MAX_REQUEST = 64 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


Response = tuple[int, list[tuple[str, str]], bytes]
Handler = Callable[[Request], Awaitable[Response]]


async def _serve_connection(stream: trio.abc.Stream, handler: Handler) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
    try:
        with trio.move_on_after(30):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(16384)
                    conn.receive_data(bytes(data))
                    if not data and conn.their_state is not h11.DONE:
                        return
                    continue
                if isinstance(event, h11.Request):
                    headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
                    request = Request(event.method.decode(), event.target.decode("latin-1"), headers)
                    while True:  # drain (and ignore) any request body
                        body_event = conn.next_event()
                        if body_event is h11.NEED_DATA:
                            conn.receive_data(bytes(await stream.receive_some(16384)))
                        elif isinstance(body_event, h11.EndOfMessage | h11.ConnectionClosed):
                            break
                    status, extra, body = await handler(request)
                    out = [("content-length", str(len(body))), *extra]
                    await stream.send_all(conn.send(h11.Response(status_code=status, headers=out)) or b"")
                    if request.method != "HEAD":
                        await stream.send_all(conn.send(h11.Data(data=body)) or b"")
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                    if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                    continue
                return
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(trio.BrokenResourceError, h11.LocalProtocolError):
                await stream.send_all(conn.send(h11.Response(status_code=400, headers=[("content-length", "0"),
                                                                                      ("connection", "close")]))
                                      or b"")
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve(handler: Handler, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; ``task_status.started(port)`` reports the bound port (useful with port 0)."""
    tcp_listeners = await trio.open_tcp_listeners(port, host=host or None)
    bound = int(tcp_listeners[0].socket.getsockname()[1])
    listeners: list[trio.abc.Listener[Any]] = list(tcp_listeners)
    if ssl_context is not None:
        listeners = [trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in tcp_listeners]
    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(partial(_serve_connection, handler=handler), listeners, handler_nursery=nursery)
