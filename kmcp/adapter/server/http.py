"""A small HTTP/1.1 server on h11 and trio: the I/O layer under the MCP transports.

One request at a time per connection (pipelined requests wait in h11's buffer), keep-alive, chunked request
bodies, streamed (chunked) responses for SSE, a body limit (413), a deadline for the request head (slowloris
clients are dropped), an idle keep-alive timeout, and a graceful drain: stop accepting, close idle connections,
let in-flight exchanges finish, then cancel what is left.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import h11
import msgspec
import trio

from kmcp.adapter.protocol import httpfast
from kmcp.adapter.settings import AdapterSettings

Headers = list[tuple[bytes, bytes]]

_REASONS = {200: b"OK", 202: b"Accepted", 204: b"No Content", 400: b"Bad Request", 403: b"Forbidden",
            404: b"Not Found", 405: b"Method Not Allowed", 406: b"Not Acceptable", 408: b"Request Timeout",
            409: b"Conflict", 426: b"Upgrade Required", 413: b"Content Too Large", 415: b"Unsupported Media Type",
            500: b"Internal Server Error", 503: b"Service Unavailable"}


class Request(msgspec.Struct, gc=False):
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

    def __init__(self, connection: _Connection, *, head: bool = False) -> None:
        self._connection = connection
        self._head = head  # a HEAD request: the answer has headers (Content-Length too) but no body
        self.status = 0
        self.started = False
        self.ended = False

    async def respond(self, status: int, headers: Headers, body: bytes = b"") -> None:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        self._begin(status)
        await self._connection.write(self._headers(headers), b"" if self._head else body, end=True)
        self.ended = True

    async def start(self, status: int, headers: Headers) -> None:
        """Begin a streamed body (chunked on HTTP/1.1)."""
        self._begin(status)
        await self._connection.write(self._headers(headers))

    async def send(self, data: bytes) -> None:
        await self._connection.write(None, data)

    def close_within(self, seconds: float) -> None:
        """Close the connection at most ``seconds`` from now, even mid-write: for a stream whose source ended
        (its session, say), so a client that does not read cannot keep it, and what it holds, any longer."""
        self._connection.close_deadline = min(self._connection.close_deadline, trio.current_time() + seconds)

    async def end(self) -> None:
        if not self.ended:
            self.ended = True
            await self._connection.write(None, b"", end=True)

    async def switch_protocols(self, headers: Headers) -> trio.abc.Stream:
        """Answer 101 Switching Protocols with ``headers`` and hand the raw connection to another protocol (a
        WebSocket). The returned stream yields first what the client sent after the request head (frames in
        the same packet as the upgrade request), and its writes give up on a client that stops reading like
        every response's (``send_timeout``). HTTP is done on this connection afterwards."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = self.ended = True
        self.status = 101
        return await self._connection.switch_protocols(headers)

    def _begin(self, status: int) -> None:
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self.status = status

    def _headers(self, headers: Headers) -> tuple[int, Headers]:
        if self._connection.server.draining.is_set():
            headers = [*headers, (b"connection", b"close")]
        return self.status, headers


Handler = Callable[[Request, Responder], Awaitable[None]]


