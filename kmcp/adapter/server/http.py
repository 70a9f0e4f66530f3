"""A small HTTP/1.1 server on trio: the I/O layer under the MCP transports and the controller's probe and
metrics ports. The parsing and framing are sans-IO (:mod:`~kmcp.adapter.protocol.http11`); this is the shell.

One request at a time per connection (pipelined requests wait in the parser's buffer), keep-alive, chunked request
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from kmcp.adapter.protocol import http11
from kmcp.adapter.protocol.http11 import Headers, Request

__all__ = ["ClientGone", "Handler", "Headers", "HttpLimits", "HttpServer", "PrefixedStream", "Request", "Responder",
           "is_disconnect", "parse_listen", "sse_event"]


class HttpLimits(Protocol):
    """What the server needs of its settings (the adapter's AdapterSettings, the controller's probe ports')."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def header_timeout(self) -> float: ...
    @property
    def body_timeout(self) -> float: ...
    @property
    def min_body_rate(self) -> int: ...
    @property
    def keepalive_timeout(self) -> float: ...
    @property
    def max_idle_connections(self) -> int: ...
    @property
    def send_timeout(self) -> float: ...
    @property
    def drain_timeout(self) -> float: ...


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
        """Begin a streamed body (chunked on HTTP/1.1); from now on a client that hangs up ends it."""
        self._begin(status)
        self._connection.watch_for_hangup()
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
    settings: HttpLimits
    draining: trio.Event = field(default_factory=trio.Event)
    active_exchanges: int = 0
    _connections: set[_Connection] = field(default_factory=set)
    _quiet: trio.Event = field(default_factory=trio.Event)

    async def serve(self, listeners: Sequence[trio.abc.Listener[Any]] | None = None, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on ``listeners`` (bound by the caller, so a busy port fails before anything starts; TCP, or TLS
        over TCP) or on settings.host:settings.port; reports the bound port; returns after a drain."""
        if listeners is None:
            listeners = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host or None)
        port = _bound_port(listeners[0])
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

    async def _accept_loop(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError:  # EMFILE and friends: back off instead of spinning
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._connection, stream)

    async def _close_idle_connections(self) -> None:
        """Close keep-alive connections idle past their deadline, and give a handler still running since the
        last sweep a reader (so a hang-up cancels it). One sweep for all of them, a few times per timeout, rather
        than a timer per request."""
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
                elif connection.in_handler:
                    if connection.swept_exchange == connection.exchanges:  # the same handler a sweep ago
                        connection.watch_for_hangup()
                    connection.swept_exchange = connection.exchanges
            excess = len(idle) - self.settings.max_idle_connections
            if excess > 0:  # too many idle connections (a client opening and parking them): the oldest go first
                idle.sort(key=lambda c: c.idle_deadline)
                for connection in idle[:excess]:
                    connection.close()

    async def _connection(self, stream: trio.abc.Stream) -> None:
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
    """One client connection: the trio shell around a sans-IO :class:`~kmcp.adapter.protocol.http11.
    ServerConnection`. The connection task asks the parser for requests, reads the socket itself when the parser
    needs more, runs the handler and sends the framed answer. While a handler runs nobody reads, until the
    answer is a stream (SSE) or the handler has run for a sweep of the server (about a second): then a reader
    task takes the receive side for the rest of the connection, feeding the parser and, on EOF, cancelling the
    handler (a client that hangs up ends its stream). A quick JSON answer, the hot path, so costs no second task
    and no extra wakeup; a hang-up during one is seen when the answer is written (MCP does not read a
    disconnect as a cancellation anyway). A plain TCP socket is read and written through its fd (a write the
    kernel takes at once needs no scheduler round trip); any other stream (TLS) through ``receive_some`` /
    ``send_all``."""

    def __init__(self, server: HttpServer, stream: trio.abc.Stream) -> None:
        self.server = server
        self.stream = stream
        self.settings = server.settings
        self.fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self.http = http11.ServerConnection(max_header_bytes=self.settings.max_header_bytes,
                                            max_body_bytes=self.settings.max_body_bytes)
        self.client_gone = False
        self.hijacked = False
        self._waiter: trio.lowlevel.Task | None = None  # the connection task, parked in _more
        self._room = trio.Event()
        self._waiting = False  # the connection task waits for bytes: the reader reads past _READ_AHEAD
        self._reader_scope = trio.CancelScope()
        self._reading = False  # a reader task has the receive side (see the class docstring)
        self.in_handler = False
        self.exchanges = 0  # exchanges begun: the server's sweep tells a long handler from a new one by it
        self.swept_exchange = -1  # the exchange the last sweep saw in its handler
        self.idle_deadline = math.inf  # while waiting for the next request: when the server may close it
        self.close_deadline = math.inf  # Responder.close_within: when the server closes it regardless
        self._nursery: trio.Nursery | None = None

    # -- receiving ---------------------------------------------------------------------------------------------

    async def _reader(self, scope: trio.CancelScope) -> None:
        http = self.http
        with scope:
            while not http.eof:
                if len(http.buffer) > _READ_AHEAD and not self._waiting:
                    # A client far ahead of its answers: read on when the connection task wants more.
                    self._room = trio.Event()
                    await self._room.wait()
                    continue
                data = await self._receive()
                http.receive_data(data)
                if not data and self.in_handler:  # the client hung up: stop its handler (and the connection)
                    self.client_gone = True
                    self.close()
                self._wake()

    async def _receive(self) -> bytes:
        """The next bytes from the client; ``b""`` at the end of the stream (or when it broke)."""
        if self.fd < 0:
            try:
                return bytes(await self.stream.receive_some(65536))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return b""  # (a TLS failure arrives as BrokenResourceError)
        while True:
            await trio.lowlevel.wait_readable(self.fd)
            try:
                return os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return b""

    def close(self) -> None:
        """End the connection (the exchange loop and the reader) at their next checkpoint."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def watch_for_hangup(self) -> None:
        """Start the reader (once), unless the connection is being handed to another protocol."""
        if self._reading or self.hijacked or self.http.upgrade or self._nursery is None:
            return
        self._reading = True
        self._reader_scope = trio.CancelScope()
        self._nursery.start_soon(self._reader, self._reader_scope)

    def _stop_reader(self) -> None:
        self._reader_scope.cancel()  # (its wait on the fd is withdrawn at once: the fd is free to wait on)
        self._reading = False

    async def _more(self) -> None:
        """Read more (or wait until the reader has), or see the end of the stream."""
        http = self.http
        if http.eof:
            raise ClientGone()
        if not self._reading:
            http.receive_data(await self._receive())
            return
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

    # -- sending -----------------------------------------------------------------------------------------------

    async def _send(self, payload: bytes | bytearray | memoryview) -> None:
        """Write to the socket: at once when the kernel takes it all (no scheduler round trip), else wait."""
        if self.fd < 0:
            await self._send_stream(payload)
            return
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

    async def _send_stream(self, payload: bytes | bytearray | memoryview) -> None:
        """A stream's write, given up after ``send_timeout`` in all (the probe and metrics ports' answers are
        small: a client that has not taken one in that time is not reading)."""
        with trio.move_on_after(self.settings.send_timeout) as scope:
            try:
                await self.stream.send_all(payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise ClientGone() from error
        if scope.cancelled_caught:
            raise ClientGone("the client stopped reading")

    async def write(self, head: tuple[int, Headers] | None, data: bytes = b"", *, end: bool = False) -> None:
        payload = self.http.send(head, data, end=end)
        if payload:
            await self._send(payload)

    async def switch_protocols(self, headers: Headers) -> trio.abc.Stream:
        self.hijacked = True
        self._stop_reader()  # the new protocol reads the socket from now on
        head, leftover = self.http.switch_protocols(headers)
        await self._send(head)
        return PrefixedStream(leftover, self.stream, self._send)

    async def _error(self, status: int, message: str) -> None:
        with contextlib.suppress(ClientGone, trio.BrokenResourceError, trio.ClosedResourceError):
            if payload := self.http.error(status, message):
                await self._send(payload)

    async def _linger(self) -> None:
        """After an error answer to a request the client is still sending (a body past the limit, a bad head),
        closing at once with its bytes unread makes the kernel reset the connection, and a client still writing
        may lose the answer (a TLS one nearly always). So, like nginx's lingering close: end our side and read
        and drop what comes until the client closes, for at most ``_LINGER_SECONDS`` and ``_LINGER_BYTES``."""
        if isinstance(self.stream, trio.abc.HalfCloseableStream):  # (TLS cannot half-close)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self.stream.send_eof()
        dropped = self.http.discard_received()
        with trio.move_on_after(_LINGER_SECONDS), contextlib.suppress(ClientGone):
            while dropped < _LINGER_BYTES:
                await self._more()
                dropped += self.http.discard_received()

    # -- the exchange loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            with contextlib.suppress(ClientGone):
                await self._serve()
            nursery.cancel_scope.cancel()

    async def _wait_for_request_start(self) -> bool:
        """Wait for the first byte of the next request. The server closes the connection while it waits here
        past the keep-alive timeout, or when it drains."""
        http = self.http
        if http.buffer:
            return True
        if self.server.draining.is_set():
            return False
        self.idle_deadline = trio.current_time() + self.settings.keepalive_timeout
        try:
            while not http.buffer and not http.eof:
                await self._more()
        finally:
            self.idle_deadline = math.inf
        return bool(http.buffer)

    async def _serve(self) -> None:
        while True:
            if not await self._wait_for_request_start():
                return
            event: Request | http11.Reject | http11.Event | None = self.http.next_event()
            if event is http11.NEED_DATA:
                event = await self._wait_for_request()
            if isinstance(event, http11.Reject):
                await self._error(event.status, event.message)
                await self._linger()
                return
            if not isinstance(event, Request):
                return  # the client went away, or a deadline passed (answered 408)
            if self.http.upgrade:  # an upgraded connection's bytes are not ours: stop reading until it is known
                self._stop_reader()
            if not await self._exchange(event):
                return
            if not self.http.start_next_cycle() or self.server.draining.is_set():
                return

    async def _wait_for_request(self) -> Request | http11.Reject | http11.Event | None:
        """The rest of a request that has begun: its head within header_timeout of its first byte, then its body
        within ``_body_deadline``. None after answering 408."""
        http = self.http
        started = trio.current_time()
        body_started = math.inf
        while True:
            if http.outgoing:
                await self._send(http.take_outgoing())
            if http.phase is http11.Phase.HEAD:
                deadline, what = started + self.settings.header_timeout, "head"
            else:
                body_started = min(body_started, trio.current_time())
                deadline, what = self._body_deadline(body_started, http.body_received), "body"
            with trio.move_on_at(deadline):
                await self._more()
            event = http.next_event()
            if event is not http11.NEED_DATA:
                return event
            if trio.current_time() >= deadline:
                await self._error(408, f"request {what} not received in time")
                return None

    def _body_deadline(self, started: float, received: int) -> float:
        """A body must arrive within body_timeout, plus a second per min_body_rate bytes received: a client
        sending a large body steadily has time for it, one trickling bytes (slowloris) does not."""
        return started + self.settings.body_timeout + received / max(self.settings.min_body_rate, 1)

    async def _exchange(self, request: Request) -> bool:
        """Run the handler for one request; whether the connection can carry another."""
        responder = Responder(self, head=request.method == "HEAD")
        self.server._exchange_started()
        self.client_gone = False
        try:
            try:
                self.in_handler = True
                self.exchanges += 1
                if self.http.eof:  # the client hung up right after its request
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
                self.in_handler = False
            if self.client_gone or self.hijacked:
                return False
            if not responder.started:
                await responder.respond(500, [(b"content-type", b"text/plain")], b"no response")
            await responder.end()
        finally:
            self.close_deadline = math.inf
            self.server._exchange_finished()
        return True


_READ_AHEAD = 1 << 20  # bytes a pipelining client may send ahead of the request being answered
_LINGER_SECONDS = 2.0  # how long a connection answered with an error reads on for the client to close it
_LINGER_BYTES = 4 << 20  # and how much of what the client still sends it drops before closing regardless


def _bound_port(listener: trio.abc.Listener[Any]) -> int:
    while isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    assert isinstance(listener, trio.SocketListener)
    return int(listener.socket.getsockname()[1])


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
