"""MCP over WebSocket at ``/ws`` (subprotocol ``mcp``): one session per connection, one JSON-RPC message per
text frame, both ways.

The adapter answers the handshake itself and runs the RFC 6455 framing on wsproto's sans-IO frame protocol
(imported only when a client connects), so it owns every edge: frames that arrived in the same packet as the
upgrade request are processed, a message over ``max_body_bytes`` is answered with close 1009 before it is
buffered whole, and every protocol violation wsproto detects (an unmasked client frame, RSV bits, a reserved
opcode, an oversized or fragmented control frame, a bad close code) gets a close frame with its code (1002;
1007 for invalid UTF-8 text) before the connection is closed.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import TYPE_CHECKING

import trio

from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.jsonrpc import JsonRpcError
from kmcp.adapter.protocol.session import STANDALONE, SessionClosed
from kmcp.adapter.server.http import Request, Responder
from kmcp.adapter.server.httputil import STREAM_FLUSH_GRACE, Transport, origin_allowed, text
from kmcp.adapter.sessions.runtime import Inbox, Session

if TYPE_CHECKING:
    from wsproto.connection import Connection
    from wsproto.events import Event

SUBPROTOCOL = "mcp"
# RFC 6455 close codes the adapter sends.
GOING_AWAY, TOO_BIG, INTERNAL = 1001, 1009, 1011
CLOSE_LINGER = 2.0  # after our close frame: how long to wait for the client's before closing the TCP connection


class WebSocketTransport(Transport):
    async def handle(self, request: Request, responder: Responder) -> None:
        if not origin_allowed(request, self.settings):
            await text(responder, 403, "Forbidden: Origin not allowed")
            return
        if request.method != "GET" or request.header("upgrade").lower() != "websocket":
            await text(responder, 426, "WebSocket upgrade required", [(b"upgrade", b"websocket")])
            return
        if request.header("sec-websocket-version").strip() != "13":
            await text(responder, 426, "unsupported WebSocket version (13 is)", [(b"sec-websocket-version", b"13")])
            return
        key = request.header("sec-websocket-key").strip()
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key or "upgrade" not in request.header("connection").lower():
            await text(responder, 400, "Bad Request: not a valid WebSocket handshake")
            return
        session = await self.open_session(responder, "ws", json_rpc=False)
        if session is None:
            return
        from wsproto.connection import Connection, ConnectionType
        from wsproto.utilities import generate_accept_token

        headers = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                   (b"sec-websocket-accept", generate_accept_token(key.encode()))]
        offered = [p.strip() for p in request.header("sec-websocket-protocol").split(",")]
        if SUBPROTOCOL in offered:
            headers.append((b"sec-websocket-protocol", SUBPROTOCOL.encode()))
        try:
            stream = await responder.switch_protocols(headers)
            ws = WebSocket(stream, Connection(ConnectionType.SERVER), self.settings.max_body_bytes)
            async with trio.open_nursery() as nursery:
                with session.listen(STANDALONE) as channel:
                    channel.on_close = lambda: responder.close_within(STREAM_FLUSH_GRACE)
                    nursery.start_soon(self._send, ws, channel, nursery.cancel_scope)
                    nursery.start_soon(self._cancel_on_stop, ws, nursery.cancel_scope)
                    await self._receive(ws, session)
                    nursery.cancel_scope.cancel()
        finally:
            session.end("the WebSocket closed")

    async def _receive(self, ws: WebSocket, session: Session) -> None:
        while (data := await ws.receive_message()) is not None:
            try:
                messages, _ = jsonrpc.parse_body(data)
                await session.post(messages, STANDALONE)
            except JsonRpcError as error:
                await ws.send_text(jsonrpc.error_response(error.id, error.code, error.message))
            except SessionClosed:
                await ws.close(INTERNAL, "the MCP server process exited")
                return

    async def _send(self, ws: WebSocket, channel: Inbox, scope: trio.CancelScope) -> None:
        async for item in channel:
            frames = [item.data]
            while True:  # whatever else is queued goes out in the same write
                try:
                    frames.append(channel.receive_nowait().data)
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await ws.send_text(*frames)
        await ws.close(INTERNAL, "the MCP session ended")
        scope.cancel()

    async def _cancel_on_stop(self, ws: WebSocket, scope: trio.CancelScope) -> None:
        await self.stop.wait()
        await ws.close(GOING_AWAY, "the adapter is shutting down")
        scope.cancel()


class WebSocket:
    """One server-side WebSocket over an upgraded connection: ``receive_message`` (one task) and
    ``send_text`` / ``close`` (any task; writes are serialized)."""

    def __init__(self, stream: trio.abc.Stream, connection: Connection, max_message: int) -> None:
        self._stream = stream
        self._ws = connection
        self._max_message = max_message
        self._write_lock = trio.Lock()
        self.closed = False  # our close frame is sent (or the connection is gone): nothing more is written

    async def receive_message(self) -> bytes | None:
        """The next complete text or binary message, as bytes; None once the connection is closing or gone
        (after answering the client's close, or after closing it for a protocol violation)."""
        from wsproto.connection import ConnectionState
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

        parts: list[bytes] = []
        size = 0
        while True:
            for event in self._ws.events():
                if isinstance(event, TextMessage | BytesMessage):
                    data = event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)
                    size += len(data)
                    if size > self._max_message:
                        await self.close(TOO_BIG, f"message larger than {self._max_message} bytes")
                        return None
                    parts.append(data)
                    if event.message_finished:
                        return b"".join(parts)
                elif isinstance(event, Ping):
                    await self._write_event(event.response())
                elif isinstance(event, CloseConnection):
                    if self._ws.state is ConnectionState.REMOTE_CLOSING:  # the client's close: echo it
                        await self._write_event(event.response())
                        self.closed = True
                        await self._abort()
                    else:  # wsproto found a protocol violation (or the client answered our close)
                        await self.close(event.code, event.reason)
                    return None
            try:
                received = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                received = b""
            if not received:  # the TCP connection ended without a close handshake (1006)
                self.closed = True
                return None
            if self._ws.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
                self._ws.receive_data(bytes(received))

    async def send_text(self, *messages: bytes) -> None:
        """One text frame per message (UTF-8 JSON), in one write. Framed here (a server's frames are unmasked,
        so a header is all it takes) rather than through wsproto, which would decode and re-encode the text."""
        parts = []
        for data in messages:
            size = len(data)
            if size < 126:
                parts.append(bytes((0x81, size)))
            elif size < 65536:
                parts.append(struct.pack("!BBH", 0x81, 126, size))
            else:
                parts.append(struct.pack("!BBQ", 0x81, 127, size))
            parts.append(data)
        async with self._write_lock:
            if self.closed:
                return
            await self._stream.send_all(b"".join(parts))

    async def close(self, code: int, reason: str | None = None) -> None:
        """Send a close frame (once), then end the TCP connection after the client's close, its EOF or
        CLOSE_LINGER seconds, whichever comes first, so the client reads our close frame before any reset."""
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        if self.closed:
            return
        if self._ws.state is ConnectionState.OPEN:
            await self._write_event(CloseConnection(code=code, reason=reason))
        self.closed = True
        await self._abort()

    async def _write_event(self, event: Event) -> None:
        async with self._write_lock:
            if not self.closed:
                await self._stream.send_all(self._ws.send(event))

    async def _abort(self) -> None:
        """Half-close, drain what the client still sends (so closing does not reset the connection under our
        close frame), then close."""
        with trio.move_on_after(CLOSE_LINGER):
            try:
                await self._stream.send_eof()  # type: ignore[attr-defined]
                while await self._stream.receive_some(65536):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
                pass
        await trio.aclose_forcefully(self._stream)
