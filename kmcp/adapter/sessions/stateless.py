"""Answering one stateless (2026-07-28) request on the pool of warm server processes (``pool.py``).

A modern stdio server (one that answers ``server/discover``) gets each request passed through, its id rewritten
by the :class:`~kmcp.adapter.protocol.multiplexer.Multiplexer` of the process it lands on. A handshake-era server
is *bridged*: the adapter initializes its processes itself (one set of processes per client-capability set, since
a handshake fixes the capabilities), answers ``server/discover`` from the ``initialize`` result, and turns the
server's results into 2026-07-28 ones (``resultType``, caching hints, the not-found error). The era of a process
is fixed by its first request (so the SDK decides), so a process is probed once and keeps its era.

A legacy server's server->client requests during a call become ``input_required`` rounds (the call waits on its
process, its handle sealed into ``requestState``). ``subscriptions/listen`` is served by the adapter for a legacy
server (from its broadcast change notifications) and fanned out to every pooled process of a modern one (a
change made on any process reaches the listener).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import trio

from kmcp.adapter.protocol import bridge, continuations, era, jsonrpc, subscriptions
from kmcp.adapter.protocol.era import ModernRequest
from kmcp.adapter.protocol.jsonrpc import JsonRpcError, Kind, Message
from kmcp.adapter.protocol.multiplexer import ToServer
from kmcp.adapter.server.http import Responder, sse_event
from kmcp.adapter.server.httputil import JSON, SSE_HEADERS, jsonrpc_error
from kmcp.adapter.sessions.inbox import Inbox
from kmcp.adapter.sessions.pool import (
    LISTEN_BUFFER,
    PROCESS_EXITED,
    Listener,
    ModernListen,
    PooledProcess,
    StatelessPool,
    Suspended,
    Ticket,
    mailbox,
    server_gone,
)
from kmcp.adapter.stdio.launcher import LaunchError

# -- answering one modern request over HTTP ----------------------------------------------------------------------

_REQUEST_SCOPED = ("notifications/progress", "notifications/message")
GATHER_SECONDS = 0.05  # after a server request, how long more may follow before the round is offered








class _Exchange:
    """One modern request's HTTP answer: JSON when the response is all there is (and the client takes JSON),
    else an SSE stream of the request's own notifications, then the response."""

    def __init__(self, responder: Responder, want_json: bool, want_sse: bool) -> None:
        self.responder = responder
        self.want_json = want_json
        self.want_sse = want_sse
        self.streaming = False

    async def notify(self, message: Message, *, always: bool = False) -> None:
        if not (self.want_sse or always):
            return  # a JSON-only client hears no notifications
        if not self.streaming:
            await self.responder.start(200, [*SSE_HEADERS])
            self.streaming = True
        await self.responder.send(sse_event(message.raw))

    async def keep_alive(self) -> None:
        if self.streaming:
            await self.responder.send(b": keep-alive\n\n")

    async def finish(self, data: bytes, status: int = 200) -> None:
        if self.streaming:
            await self.responder.send(sse_event(data))
        elif self.want_json or status != 200:
            await self.responder.respond(status, [(b"content-type", JSON)], data)
        else:
            await self.responder.respond(status, [*SSE_HEADERS], sse_event(data))


async def answer(pool: StatelessPool, modern: ModernRequest, responder: Responder, *, want_json: bool,
                 want_sse: bool) -> None:
    """Run one modern request on a pooled process (or resume the suspended call it continues) and answer it."""
    # JSON when the response is the first thing the server sends for the request (and the client takes JSON),
    # as handshake-era sessions answer; an SSE stream once a notification comes first.
    exchange = _Exchange(responder, want_json, want_sse)
    try:
        await _answer(pool, modern, exchange)
    except JsonRpcError as error:
        await exchange.finish(jsonrpc.error_response(modern.id, error.code, error.message))
    except (LaunchError, trio.TooSlowError) as error:
        await jsonrpc_error(responder, 503, jsonrpc.INTERNAL_ERROR, f"Service Unavailable: {error}", modern.id,
                            [(b"retry-after", b"1")])


