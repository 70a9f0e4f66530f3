"""Hands a request for another replica's session to that replica and relays its answer (raw h11 on trio).

A transport calls :meth:`Forwarder.forward` when its session lookup misses. Only ids that verify (``session_ids``)
are forwarded, and only once: the forwarded request carries ``x-kmcp-forwarded``, and a request that carries it
is never forwarded again (no loops, whatever the ids say). The owner's status, headers and body come back as they
are; SSE bodies are relayed chunk by chunk as they arrive, never buffered. When the owner cannot be reached (its
pod is gone), ``forward`` returns False and the transport answers 404, so the client starts a new session, as the
MCP spec prescribes for a session the server no longer knows.

A 2026-07-28 retry of an ``input_required`` round is forwarded the same way, to the replica its sealed
``requestState`` names (``protocol/continuations.py``): :func:`relay_continuation`.
"""

from __future__ import annotations

import math

import h11
import trio

from kmcp.adapter.metrics import Metrics
from kmcp.adapter.protocol import httpfast, jsonrpc
from kmcp.adapter.protocol.session_ids import SessionIds
from kmcp.adapter.server.http import Headers, Request, Responder
from kmcp.adapter.server.httputil import jsonrpc_error
from kmcp.adapter.settings import AdapterSettings

FORWARDED_HEADER = "x-kmcp-forwarded"
# Headers that describe one hop, not the message: never copied across.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer",
                         "transfer-encoding", "upgrade", "content-length", "expect", FORWARDED_HEADER})
_MAX_IDLE_PER_OWNER = 32
GONE_SECONDS = 5.0  # how long an owner whose connect timed out is taken as gone
_BUFFER_LIMIT = 1024 * 1024  # owner answers with a known length up to this are relayed with a content-length


class _OwnerUnreachable(Exception):
    pass


