"""Streamable HTTP at ``/mcp`` (MCP revisions 2025-03-26, 2025-06-18, 2025-11-25).

POST carries client messages: notifications and responses get 202; requests are answered with JSON when the
server's response is the first thing it sends for them, else (or when the client only accepts SSE) with an SSE
stream carrying the progress, logging and server->client requests that precede the response. GET opens the
session's standalone SSE stream (or resumes a stream with ``Last-Event-ID``). DELETE ends the session.
"""

from __future__ import annotations

import trio

from kmcp.adapter.protocol import continuations, era, jsonrpc
from kmcp.adapter.protocol.jsonrpc import JsonRpcError, Kind
from kmcp.adapter.protocol.session import STANDALONE, SessionClosed
from kmcp.adapter.server.http import Headers, Request, Responder, sse_event
from kmcp.adapter.server.httputil import (
    JSON,
    SSE_HEADERS,
    Transport,
    accepts,
    is_json_content,
    jsonrpc_error,
    origin_allowed,
    pump_sse,
    text,
)
from kmcp.adapter.sessions import stateless
from kmcp.adapter.sessions.pool import StatelessPool
from kmcp.adapter.sessions.runtime import Inbox, Session, StreamItem, parse_event_id
from kmcp.adapter.settings import DEFAULT_STREAMABLE_VERSION, SUPPORTED_PROTOCOL_VERSIONS

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
BATCH_VERSION = "2025-03-26"  # batches were removed in 2025-06-18


