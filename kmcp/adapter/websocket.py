"""MCP over WebSocket at ``/ws`` (subprotocol ``mcp``): one session per connection, one JSON-RPC message per
text frame, both ways. trio-websocket is imported only when a client connects."""

from __future__ import annotations

import trio

from kmcp.adapter.http import Request, Responder
from kmcp.adapter.httputil import Transport, origin_allowed, text
from kmcp.adapter.launcher import LaunchError
from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.jsonrpc import JsonRpcError
from kmcp.adapter.protocol.session import STANDALONE, SessionClosed
from kmcp.adapter.runtime import Inbox, Session, TooManySessions

SUBPROTOCOL = "mcp"


class WebSocketTransport(Transport):
    async def handle(self, request: Request, responder: Responder) -> None:
        if not origin_allowed(request, self.settings):
            await text(responder, 403, "Forbidden: Origin not allowed")
            return
        if request.method != "GET" or request.header("upgrade").lower() != "websocket":
            await text(responder, 426, "WebSocket upgrade required", [(b"upgrade", b"websocket")])
            return
        if self.stop.is_set():
            await text(responder, 503, "shutting down", [(b"retry-after", b"1")])
            return
        try:
            session = await self.table.create("ws")
        except TooManySessions:
            await text(responder, 503, f"too many sessions (max {self.settings.max_sessions})",
                       [(b"retry-after", b"5")])
            return
        except LaunchError as error:
            await text(responder, 500, f"cannot start the MCP server: {error}")
            return
        import trio_websocket

        try:
            async with trio.open_nursery() as nursery:
                ws_request = await trio_websocket.wrap_server_stream(
                    nursery, responder.take_over(request), max_message_size=self.settings.max_body_bytes)
                offered = ws_request.proposed_subprotocols
                ws = await ws_request.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
                with session.listen(STANDALONE) as channel:
                    nursery.start_soon(self._send, ws, channel, nursery.cancel_scope)
                    nursery.start_soon(self._cancel_on_stop, nursery.cancel_scope)
                    await self._receive(ws, session)
                    nursery.cancel_scope.cancel()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            session.end("the WebSocket closed")

    async def _receive(self, ws: object, session: Session) -> None:
        import trio_websocket

        assert isinstance(ws, trio_websocket.WebSocketConnection)
        while True:
            try:
                frame = await ws.get_message()
            except trio_websocket.ConnectionClosed:
                return
            data = frame.encode() if isinstance(frame, str) else frame
            try:
                messages, _ = jsonrpc.parse_body(data)
                await session.post(messages, STANDALONE)
            except JsonRpcError as error:
                await ws.send_message(jsonrpc.error_response(error.id, error.code, error.message).decode())
            except SessionClosed:
                await ws.aclose(code=1011, reason="the MCP server process exited")
                return

    async def _send(self, ws: object, channel: Inbox,
                    scope: trio.CancelScope) -> None:
        import trio_websocket

        assert isinstance(ws, trio_websocket.WebSocketConnection)
        try:
            async for item in channel:
                await ws.send_message(item.data.decode())
            await ws.aclose(code=1011, reason="the MCP session ended")
        except trio_websocket.ConnectionClosed:
            pass
        scope.cancel()

    async def _cancel_on_stop(self, scope: trio.CancelScope) -> None:
        await self.stop.wait()
        scope.cancel()