async def _answer(pool: StatelessPool, modern: ModernRequest, exchange: _Exchange) -> None:
    method = modern.method
    retry = continuations.read_retry(modern.message.params) if method in continuations.MAY_SUSPEND else None
    # A state this MCPServer's key sealed is a bridged round even before this replica has learned its era (a
    # retry reaching a replica that just started); a modern server's own states are passed through.
    if retry is not None and retry.state is not None and (pool.era == "legacy" or (
            pool.era != "modern" and pool.sealer.verifies(retry.state))):
        await _resume(pool, modern, exchange, retry)
        return
    if modern.param_headers is not None:
        problem = await pool.param_problem(modern.param_headers, modern.message.params)
        if problem is not None:
            error = era.EraError(400, era.HEADER_MISMATCH, f"Header mismatch: {problem}", modern.id)
            await exchange.finish(error.body(), 400)
            return
    capabilities = modern.envelope.capabilities
    suspends = method in continuations.MAY_SUSPEND
    asks, logs = suspends and bridge.may_ask(capabilities), suspends and modern.envelope.log_level is not None
    pooled = await pool.process_for(capabilities, asks=asks, logs=logs)
    if method == "subscriptions/listen":
        await (_listen_modern(pool, modern, exchange) if pooled.era == "modern" else
               _listen_legacy(pool, modern, exchange, pooled))
        return
    if pooled.era == "legacy" and method == "server/discover":
        result = bridge.discover_result(pooled.initialize_result, pool.settings.stateless_ttl_ms)
        await exchange.finish(jsonrpc.response_bytes(modern.id, result))
        return
    if pooled.era == "legacy" and method not in bridge.BRIDGED_METHODS:
        # Not a method a handshake-era server could answer.
        await exchange.finish(jsonrpc.error_response(modern.id, jsonrpc.METHOD_NOT_FOUND,
                                                     f"Method not found: {method}"), 404)
        return
    message = modern.message
    if pooled.era == "legacy" and retry is not None and retry.responses is not None:
        # Answers without a state name no suspended call: the call starts afresh (and asks again).
        params = continuations.strip_retry(message.params)
        message = Message(Kind.REQUEST, jsonrpc.request_bytes(modern.id or 0, method, params), modern.id,
                          method, params)
    ticket = pooled.open_ticket()
    if pool.exclusive(asks, logs):
        pool.take(pooled, ticket)
    await _run(pool, modern, exchange, pooled, ticket, first=message)


async def _resume(pool: StatelessPool, modern: ModernRequest, exchange: _Exchange,
                  retry: continuations.Retry) -> None:
    """The client answers an input_required round: hand its answers to the server, and go on with the call. A
    round another replica holds raises HeldElsewhere before anything is answered: the transport forwards it."""
    assert retry.state is not None
    try:
        handle = pool.sealer.open(retry.state, modern.method, retry.name)
    except continuations.StateError as error:
        raise JsonRpcError(jsonrpc.INVALID_PARAMS, f"Invalid requestState: {error}") from None
    suspended = pool.suspended.pop(handle, None)
    if suspended is None or suspended.pooled.gone:
        raise JsonRpcError(jsonrpc.INVALID_PARAMS, "Invalid requestState: it names no suspended call (answered "
                                                   "already, expired, or held by an adapter that restarted)")
    responses = retry.responses or {}
    answered = [r for r in suspended.requests if r.key in responses]
    missing = [r for r in suspended.requests if r.key not in responses]
    lines = [jsonrpc.response_bytes(r.server_id, responses[r.key]) for r in answered]
    for output in [suspended.pooled.mux.from_client(suspended.ticket.number, jsonrpc.parse_message(line))
                   for line in lines]:
        await suspended.pooled.write([o.data for o in output if isinstance(o, ToServer)])
    await _run(pool, modern, exchange, suspended.pooled, suspended.ticket, pending=missing)


async def _run(pool: StatelessPool, modern: ModernRequest, exchange: _Exchange, pooled: PooledProcess,
               ticket: Ticket, *, first: Message | None = None,
               pending: list[continuations.InputRequest] | None = None) -> None:
    """Read what the process sends for the call until its response, or until it waits on the client (a round)."""
    asked: list[continuations.InputRequest] = list(pending or [])
    suspended = finished = False
    try:
        if first is not None:
            await pool.send(pooled, ticket, first)
        while True:
            message = await _next(ticket, gathering=bool(asked))
            if message is None:  # the server asked, and is now waiting: offer the round
                await _suspend(pool, modern, exchange, pooled, ticket, asked)
                suspended = True
                return
            if message.kind is Kind.RESPONSE:
                data, status = _final(pool, pooled, modern, message)
                finished = True
                await exchange.finish(data, status)
                return
            if message.kind is Kind.REQUEST:
                if pooled.era == "legacy" and message.method in continuations.ASKABLE \
                        and modern.method in continuations.MAY_SUSPEND:
                    key = continuations.input_key(message, {r.key for r in asked})
                    asked.append(continuations.InputRequest(key, message.id or 0, message.method or "",
                                                            message.params))
                else:
                    await pooled.write([bridge.refuse_server_request(message)])
                continue
            if _belongs(modern, message):
                await exchange.notify(message)
    finally:
        if not suspended:
            if not finished and not pooled.gone:
                with trio.CancelScope(shield=True), trio.move_on_after(1):  # the client left: so may we
                    await pool.cancel(pooled, ticket, "the client closed the request")
            pooled.close_ticket(ticket)


