"""A small HTTP/1.1 server on h11 and trio: the I/O layer under the MCP transports.

One request at a time per connection (pipelined requests wait in h11's buffer), keep-alive, chunked request
bodies, streamed (chunked) responses for SSE, a body limit (413), a deadline for the request head (slowloris
clients are dropped), an idle keep-alive timeout, and a graceful drain: stop accepting, close idle connections,
let in-flight exchanges finish, then cancel what is left.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import h11
import trio

from kmcp.adapter.settings import AdapterSettings

Headers = list[tuple[bytes, bytes]]

_REASONS = {200: b"OK", 202: b"Accepted", 204: b"No Content", 400: b"Bad Request", 403: b"Forbidden",
            404: b"Not Found", 405: b"Method Not Allowed", 406: b"Not Acceptable", 408: b"Request Timeout",
            409: b"Conflict", 426: b"Upgrade Required", 413: b"Content Too Large", 415: b"Unsupported Media Type",
            500: b"Internal Server Error", 503: b"Service Unavailable"}


@dataclass(slots=True)
class Request:
    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    http_version: bytes = b"1.1"

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


class ClientGone(Exception):
    """The client closed the connection while we were answering."""


class Responder:
    """The answer to one request: either ``respond`` at once, or ``start`` / ``send``* / ``end`` for a stream."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self.started = False
        self.ended = False

    async def respond(self, status: int, headers: Headers, body: bytes = b"") -> None:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await self._connection.write(self._head(status, headers), body, end=True)
        self.ended = True

    async def start(self, status: int, headers: Headers) -> None:
        """Begin a streamed body (chunked on HTTP/1.1)."""
        await self._connection.write(self._head(status, headers))

    async def send(self, data: bytes) -> None:
        await self._connection.write(None, data)

    async def end(self) -> None:
        if not self.ended:
            self.ended = True
            await self._connection.write(None, b"", end=True)

    def take_over(self, request: Request) -> trio.abc.Stream:
        """Hand the raw connection to another protocol (a WebSocket upgrade). The returned stream replays the
        request head first, so a library that reads the handshake itself sees it; HTTP is done on this
        connection afterwards."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = self.ended = True
        self.status = 101
        return self._connection.take_over(request)

    def _head(self, status: int, headers: Headers) -> h11.Response:
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self.status = status
        if self._connection.server.draining.is_set():
            headers = [*headers, (b"connection", b"close")]
        return h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))


Handler = Callable[[Request, Responder], Awaitable[None]]


@dataclass
class HttpServer:
    """Accepts connections and runs ``handler`` for each request. ``drain()`` ends it gracefully."""

    handler: Handler
    settings: AdapterSettings
    draining: trio.Event = field(default_factory=trio.Event)
    active_exchanges: int = 0
    _idle_scopes: set[trio.CancelScope] = field(default_factory=set)
    _quiet: trio.Event = field(default_factory=trio.Event)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on settings.host:settings.port; reports the bound port; returns after a drain."""
        host = self.settings.host or None
        listeners = await trio.open_tcp_listeners(self.settings.port, host=host)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as acceptors:
                for listener in listeners:
                    acceptors.start_soon(self._accept_loop, listener, connections)
                task_status.started(port)
                await self.draining.wait()
                acceptors.cancel_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            for scope in list(self._idle_scopes):
                scope.cancel()
            with trio.move_on_after(self.settings.drain_timeout):
                while self.active_exchanges:
                    self._quiet = trio.Event()
                    await self._quiet.wait()
            connections.cancel_scope.cancel()

    def drain(self) -> None:
        self.draining.set()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError:  # EMFILE and friends: back off instead of spinning
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        connection = _Connection(self, stream)
        try:
            await connection.run()
        except Exception as error:  # one connection's failure must not end the server
            if not is_disconnect(error):
                traceback.print_exception(error, file=sys.stderr)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    def _exchange_started(self) -> None:
        self.active_exchanges += 1

    def _exchange_finished(self) -> None:
        self.active_exchanges -= 1
        if not self.active_exchanges:
            self._quiet.set()


