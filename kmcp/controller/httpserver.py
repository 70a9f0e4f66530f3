"""The probe and metrics ports, on the adapter's HTTP server (one HTTP/1.1 implementation in kmcp): a handler
here gets the request and returns (status, headers, body), which is all a probe or a scrape needs."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from kmcp.adapter.server import http
from kmcp.adapter.server.http import Request

__all__ = ["Handler", "Request", "Response", "serve"]

Response = tuple[int, list[tuple[str, str]], bytes]
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class PortLimits:
    """A probe or a scrape is a small GET: small limits, and idle connections closed sooner than the adapter's."""

    host: str = ""
    port: int = 0
    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    min_body_rate: int = 64 * 1024
    keepalive_timeout: float = 30.0
    max_idle_connections: int = 64
    send_timeout: float = 30.0
    drain_timeout: float = 1.0


def _exchange(handler: Handler) -> http.Handler:
    async def exchange(request: Request, responder: http.Responder) -> None:
        status, headers, body = await handler(request)
        await responder.respond(status, [(name.encode("latin-1"), value.encode("latin-1"))
                                         for name, value in headers], body)

    return exchange


async def serve(handler: Handler, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; ``task_status.started(port)`` reports the bound port (useful with port 0)."""
    tcp_listeners = await trio.open_tcp_listeners(port, host=host or None)
    listeners: list[trio.abc.Listener[Any]] = list(tcp_listeners)
    if ssl_context is not None:
        listeners = [trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in tcp_listeners]
    server = http.HttpServer(_exchange(handler), PortLimits(host=host, port=port))
    await server.serve(listeners, task_status=task_status)