async def _listen_legacy(pool: StatelessPool, modern: ModernRequest, exchange: _Exchange,
                         pooled: PooledProcess) -> None:
    """Serve a listen for a handshake-era server: acknowledge what it advertises, then relay its changes."""
    granted = subscriptions.honoured(subscriptions.read_filter(modern.message.params), pooled.initialize_result)
    assert modern.id is not None
    listener = Listener(granted, modern.id, mailbox(LISTEN_BUFFER))
    pool.listeners.add(listener)
    try:
        await exchange.notify(subscriptions.acknowledgement(modern.id, granted), always=True)
        await pool.watch(granted.resource_subscriptions, "resources/subscribe")
        await _relay(pool, exchange, listener.inbox, lambda message: True)
    finally:
        pool.listeners.discard(listener)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await pool.watch(granted.resource_subscriptions, "resources/unsubscribe")


async def _listen_modern(pool: StatelessPool, modern: ModernRequest, exchange: _Exchange) -> None:
    """Pass a listen to every modern process (and to those started later); one acknowledgement reaches the
    client, then every process's events. It ends when the client leaves, or when a server answers it."""
    listen = ModernListen(modern.message, mailbox(LISTEN_BUFFER))
    pool.modern_listens.add(listen)
    acknowledged = False

    def deliver(message: Message) -> bool:  # only the listen's own events (the multiplexer broadcasts logs too)
        nonlocal acknowledged
        if not jsonrpc.has_meta_key(message.params, era.META_SUBSCRIPTION):
            return False
        if message.method == subscriptions.ACKNOWLEDGED:
            if acknowledged:
                return False
            acknowledged = True
        return True

    try:
        for pooled in pool.modern_processes():
            await pool.join_listen(listen, pooled)
        final = await _relay(pool, exchange, listen.inbox, deliver,
                             live=lambda: any(not p.gone for p in listen.parts))
        if final is not None:
            data, status = _final(pool, next(iter(listen.parts)), modern, final)
            await exchange.finish(data, status)
    finally:
        pool.modern_listens.discard(listen)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await pool.leave_listen(listen)


async def _relay(pool: StatelessPool, exchange: _Exchange, receive: Inbox[Message],
                 deliver: Callable[[Message], bool], live: Callable[[], bool] = lambda: True) -> Message | None:
    """Relay a listen's events, with keep-alives, until a response ends it (returned); a response from a
    process that went away ends it only when no process is left (``live``)."""
    interval = pool.settings.sse_keepalive_interval
    while True:
        with trio.move_on_after(interval) as idle:
            message = await receive.receive()
        if idle.cancelled_caught:
            await exchange.keep_alive()
        elif message.kind is Kind.RESPONSE:
            if not server_gone(message) or not live():
                return message
        elif message.kind is Kind.NOTIFICATION and deliver(message):
            await exchange.notify(message, always=True)




async def _next(ticket: Ticket, *, gathering: bool) -> Message | None:
    """The next message for the call; None when a round is being gathered and nothing more came in time."""
    if not gathering:
        try:
            return await ticket.inbox.receive()
        except trio.EndOfChannel:
            return Message(Kind.RESPONSE, b"", error=PROCESS_EXITED)
    with trio.move_on_after(GATHER_SECONDS):
        try:
            return await ticket.inbox.receive()
        except trio.EndOfChannel:
            return None
    return None


async def _suspend(pool: StatelessPool, modern: ModernRequest, exchange: _Exchange, pooled: PooledProcess,
                   ticket: Ticket, asked: list[continuations.InputRequest]) -> None:
    handle = secrets.token_urlsafe(16)
    name = continuations.read_retry(modern.message.params).name
    pool.suspended[handle] = Suspended(pooled, ticket, asked, trio.current_time() + pool.sealer.ttl)
    state = pool.sealer.seal(handle, modern.method, name)
    await exchange.finish(jsonrpc.response_bytes(modern.id, continuations.input_required_result(asked, state)))


def _belongs(modern: ModernRequest, message: Message) -> bool:
    """Whether a notification the multiplexer gave this request goes on its stream."""
    method = message.method or ""
    if method not in _REQUEST_SCOPED:
        return False  # list_changed and friends belong on subscriptions/listen, never on a request's stream
    if method == "notifications/message":
        # A log line carries no request id: it goes to the request that opted in (logLevel); the pool keeps at
        # most one such request per process (StatelessPool.process_for), so it is that request's own.
        return modern.envelope.log_level is not None
    return True


def _final(pool: StatelessPool, pooled: PooledProcess, modern: ModernRequest, message: Message) -> tuple[bytes, int]:
    """The response bytes (under the client's id) and the HTTP status they go with."""
    if pooled.era == "modern":
        if message.error:
            return jsonrpc.response_bytes(modern.id, b"", message.error), bridge.http_status(message.error)
        if modern.method == "server/discover":
            return jsonrpc.response_bytes(modern.id, bridge.adapter_discover(message.result)), 200
        return jsonrpc.response_bytes(modern.id, message.result), 200
    if message.result:
        result = bridge.complete_result(modern.method, message.result, pool.settings.stateless_ttl_ms)
        return jsonrpc.response_bytes(modern.id, result), 200
    error = bridge.modern_error(modern.method, modern.message.params, message.error)
    return jsonrpc.response_bytes(modern.id, b"", error), bridge.http_status(error)