@dataclass
class HttpServer:
    """Accepts connections and runs ``handler`` for each request. ``drain()`` ends it gracefully."""

    handler: Handler
    settings: AdapterSettings
    draining: trio.Event = field(default_factory=trio.Event)
    active_exchanges: int = 0
    _connections: set[_Connection] = field(default_factory=set)
    _quiet: trio.Event = field(default_factory=trio.Event)

    async def serve(self, listeners: list[trio.SocketListener] | None = None, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on ``listeners`` (bound by the caller, so a busy port fails before anything starts) or on
        settings.host:settings.port; reports the bound port; returns after a drain."""
        if listeners is None:
            listeners = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host or None)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as acceptors:
                for listener in listeners:
                    acceptors.start_soon(self._accept_loop, listener, connections)
                acceptors.start_soon(self._close_idle_connections)
                task_status.started(port)
                await self.draining.wait()
                acceptors.cancel_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            for connection in list(self._connections):
                if connection.idle_deadline < math.inf:
                    connection.close()
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

    async def _close_idle_connections(self) -> None:
        """Close keep-alive connections idle past their deadline. One sweep for all of them, a few times per
        timeout, rather than a timer per request."""
        interval = min(1.0, self.settings.keepalive_timeout / 4)
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            idle = []
            for connection in list(self._connections):
                if connection.idle_deadline <= now or connection.close_deadline <= now:
                    connection.close()
                elif connection.idle_deadline < math.inf:
                    idle.append(connection)
            excess = len(idle) - self.settings.max_idle_connections
            if excess > 0:  # too many idle connections (a client opening and parking them): the oldest go first
                idle.sort(key=lambda c: c.idle_deadline)
                for connection in idle[:excess]:
                    connection.close()

    async def _connection(self, stream: trio.SocketStream) -> None:
        connection = _Connection(self, stream)
        self._connections.add(connection)
        try:
            await connection.run()
        except Exception as error:  # one connection's failure must not end the server
            if not is_disconnect(error):
                traceback.print_exception(error, file=sys.stderr)
        finally:
            self._connections.discard(connection)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    def _exchange_started(self) -> None:
        self.active_exchanges += 1

    def _exchange_finished(self) -> None:
        self.active_exchanges -= 1
        if not self.active_exchanges:
            self._quiet.set()


class _Connection:
    """One client connection. A reader task owns the socket's receive side for the connection's lifetime: it
    appends what arrives to ``buffer`` and, on EOF, cancels the running handler (a client that hangs up ends
    its SSE stream). The connection task reads requests from ``buffer``: the common, plain request through
    :mod:`~kmcp.adapter.protocol.httpfast`, anything else through a fresh ``h11.Connection`` for that exchange."""

    def __init__(self, server: HttpServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.settings = server.settings
        self.fd = stream.socket.fileno()
        self.buffer = bytearray()  # received bytes not yet given to a request (or to h11)
        self.eof = False
        self.h11: h11.Connection | None = None  # only while an exchange runs on the h11 path
        self._h11_eof = False  # h11 was told about the EOF
        self.client_gone = False
        self.hijacked = False
        self._waiter: trio.lowlevel.Task | None = None  # the connection task, parked in _more
        self._room = trio.Event()
        self._waiting = False  # the connection task waits for bytes: the reader reads past _READ_AHEAD
        self._reader_scope = trio.CancelScope()
        self._in_handler = False
        self.idle_deadline = math.inf  # while waiting for the next request: when the server may close it
        self.close_deadline = math.inf  # Responder.close_within: when the server closes it regardless
        self._nursery: trio.Nursery | None = None
        # Fast-path framing of the current response.
        self._chunked = False
        self._left = 0
        self._close_after = False

    # -- receiving ---------------------------------------------------------------------------------------------

    async def _reader(self, scope: trio.CancelScope) -> None:
        with scope:
            while not self.eof:
                if len(self.buffer) > _READ_AHEAD and not self._waiting:
                    # A client far ahead of its answers: read on when the connection task wants more.
                    self._room = trio.Event()
                    await self._room.wait()
                    continue
                await trio.lowlevel.wait_readable(self.fd)
                try:
                    data = os.read(self.fd, 65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    self.buffer += data
                else:
                    self.eof = True
                    if self._in_handler:  # the client hung up: stop its handler (and the connection)
                        self.client_gone = True
                        self.close()
                self._wake()

    def close(self) -> None:
        """End the connection (the exchange loop and the reader) at their next checkpoint."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _start_reader(self) -> None:
        assert self._nursery is not None
        self._reader_scope = trio.CancelScope()
        self._nursery.start_soon(self._reader, self._reader_scope)

    async def _more(self) -> None:
        """Wait until the reader adds bytes or sees the end of the stream."""
        if self.eof:
            raise ClientGone()
        self._waiting = True
        self._room.set()
        self._waiter = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        try:
            await trio.lowlevel.wait_task_rescheduled(abort)  # parked directly: no Event per wait
        finally:
            self._waiting = False

    def _wake(self) -> None:
        if self._waiter is not None:
            trio.lowlevel.reschedule(self._waiter)
            self._waiter = None

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        if len(self.buffer) <= _READ_AHEAD:
            self._room.set()
        return data

    # -- sending -----------------------------------------------------------------------------------------------

    async def _send(self, payload: bytes | bytearray | memoryview) -> None:
        """Write to the socket: at once when the kernel takes it all (no scheduler round trip), else wait."""
        try:
            sent = os.write(self.fd, payload)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            raise ClientGone() from error
        if sent < len(payload):
            await self._send_rest(memoryview(payload)[sent:])

    async def _send_rest(self, rest: memoryview) -> None:
        """The kernel's send buffer is full: wait for room, but give up on a client that takes no bytes at all
        for ``send_timeout`` (one that never reads would otherwise hold its response, and the session behind
        it, forever). Only here, off the hot path, is there a timer."""
        progress = trio.current_time()
        while rest:
            with trio.move_on_after(self.settings.send_timeout):
                await trio.lowlevel.wait_writable(self.fd)
            try:
                sent = os.write(self.fd, rest)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                raise ClientGone() from error
            now = trio.current_time()
            if sent:
                progress = now
                rest = rest[sent:]
            elif now >= progress + self.settings.send_timeout:
                raise ClientGone("the client stopped reading")

    async def write(self, head: tuple[int, Headers] | None, data: bytes = b"", *, end: bool = False) -> None:
        if self.h11 is not None:
            parts = []
            if head is not None:
                status, headers = head
                parts.append(self.h11.send(h11.Response(status_code=status, headers=headers,
                                                        reason=_REASONS.get(status, b""))))
            if data:
                parts.append(self.h11.send(h11.Data(data=data)))
            if end:
                parts.append(self.h11.send(h11.EndOfMessage()))
            payload = b"".join(p for p in parts if p)
        else:
            payload = self._frame(head, data, end)
        if payload:
            await self._send(payload)

    def _frame(self, head: tuple[int, Headers] | None, data: bytes, end: bool) -> bytes:
        out = b""
        if head is not None:
            status, headers = head
            out, length, close = httpfast.response_head(status, _REASONS.get(status, b""), headers)
            self._close_after = self._close_after or close
            self._chunked = length is None
            self._left = length or 0
        if self._chunked:
            out += httpfast.chunk(data)
            if end:
                out += httpfast.LAST_CHUNK
        else:
            if len(data) > self._left:
                raise RuntimeError("response body longer than its content-length")
            self._left -= len(data)
            out += data
            if end and self._left:
                raise RuntimeError("response body shorter than its content-length")
        return out

    async def switch_protocols(self, headers: Headers) -> trio.abc.Stream:
        self.hijacked = True
        self._reader_scope.cancel()  # the new protocol reads the socket from now on
        # What came after the request head: in h11's buffer (fed to it) and in ours (not yet fed).
        pending = self.h11.trailing_data[0] if self.h11 is not None else b""
        leftover = pending + self._take(len(self.buffer))
        head = b"".join([b"HTTP/1.1 101 Switching Protocols\r\n", *(name + b": " + value + b"\r\n"
                                                                    for name, value in headers), b"\r\n"])
        await self._send(head)
        return PrefixedStream(leftover, self.stream, self._send)

    async def _error(self, status: int, message: str) -> None:
        body = message.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        with contextlib.suppress(ClientGone, trio.BrokenResourceError, trio.ClosedResourceError,
                                 h11.LocalProtocolError):
            if self.h11 is None:
                await self._send(httpfast.response_head(status, _REASONS.get(status, b""), headers)[0] + body)
            elif self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self.write((status, headers), body, end=True)

    def _body_deadline(self, started: float, received: int) -> float:
        """A body must arrive within body_timeout, plus a second per min_body_rate bytes received: a client
        sending a large body steadily has time for it, one trickling bytes (slowloris) does not."""
        return started + self.settings.body_timeout + received / max(self.settings.min_body_rate, 1)

    # -- the exchange loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._start_reader()
            with contextlib.suppress(ClientGone):
                await self._serve()
            nursery.cancel_scope.cancel()

    async def _wait_for_request_start(self) -> bool:
        """Wait for the first byte of the next request. The server closes the connection while it waits here
        past the keep-alive timeout, or when it drains."""
        if self.buffer:
            return True
        if self.server.draining.is_set():
            return False
        self.idle_deadline = trio.current_time() + self.settings.keepalive_timeout
        try:
            while not self.buffer and not self.eof:
                await self._more()
        finally:
            self.idle_deadline = math.inf
        return bool(self.buffer)

    async def _serve(self) -> None:
        while True:
            if not await self._wait_for_request_start():
                return
            request = await self._read_fast()
            if isinstance(request, _Fallback):
                await self._exchange_h11()
                if self.h11 is not None:
                    return  # the h11 exchange ended the connection
                continue
            if request is None:
                return
            self._close_after = False
            if not await self._exchange(request):
                return
            if self._close_after or self.server.draining.is_set():
                return

    async def _read_fast(self) -> Request | _Fallback | None:
        """The next request if it is in the fast path's subset; ``_FALLBACK`` when h11 must read it; None after
        answering an error (or when the client left) and the connection should close."""
        head_end = httpfast.find_head_end(self.buffer)
        if head_end == -1:
            with trio.move_on_after(self.settings.header_timeout):
                while (head_end := httpfast.find_head_end(self.buffer)) == -1:
                    if len(self.buffer) > self.settings.max_header_bytes:
                        return _FALLBACK  # h11 answers 431
                    await self._more()
            if head_end == -1:
                await self._error(408, "request head not received in time")
                return None
        if head_end == -2 or head_end > self.settings.max_header_bytes:
            return _FALLBACK
        head = httpfast.parse_head(bytes(self.buffer[:head_end]))
        if head is None or head.content_length > self.settings.max_body_bytes:
            return _FALLBACK
        size = head_end + head.content_length
        if len(self.buffer) < size:
            started = trio.current_time()
            with trio.move_on_after(self.settings.body_timeout) as scope:
                while len(self.buffer) < size:
                    await self._more()
                    scope.deadline = self._body_deadline(started, len(self.buffer) - head_end)
            if len(self.buffer) < size:
                await self._error(408, "request body not received in time")
                return None
        data = self._take(size)
        return _request(head.method, head.target, head.headers, data[head_end:], b"1.1")

    async def _exchange(self, request: Request) -> bool:
        """Run the handler for one request; whether the connection can carry another."""
        responder = Responder(self, head=request.method == "HEAD")
        self.server._exchange_started()
        self.client_gone = False
        try:
            try:
                self._in_handler = True
                if self.eof:  # the client hung up right after its request
                    self.client_gone = True
                    self.close()
                await self.server.handler(request, responder)
            except Exception as error:
                if is_disconnect(error) or responder.started:
                    raise
                traceback.print_exception(error, file=sys.stderr)
                await responder.respond(500, [(b"content-type", b"text/plain"), (b"connection", b"close")],
                                        b"internal error")
                return False
            finally:
                self._in_handler = False
            if self.client_gone or self.hijacked:
                return False
            if not responder.started:
                await responder.respond(500, [(b"content-type", b"text/plain")], b"no response")
            await responder.end()
        finally:
            self.close_deadline = math.inf
            self.server._exchange_finished()
        return True

    # -- the h11 path ------------------------------------------------------------------------------------------

    async def _exchange_h11(self) -> None:
        """One exchange through h11 (anything outside the fast path's subset). Leaves ``self.h11`` None when the
        connection can carry another request; the bytes h11 did not use go back to ``buffer``."""
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.settings.max_header_bytes)
        self._h11_eof = False
        request = await self._read_request()
        if request is None:
            return
        upgrade = "upgrade" in request.headers
        if upgrade:  # an upgraded connection's bytes are not ours: stop reading until it is known
            self._reader_scope.cancel()
        if not await self._exchange(request):
            return
        if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            # The client did not finish its body (a handler that answered early), or asked to close.
            return
        if self.server.draining.is_set():
            return
        self.h11.start_next_cycle()
        leftover = self.h11.trailing_data[0]
        self.buffer[:0] = leftover
        self.h11 = None
        if upgrade:
            self._start_reader()

    async def _next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        assert self.h11 is not None
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if not self.buffer and not self.eof:
                    await self._more()
                if self.buffer:
                    self.h11.receive_data(self._take(len(self.buffer)))
                elif self.eof and not self._h11_eof:
                    self._h11_eof = True
                    self.h11.receive_data(b"")
                continue
            return event

    async def _read_request(self) -> Request | None:
        assert self.h11 is not None
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
        assert self.h11 is not None
        headers: dict[str, str] = {}
        for raw_name, raw_value in head.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "transfer-encoding" in headers and "content-length" in headers:
            # Two framings: a proxy in front may have read the other one (request smuggling). RFC 9112 §6.1 lets a
            # server refuse such a request, and it must close the connection either way.
            await self._error(400, "bad request: both Content-Length and Transfer-Encoding")
            return None
        limit = self.settings.max_body_bytes
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._error(413, f"request body larger than {limit} bytes")
            return None
        if self.h11.they_are_waiting_for_100_continue:
            await self._send(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks: list[bytes] = []
        size = 0
        started = trio.current_time()
        with trio.move_on_after(self.settings.body_timeout) as scope:
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    scope.deadline = self._body_deadline(started, size)
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
        return _request(head.method.decode("ascii"), head.target.decode("latin-1"), headers, b"".join(chunks),
                        head.http_version)


class _Fallback:
    """The request is for h11 to read."""


_FALLBACK = _Fallback()
_READ_AHEAD = 1 << 20  # bytes a pipelining client may send ahead of the request being answered


def _request(method: str, target: str, headers: dict[str, str], body: bytes, http_version: bytes) -> Request:
    if "?" in target or "#" in target or not target.startswith("/"):
        split = urlsplit(target)
        return Request(method=method, target=target, path=split.path or "/", query=dict(parse_qsl(split.query)),
                       headers=headers, body=body, http_version=http_version)
    return Request(method=method, target=target, path=target, query={}, headers=headers, body=body,
                   http_version=http_version)


class PrefixedStream(trio.abc.Stream):
    """A stream that yields ``prefix`` before reading from ``stream`` (bytes an earlier parser consumed);
    ``send``, if given, writes in place of ``stream.send_all``."""

    def __init__(self, prefix: bytes, stream: trio.abc.Stream,
                 send: Callable[[bytes | bytearray | memoryview], Awaitable[None]] | None = None) -> None:
        self._prefix = prefix
        self._stream = stream
        self._send = send

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._send is not None:
            await self._send(data)
        else:
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
