"""Pieces every transport shares: Origin and Accept checks, JSON-RPC error answers, and the SSE pump."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import trio

from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.server.http import Headers, Request, Responder, sse_event
from kmcp.adapter.sessions.runtime import Inbox, Session, SessionTable, TooManySessions
from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import LaunchError

if TYPE_CHECKING:
    from kmcp.adapter.server.forwarding import Forwarder


class Transport:
    """What every transport (Streamable HTTP, legacy SSE, WebSocket) works with: the knobs, the session table,
    and the event that says the server is draining. ``forwarder`` (replicas only) takes requests for sessions
    another replica holds."""

    forwarder: Forwarder | None = None

    def __init__(self, settings: AdapterSettings, table: SessionTable, stop: trio.Event) -> None:
        self.settings = settings
        self.table = table
        self.stop = stop

    async def open_session(self, responder: Responder, transport: str, *, json_rpc: bool) -> Session | None:
        """A new session with its server process, or None after answering why not: 503 while draining or at the
        session limit (with Retry-After), 500 when the server cannot start; as a JSON-RPC error (``json_rpc``)
        or as text."""
        refusal: tuple[int, str, Headers]
        if self.stop.is_set():
            refusal = 503, "Service Unavailable: shutting down", [(b"retry-after", b"1")]
        else:
            try:
                return await self.table.create(transport)
            except TooManySessions:
                refusal = (503, f"Service Unavailable: too many sessions (max {self.settings.max_sessions})",
                           [(b"retry-after", b"5")])
            except LaunchError as error:
                refusal = 500, f"cannot start the MCP server: {error}", []
        status, message, headers = refusal
        if json_rpc:
            await jsonrpc_error(responder, status, jsonrpc.INTERNAL_ERROR, message, headers=headers)
        else:
            await text(responder, status, message, headers)
        return None

JSON = b"application/json"
EVENT_STREAM = b"text/event-stream"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
STREAM_FLUSH_GRACE = 5.0  # seconds a closed stream has to write what is queued (see pump_sse)
SSE_HEADERS: Headers = [(b"content-type", EVENT_STREAM), (b"cache-control", b"no-cache, no-transform"),
                        (b"x-accel-buffering", b"no")]


def origin_allowed(request: Request, settings: AdapterSettings) -> bool:
    """DNS-rebinding protection: a browser's Origin must be local or allow-listed. No Origin: not a browser."""
    origin = request.header("origin")
    if not origin:
        return True
    if origin in settings.allowed_origins or "*" in settings.allowed_origins:
        return True
    if settings.allow_localhost_origins:
        try:
            host = urlsplit(origin).hostname
        except ValueError:
            return False
        return host in LOCAL_HOSTS
    return False


def media_types(value: str) -> set[str]:
    return {part.split(";", 1)[0].strip().lower() for part in value.split(",") if part.strip()}


def accepts(request: Request) -> tuple[bool, bool]:
    """(accepts JSON, accepts SSE). A missing Accept header accepts anything."""
    value = request.header("accept")
    if not value:
        return True, True
    types = media_types(value)
    wildcard = "*/*" in types
    return (wildcard or "application/json" in types or "application/*" in types,
            wildcard or "text/event-stream" in types or "text/*" in types)


def is_json_content(request: Request) -> bool:
    return request.header("content-type").split(";", 1)[0].strip().lower() == "application/json"


async def text(responder: Responder, status: int, message: str, headers: Headers | None = None) -> None:
    await responder.respond(status, [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])],
                            message.encode())


async def jsonrpc_error(responder: Responder, status: int, code: int, message: str,
                        id: jsonrpc.RequestId | None = None, headers: Headers | None = None) -> None:
    await responder.respond(status, [(b"content-type", JSON), *(headers or [])],
                            jsonrpc.error_response(id, code, message))


async def pump_sse(responder: Responder, channel: Inbox, settings: AdapterSettings,
                   stop: trio.Event, *, end_on_last: bool, event: str | None = None) -> None:
    """Write stream items as SSE events, with keep-alive comments, until the stream is done, the channel is
    closed (session ended, or replaced by a newer listener), or ``stop`` is set (drain). Once the channel is
    closed, what is queued has STREAM_FLUSH_GRACE seconds to reach the client before the connection is closed,
    so a client that does not read cannot hold an ended stream open."""
    channel.on_close = lambda: responder.close_within(STREAM_FLUSH_GRACE)
    try:
        await _pump_sse(responder, channel, settings, stop, end_on_last=end_on_last, event=event)
    finally:
        channel.on_close = None


async def _pump_sse(responder: Responder, channel: Inbox, settings: AdapterSettings,
                    stop: trio.Event, *, end_on_last: bool, event: str | None) -> None:
    quiet = _Quiet(trio.current_time())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on, stop, nursery.cancel_scope)
        nursery.start_soon(_keep_alive, responder, settings.sse_keepalive_interval, quiet)
        while True:
            try:
                item = await channel.receive()
            except trio.EndOfChannel:
                break
            batch = [sse_event(item.data, item.event_id, event)]
            done = end_on_last and item.last
            while not done:  # write whatever else is already queued in one go
                try:
                    item = channel.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(sse_event(item.data, item.event_id, event))
                done = end_on_last and item.last
            if quiet.writing:  # a keep-alive comment is still being written (the client's buffer is full)
                quiet.written = trio.Event()
                await quiet.written.wait()
            await quiet.write(responder, b"".join(batch))
            if done:
                break
        nursery.cancel_scope.cancel()


class _Quiet:
    """When the stream last wrote, and whether a write is under way: what the keep-alive task looks at, so the
    events themselves need no timer (a cancel scope per event was a visible share of an SSE call)."""

    __slots__ = ("since", "writing", "written")

    def __init__(self, since: float) -> None:
        self.since = since
        self.writing = False
        self.written: trio.Event | None = None  # set when a blocked keep-alive write ends

    async def write(self, responder: Responder, data: bytes) -> None:
        self.writing = True
        try:
            await responder.send(data)
        finally:
            self.writing = False
            self.since = trio.current_time()
            if self.written is not None:
                self.written.set()
                self.written = None


async def _keep_alive(responder: Responder, interval: float, quiet: _Quiet) -> None:
    """A comment after ``interval`` seconds without an event (proxies close silent streams). A write under way,
    even a blocked one, counts as activity, and a comment never starts inside an event."""
    while True:
        await trio.sleep_until(quiet.since + interval)
        now = trio.current_time()
        if quiet.writing:
            quiet.since = now
        elif now >= quiet.since + interval:
            await quiet.write(responder, b": keep-alive\n\n")


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