class StreamableHttp(Transport):
    pool: StatelessPool | None = None  # serves 2026-07-28 requests; None: they get the old 400

    async def handle(self, request: Request, responder: Responder) -> None:
        if not origin_allowed(request, self.settings):
            await jsonrpc_error(responder, 403, jsonrpc.INVALID_REQUEST, "Forbidden: Origin not allowed")
        elif request.method == "POST":
            await self._post(request, responder)
        elif request.method == "GET":
            await self._get(request, responder)
        elif request.method == "DELETE":
            await self._delete(request, responder)
        else:
            await text(responder, 405, "method not allowed", [(b"allow", b"GET, POST, DELETE")])

    async def _version(self, request: Request, responder: Responder) -> str | None:
        """The request's protocol revision, or None after answering 400 for an unsupported one."""
        version = request.header(VERSION_HEADER)
        if not version:
            return DEFAULT_STREAMABLE_VERSION
        if version not in SUPPORTED_PROTOCOL_VERSIONS:
            await jsonrpc_error(responder, 400, jsonrpc.INVALID_REQUEST,
                                f"Bad Request: unsupported MCP-Protocol-Version {version!r} "
                                f"(supported: {', '.join(SUPPORTED_PROTOCOL_VERSIONS)})")
            return None
        return version

    async def _session(self, request: Request, responder: Responder) -> Session | None:
        """The session the request names, or None after answering 400 (no id) or 404 (unknown or ended), or after
        another replica that holds it answered."""
        session_id = request.header(SESSION_HEADER)
        if not session_id:
            await jsonrpc_error(responder, 400, jsonrpc.INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header")
            return None
        session = self.table.get(session_id)
        if session is None and self.forwarder and await self.forwarder.forward(request, responder, session_id):
            return None  # another replica's session: it answered
        if session is None or session.transport != "streamable":
            await jsonrpc_error(responder, 404, jsonrpc.SERVER_GONE, "Session not found")
            return None
        return session

    async def _post(self, request: Request, responder: Responder) -> None:
        if not is_json_content(request):
            await jsonrpc_error(responder, 415, jsonrpc.INVALID_REQUEST,
                                "Unsupported Media Type: Content-Type must be application/json")
            return
        want_json, want_sse = accepts(request)
        if not (want_json or want_sse):
            await jsonrpc_error(responder, 406, jsonrpc.INVALID_REQUEST,
                                "Not Acceptable: client must accept application/json and text/event-stream")
            return
        try:
            messages, is_batch = jsonrpc.parse_body(request.body)
        except JsonRpcError as error:
            await jsonrpc_error(responder, 400, error.code, error.message, error.id)
            return
        if self.pool is not None and not is_batch and era.is_modern(request.headers, messages[0]):
            await self._post_modern(request, responder, messages[0], want_json, want_sse)
            return
        version = await self._version(request, responder)
        if version is None:
            return
        if is_batch:
            has_request = any(m.kind is Kind.REQUEST for m in messages)
            initialize = any(m.kind is Kind.REQUEST and m.method == "initialize" for m in messages)
        else:  # the common case, without two generators per call
            has_request = messages[0].kind is Kind.REQUEST
            initialize = has_request and messages[0].method == "initialize"
        if is_batch and (initialize or version != BATCH_VERSION):
            await jsonrpc_error(responder, 400, jsonrpc.INVALID_REQUEST,
                                "Bad Request: JSON-RPC batches are only accepted for protocol 2025-03-26, "
                                "and never for initialize")
            return
        if initialize:
            session = await self.open_session(responder, "streamable", json_rpc=True)
        else:
            session = await self._session(request, responder)
        if session is None:
            return
        headers: Headers = [(SESSION_HEADER.encode(), session.id.encode())]
        if not has_request:
            try:
                await session.post(messages, STANDALONE)
            except SessionClosed:
                await jsonrpc_error(responder, 404, jsonrpc.SERVER_GONE, "Session not found")
                return
            await responder.respond(202, headers)
            return
        stream = session.core.open_stream()
        with session.listen(stream, fresh=True) as channel:
            try:
                await session.post(messages, stream)
            except JsonRpcError as error:
                await jsonrpc_error(responder, 400, error.code, error.message, error.id, headers)
                if initialize:
                    session.end("initialize failed")
                return
            except SessionClosed:
                await jsonrpc_error(responder, 404, jsonrpc.SERVER_GONE, "Session not found")
                return
            await self._answer(responder, session, channel, headers, is_batch, want_json, want_sse)

    async def _post_modern(self, request: Request, responder: Responder, message: jsonrpc.Message,
                           want_json: bool, want_sse: bool) -> None:
        """A 2026-07-28 request: no session; checked here, run on the stateless pool."""
        assert self.pool is not None
        checked = era.check_modern(request.headers, message)
        if isinstance(checked, era.EraError):
            await responder.respond(checked.status, [(b"content-type", JSON)], checked.body())
        elif message.kind is not Kind.REQUEST:
            await responder.respond(202, [])  # 2026-07-28 defines no client notification over HTTP
        else:
            try:
                await stateless.answer(self.pool, checked, responder, want_json=want_json, want_sse=want_sse)
            except continuations.HeldElsewhere as held:  # a retry of a round another replica holds
                from kmcp.adapter.server.forwarding import relay_continuation  # only with replicas: start-up time

                await relay_continuation(self.forwarder, request, responder, held.owner, checked.id)

    async def _answer(self, responder: Responder, session: Session,
                      channel: Inbox, headers: Headers, is_batch: bool,
                      want_json: bool, want_sse: bool) -> None:
        if want_sse and not (want_json and self.settings.prefer_json_response):
            await responder.start(200, [*SSE_HEADERS, *headers])
            await pump_sse(responder, channel, self.settings, trio.Event(), end_on_last=True)
            return
        # JSON unless the server says something else before its response; then switch to SSE.
        collected: list[StreamItem] = []
        async for item in channel:
            if item.response:
                collected.append(item)
                if item.last:
                    body = jsonrpc.join_batch([i.data for i in collected]) if is_batch else collected[0].data
                    await responder.respond(200, [(b"content-type", JSON), *headers], body)
                    return
            elif want_sse:
                await responder.start(200, [*SSE_HEADERS, *headers])
                await responder.send(b"".join(sse_event(i.data, i.event_id) for i in [*collected, item]))
                await pump_sse(responder, channel, self.settings, trio.Event(), end_on_last=True)
                return
            else:  # a JSON-only client hears server requests and notifications on its GET stream
                session.to_standalone(item)
        # The channel closed without a final response: the session ended under us.
        await jsonrpc_error(responder, 404, jsonrpc.SERVER_GONE, "Session not found", headers=headers)

    async def _get(self, request: Request, responder: Responder) -> None:
        if not self.settings.enable_get_stream:
            await text(responder, 405, "the server-to-client stream is disabled", [(b"allow", b"POST, DELETE")])
            return
        if not accepts(request)[1]:
            await text(responder, 406, "Not Acceptable: GET needs Accept: text/event-stream")
            return
        if await self._version(request, responder) is None:
            return
        session = await self._session(request, responder)
        if session is None:
            return
        stream, after = STANDALONE, None
        resume = parse_event_id(request.header("last-event-id"))
        if resume is not None:
            stream, after = resume
        with session.listen(stream, after) as channel:
            await responder.start(200, [*SSE_HEADERS, (SESSION_HEADER.encode(), session.id.encode())])
            await responder.send(b": stream open\n\n")
            await pump_sse(responder, channel, self.settings, self.stop, end_on_last=stream != STANDALONE)

    async def _delete(self, request: Request, responder: Responder) -> None:
        session = await self._session(request, responder)
        if session is None:
            return
        session.end("the MCP session was deleted by the client")
        await responder.respond(200, [])
