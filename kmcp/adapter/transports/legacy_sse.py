"""The legacy HTTP+SSE transport (MCP 2024-11-05): GET ``/sse`` opens a session and its event stream, whose first
event names the endpoint (``/message?sessionId=ID``) the client POSTs its messages to; everything the server says
arrives on the stream. kagent's RemoteMCPServer URLs (``http://svc:3000/sse``) use it."""

from __future__ import annotations

from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.jsonrpc import JsonRpcError
from kmcp.adapter.protocol.session import STANDALONE, SessionClosed
from kmcp.adapter.server.http import Request, Responder, sse_event
from kmcp.adapter.server.httputil import (
    SSE_HEADERS,
    Transport,
    accepts,
    is_json_content,
    jsonrpc_error,
    origin_allowed,
    pump_sse,
    text,
)

MESSAGE_PATH = "/message"


class LegacySse(Transport):
    async def stream(self, request: Request, responder: Responder) -> None:
        """GET /sse"""
        if not origin_allowed(request, self.settings):
            await text(responder, 403, "Forbidden: Origin not allowed")
            return
        if request.method != "GET":
            await text(responder, 405, "method not allowed", [(b"allow", b"GET")])
            return
        if not accepts(request)[1]:
            await text(responder, 406, "Not Acceptable: needs Accept: text/event-stream")
            return
        session = await self.open_session(responder, "sse", json_rpc=False)
        if session is None:
            return
        try:
            with session.listen(STANDALONE) as channel:
                await responder.start(200, SSE_HEADERS)
                endpoint = f"{MESSAGE_PATH}?sessionId={session.id}".encode()
                await responder.send(sse_event(endpoint, event="endpoint"))
                await pump_sse(responder, channel, self.settings, self.stop, end_on_last=False, event="message")
        finally:
            session.end("the SSE stream closed")

    async def message(self, request: Request, responder: Responder) -> None:
        """POST /message?sessionId=ID"""
        if not origin_allowed(request, self.settings):
            await text(responder, 403, "Forbidden: Origin not allowed")
            return
        if request.method != "POST":
            await text(responder, 405, "method not allowed", [(b"allow", b"POST")])
            return
        session_id = request.query.get("sessionId") or request.query.get("session_id")
        if not session_id:
            await text(responder, 400, "Bad Request: missing sessionId")
            return
        session = self.table.get(session_id)
        if session is None and self.forwarder and await self.forwarder.forward(request, responder, session_id):
            return  # another replica's session: it answered
        if session is None or session.transport != "sse":
            await text(responder, 404, "Session not found")
            return
        if not is_json_content(request):
            await text(responder, 415, "Unsupported Media Type: Content-Type must be application/json")
            return
        try:
            messages, _ = jsonrpc.parse_body(request.body)
            await session.post(messages, STANDALONE)
        except JsonRpcError as error:
            await jsonrpc_error(responder, 400, error.code, error.message, error.id)
            return
        except SessionClosed:
            await text(responder, 404, "Session not found")
            return
        await text(responder, 202, "Accepted")