class _Connection:
    def __init__(self, server: HttpServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.settings = server.settings
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.settings.max_header_bytes)
        self.client_gone = False
        self.hijacked = False

    async def write(self, head: h11.Response | None, data: bytes = b"", *, end: bool = False) -> None:
        parts = []
        if head is not None:
            parts.append(self.h11.send(head))
        if data:
            parts.append(self.h11.send(h11.Data(data=data)))
        if end:
            parts.append(self.h11.send(h11.EndOfMessage()))
        payload = b"".join(p for p in parts if p)
        if payload:
            try:
                await self.stream.send_all(payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise ClientGone() from error

    def take_over(self, request: Request) -> trio.abc.Stream:
        self.hijacked = True
        head = [f"{request.method} {request.target} HTTP/{request.http_version.decode()}\r\n".encode("latin-1")]
        head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in request.headers.items()]
        head.append(b"\r\n")
        return PrefixedStream(b"".join(head) + self.h11.trailing_data[0], self.stream)

    async def _receive(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.h11.receive_data(data)
        return bool(data)

    async def _next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                await self._receive()
                continue
            return event

    async def _wait_for_request_start(self) -> bool:
        """Wait (idle timeout, or until a drain) for the first byte of the next request."""
        if self.h11.trailing_data[0]:
            return True
        scope = trio.CancelScope(deadline=trio.current_time() + self.settings.keepalive_timeout)
        self.server._idle_scopes.add(scope)
        try:
            with scope:
                if self.server.draining.is_set():
                    return False
                return await self._receive()
        finally:
            self.server._idle_scopes.discard(scope)
        return False

    async def _watch_disconnect(self, scope: trio.CancelScope) -> None:
        """While a handler runs, notice the client hanging up (and stop the handler, e.g. an SSE stream).
        Bytes that arrive instead are a pipelined request: keep them for h11 and stop watching."""
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            data = b""
        if data:
            self.h11.receive_data(data)
            return
        self.client_gone = True
        scope.cancel()

    async def _error(self, status: int, message: str) -> None:
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = message.encode()
            response = h11.Response(status_code=status, reason=_REASONS.get(status, b""), headers=[
                (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")])
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                await self.stream.send_all(self.h11.send(response) + (self.h11.send(h11.Data(data=body)) or b"")
                                           + (self.h11.send(h11.EndOfMessage()) or b""))

    async def run(self) -> None:
        while True:
            if not await self._wait_for_request_start():
                return
            request = await self._read_request()
            if request is None:
                return
            responder = Responder(self)
            self.server._exchange_started()
            self.client_gone = False
            try:
                try:
                    async with trio.open_nursery() as nursery:
                        if "upgrade" not in request.headers:  # an upgraded connection's bytes are not ours
                            nursery.start_soon(self._watch_disconnect, nursery.cancel_scope)
                        await self.server.handler(request, responder)
                        nursery.cancel_scope.cancel()
                except Exception as error:
                    if is_disconnect(error) or responder.started:
                        raise
                    traceback.print_exception(error, file=sys.stderr)
                    await responder.respond(500, [(b"content-type", b"text/plain"), (b"connection", b"close")],
                                            b"internal error")
                    return
                if self.client_gone or self.hijacked:
                    return
                if not responder.started:
                    await responder.respond(500, [(b"content-type", b"text/plain")], b"no response")
                await responder.end()
            finally:
                self.server._exchange_finished()
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                # The client did not finish its body (a handler that answered early), or asked to close.
                return
            if self.server.draining.is_set():
                return
            self.h11.start_next_cycle()

    async def _read_request(self) -> Request | None:
        try:
            with trio.move_on_after(self.settings.header_timeout):
                event = await self._next_event()
                if not isinstance(event, h11.Request):
                    return None  # ConnectionClosed: the client went away between requests
                return await self._read_body(event)
            await self._error(408, "request head not received in time")
            return None
        except h11.RemoteProtocolError as error:
            await self._error(error.error_status_hint, f"bad request: {error}")
            return None

    async def _read_body(self, head: h11.Request) -> Request | None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in head.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        limit = self.settings.max_body_bytes
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._error(413, f"request body larger than {limit} bytes")
            return None
        if self.h11.they_are_waiting_for_100_continue:
            await self.stream.send_all(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks: list[bytes] = []
        size = 0
        with trio.move_on_after(self.settings.body_timeout) as scope:
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > limit:
                        await self._error(413, f"request body larger than {limit} bytes")
                        return None
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return None
        if scope.cancelled_caught:
            await self._error(408, "request body not received in time")
            return None
        target = head.target.decode("latin-1")
        split = urlsplit(target)
        return Request(method=head.method.decode("ascii"), target=target, path=split.path or "/",
                       query=dict(parse_qsl(split.query)), headers=headers, body=b"".join(chunks),
                       http_version=head.http_version)


class PrefixedStream(trio.abc.Stream):
    """A stream that yields ``prefix`` before reading from ``stream`` (bytes an earlier parser consumed)."""

    def __init__(self, prefix: bytes, stream: trio.abc.Stream) -> None:
        self._prefix = prefix
        self._stream = stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self._stream, trio.abc.HalfCloseableStream):
            await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


def is_disconnect(error: BaseException) -> bool:
    """Whether an exception (or every leaf of an exception group) just means the peer went away."""
    if isinstance(error, BaseExceptionGroup):
        return all(is_disconnect(inner) for inner in error.exceptions)
    return isinstance(error, trio.BrokenResourceError | trio.ClosedResourceError | ClientGone | OSError)


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port``, ``:port`` (all IPv4 interfaces) or ``[v6]:port``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {value!r}: expected HOST:PORT or :PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def sse_event(data: bytes, event_id: str | None = None, event: str | None = None) -> bytes:
    """One SSE event; ``data`` must not contain newlines (JSON from msgspec never does)."""
    parts = []
    if event is not None:
        parts.append(b"event: " + event.encode() + b"\n")
    if event_id is not None:
        parts.append(b"id: " + event_id.encode() + b"\n")
    if b"\n" in data:
        parts.append(b"".join(b"data: " + line + b"\n" for line in data.split(b"\n")))
    else:
        parts.append(b"data: " + data + b"\n")
    parts.append(b"\n")
    return b"".join(parts)
