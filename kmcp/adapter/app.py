"""The adapter as one service: routes HTTP paths to transports, runs the session table, drains on shutdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from kmcp.adapter.metrics import Metrics
from kmcp.adapter.server.http import HttpServer, Request, Responder
from kmcp.adapter.server.httputil import JSON, text
from kmcp.adapter.sessions.runtime import SessionTable
from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import Launcher
from kmcp.adapter.transports.legacy_sse import MESSAGE_PATH, LegacySse
from kmcp.adapter.transports.streamable import StreamableHttp
from kmcp.adapter.transports.websocket import WebSocketTransport

if TYPE_CHECKING:
    from kmcp.adapter.auth import AuthGate
    from kmcp.adapter.server.forwarding import Forwarder

_METADATA_PATH = "/.well-known/oauth-protected-resource"  # RFC 9728, served unauthenticated
_PROBE_PATHS = frozenset({"/health", "/healthz", "/readyz", "/metrics"})
_OPEN_PATHS = _PROBE_PATHS  # probes and scrapers carry no token


class AdapterApp:
    def __init__(self, settings: AdapterSettings, table: SessionTable, metrics: Metrics) -> None:
        self.settings = settings
        self.table = table
        self.metrics = metrics
        self.stop = trio.Event()  # set when draining: standalone streams end, no new sessions
        self.streamable = StreamableHttp(settings, table, self.stop)
        self.legacy = LegacySse(settings, table, self.stop)
        self.websocket = WebSocketTransport(settings, table, self.stop)
        self.forwarder: Forwarder | None = None
        if table.ids.forwarding:
            from kmcp.adapter.server.forwarding import Forwarder  # only with replicas: start-up time

            self.forwarder = Forwarder(table.ids, settings, metrics, self.stop)
            self.streamable.forwarder = self.legacy.forwarder = self.forwarder
        self.auth: AuthGate | None = None
        if settings.auth.mode != "none":
            from kmcp.adapter.auth import AuthGate  # only when enabled: start-up time

            self.auth = AuthGate(settings.auth, metrics)

    async def handle(self, request: Request, responder: Responder) -> None:
        path = request.path.rstrip("/") or "/"
        endpoint = path
        try:
            if self.auth is not None and path not in _OPEN_PATHS:
                if path.startswith(_METADATA_PATH):
                    endpoint = "metadata"
                    await self.auth.metadata(request, responder)
                    return
                if not await self.auth.admit(request, responder):
                    return
            if path == "/mcp":
                await self.streamable.handle(request, responder)
            elif path == "/sse" and self.settings.enable_legacy_sse:
                await self.legacy.stream(request, responder)
            elif path in (MESSAGE_PATH, "/messages") and self.settings.enable_legacy_sse:
                await self.legacy.message(request, responder)
            elif path == "/ws" and self.settings.enable_websocket:
                await self.websocket.handle(request, responder)
            elif path in _PROBE_PATHS and request.method not in ("GET", "HEAD"):
                await text(responder, 405, "method not allowed", [(b"allow", b"GET, HEAD")])
            elif path in ("/health", "/healthz", "/readyz"):
                await self._health(responder)
            elif path == "/metrics":
                await responder.respond(200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")],
                                        self.metrics.render())
            else:
                endpoint = "other"
                await text(responder, 404, "not found")
        finally:
            self.metrics.http_requests[(endpoint, responder.status)] += 1

    async def _health(self, responder: Responder) -> None:
        if self.stop.is_set():
            await responder.respond(503, [(b"content-type", JSON)], b'{"status":"draining"}')
        else:
            await responder.respond(200, [(b"content-type", JSON)], b'{"status":"ok"}')


class ListenError(Exception):
    """The port cannot be bound (in use, not permitted): one line for the user, raised before any process starts."""


async def bind(settings: AdapterSettings) -> list[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(settings.port, host=settings.host or None)
    except OSError as error:
        raise ListenError(f"cannot listen on {settings.host or '*'}:{settings.port}: "
                          f"{error.strerror or error}") from None


async def serve_adapter(settings: AdapterSettings, launcher: Launcher, shutdown: trio.Event, *,
                        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until ``shutdown`` is set, then drain: stop accepting, let in-flight requests finish (up to
    ``drain_timeout``), end every session and its process. Binds first (ListenError), then starts the server
    processes; reports the bound port once ready."""
    listeners = await bind(settings)
    metrics = Metrics()
    table = SessionTable(settings, launcher, metrics)
    app = AdapterApp(settings, table, metrics)
    server = HttpServer(app.handle, settings)
    async with trio.open_nursery() as nursery:
        tracing = None
        if settings.tracing.traces_url:  # imported only when asked for: opentelemetry is an optional extra
            from kmcp.adapter.tracing import RequestTracing

            tracing = RequestTracing(settings.tracing, metrics)
            metrics.on_response = tracing.record
            nursery.start_soon(tracing.export)
        await nursery.start(table.run)
        if settings.server_era != "off":
            from kmcp.adapter.sessions.pool import StatelessPool

            app.streamable.pool = StatelessPool(settings, launcher)
            await nursery.start(app.streamable.pool.run)
        async with trio.open_nursery() as http:
            port = await http.start(server.serve, listeners)
            task_status.started(port)
            await shutdown.wait()
            app.stop.set()
            server.drain()
        if app.forwarder is not None:
            await app.forwarder.aclose()
        table.end_all("the adapter is shutting down")
        with trio.move_on_after(settings.kill_grace * 2 + 1):
            await table.wait_empty()
        if tracing is not None:  # the last batch
            tracing.close()
            with trio.move_on_after(settings.drain_timeout):
                await tracing.exported.wait()
        nursery.cancel_scope.cancel()