class Forwarder:
    def __init__(self, ids: SessionIds, settings: AdapterSettings, metrics: Metrics, stop: trio.Event) -> None:
        self.ids = ids
        self.settings = settings
        self.metrics = metrics
        self.stop = stop  # draining: relayed streams end like local ones
        # Kept-alive connections per owner, so forwarding does not leave a TIME_WAIT socket per request. Dropped
        # well before the owner's own keep-alive timeout, so a reused connection is rarely one it is closing.
        self._idle: dict[tuple[str, int], list[_Link]] = {}
        self._idle_limit = min(30.0, settings.keepalive_timeout / 2)
        # Owners whose connect timed out, until when: a deleted pod's address costs one connect timeout, not one
        # per request of each of its sessions' clients.
        self._gone: dict[tuple[str, int], float] = {}

    async def forward(self, request: Request, responder: Responder, session_id: str) -> bool:
        """Relay ``request`` to the adapter that owns ``session_id``. False (nothing answered) when the id names
        no other adapter, the request was already forwarded once, or the owner cannot be reached."""
        owner = self.ids.owner(session_id)
        return owner is not None and await self.forward_to(request, responder, owner)

    async def forward_to(self, request: Request, responder: Responder, owner: tuple[str, int]) -> bool:
        """Relay ``request`` to the adapter at ``owner``, an address read from something this MCPServer's key
        sealed. False (nothing answered) when the request was already forwarded once or the owner is gone."""
        if FORWARDED_HEADER in request.headers:
            return False
        try:
            await self._relay(request, responder, owner)
        except _OwnerUnreachable:
            self.metrics.forwarded["unreachable"] += 1
            return False
        self.metrics.forwarded["relayed"] += 1
        return True

    async def _relay(self, request: Request, responder: Responder, owner: tuple[str, int]) -> None:
        host, port = owner
        headers = [(name, value) for name, value in request.headers.items() if name not in _HOP_BY_HOP]
        if "host" not in request.headers:
            headers.append(("host", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"))
        headers.append((FORWARDED_HEADER, "1"))
        out = httpfast.request_bytes(request.method, request.target, headers, request.body)
        while True:
            link, reused = await self._open(owner)
            try:
                await link.stream.send_all(out)
                head_end = await link.read_head()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                await trio.aclose_forcefully(link.stream)
                if reused:  # the owner closed a kept-alive connection before reading: try a fresh one
                    continue
                raise _OwnerUnreachable() from error
            except BaseException:
                await trio.aclose_forcefully(link.stream)
                raise
            break
        keep = False
        try:
            head = httpfast.parse_response_head(bytes(link.buffer[:head_end]))
            if head is not None and head.content_length <= _BUFFER_LIMIT and request.method != "HEAD":
                del link.buffer[:head_end]
                body = await link.read_exactly(head.content_length)
                headers_out = [(name, value) for name, value in head.headers
                               if name.decode("latin-1") not in _HOP_BY_HOP]
                await responder.respond(head.status, headers_out, body)
                keep = not head.close
            else:  # a stream, or anything unusual: h11 reads this answer, and the connection is not reused
                await self._answer_h11(link, request, headers, responder)
        finally:
            if keep:
                self._release(owner, link)
            else:
                await trio.aclose_forcefully(link.stream)

    async def _open(self, owner: tuple[str, int]) -> tuple[_Link, bool]:
        """A kept-alive connection to ``owner`` if one is idle and fresh, else a new one."""
        idle = self._idle.get(owner)
        now = trio.current_time()
        while idle:
            link = idle.pop()
            if now - link.since < self._idle_limit and not link.buffer:
                return link, True
            await trio.aclose_forcefully(link.stream)
        if self._gone.get(owner, -math.inf) > now:
            raise _OwnerUnreachable()
        try:
            with trio.fail_after(self.settings.forward_connect_timeout):
                stream = await trio.open_tcp_stream(*owner)
        except trio.TooSlowError as error:  # an address that drops SYNs (a deleted pod's): remember it a moment
            now = trio.current_time()
            self._gone = {gone: until for gone, until in self._gone.items() if until > now}  # deleted pods pile up
            self._gone[owner] = now + GONE_SECONDS
            raise _OwnerUnreachable() from error
        except OSError as error:  # refused at once: trying again costs nothing (a restarting adapter, same IP)
            raise _OwnerUnreachable() from error
        self._gone.pop(owner, None)
        return _Link(stream), False

    def _release(self, owner: tuple[str, int], link: _Link) -> None:
        idle = self._idle.setdefault(owner, [])
        if len(idle) < _MAX_IDLE_PER_OWNER:
            link.since = trio.current_time()
            idle.append(link)
        else:
            link.stream.socket.close()  # already idle: nothing to flush

    async def aclose(self) -> None:
        """Close the kept-alive connections (on shutdown)."""
        for idle in self._idle.values():
            for link in idle:
                await trio.aclose_forcefully(link.stream)
        self._idle.clear()

    async def _answer_h11(self, link: _Link, request: Request, headers: list[tuple[str, str]],
                          responder: Responder) -> None:
        """Relay an answer the fast path does not read (an SSE stream, chunked, or unusual) through an h11 client
        connection that is told about the request already sent and fed the bytes received so far."""
        connection = h11.Connection(h11.CLIENT)
        connection.send(h11.Request(method=request.method, target=request.target,
                                    headers=[*headers, ("content-length", str(len(request.body)))]))
        if request.body:
            connection.send(h11.Data(data=request.body))
        connection.send(h11.EndOfMessage())
        connection.receive_data(bytes(link.buffer))
        link.buffer.clear()
        stream = link.stream
        try:
            head = await _next(stream, connection)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, h11.ProtocolError) as error:
            raise _OwnerUnreachable() from error
        if not isinstance(head, h11.Response):
            raise _OwnerUnreachable()
        relayed: Headers = []
        length: int | None = None
        streaming = False
        for raw_name, value in head.headers:
            name = raw_name.lower()
            if name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"content-type" and value.lower().startswith(b"text/event-stream"):
                streaming = True
            if name.decode("latin-1") not in _HOP_BY_HOP:
                relayed.append((name, value))
        if not streaming and length is not None and length <= _BUFFER_LIMIT:
            chunks: list[bytes] = []
            try:
                while isinstance(event := await _next(stream, connection), h11.Data):
                    chunks.append(bytes(event.data))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, h11.ProtocolError) as error:
                raise _OwnerUnreachable() from error
            await responder.respond(head.status_code, relayed, b"".join(chunks))
            return
        await responder.start(head.status_code, relayed)
        async with trio.open_nursery() as nursery:
            if request.method == "GET":  # a GET stream ends on drain, like a local one; a POST's answer is let finish
                nursery.start_soon(_cancel_on, self.stop, nursery.cancel_scope)
            try:
                while isinstance(event := await _next(stream, connection), h11.Data):
                    await responder.send(bytes(event.data))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, h11.ProtocolError):
                pass  # the owner went away mid-stream: end ours, the client reconnects or re-initializes
            nursery.cancel_scope.cancel()


class _Link:
    """A connection to an owner replica and the bytes read from it that no answer used yet."""

    __slots__ = ("buffer", "since", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.since = 0.0  # when it went idle

    async def read_head(self) -> int:
        """Read until a response head is complete; the index just past it. A connection closed first (even
        after some bytes) is a broken one."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            data = await self.stream.receive_some(65536)
            if not data:
                raise trio.BrokenResourceError("the owner closed the connection")
            self.buffer += data
        return end + 4

    async def read_exactly(self, size: int) -> bytes:
        try:
            while len(self.buffer) < size:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise trio.BrokenResourceError("the owner closed the connection mid-answer")
                self.buffer += data
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise _OwnerUnreachable() from error
        body = bytes(self.buffer[:size])
        del self.buffer[:size]
        return body


CALL_GONE = "Suspended call not found: the adapter replica holding it is gone; call again without requestState"


async def relay_continuation(forwarder: Forwarder | None, request: Request, responder: Responder,
                             owner: tuple[str, int], request_id: jsonrpc.RequestId | None) -> None:
    """A retry of an input_required round another replica holds goes there. When that replica cannot be reached,
    the call died with it: the answer a gone session owner gets, under the request's own id."""
    if forwarder is not None and await forwarder.forward_to(request, responder, owner):
        return
    await jsonrpc_error(responder, 404, jsonrpc.SERVER_GONE, CALL_GONE, request_id)


async def _next(stream: trio.SocketStream, connection: h11.Connection) -> object:
    """The owner's next h11 event (a Response, Data, EndOfMessage or ConnectionClosed)."""
    while (event := connection.next_event()) is h11.NEED_DATA:
        connection.receive_data(await stream.receive_some(65536))
    return event


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
