"""Hands a request for another replica's session to that replica and relays its answer (``server/client.py``).

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

import trio

from kmcp.adapter.metrics import Metrics
from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.session_ids import SessionIds
from kmcp.adapter.server import client
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
        self._idle: dict[tuple[str, int], list[client.ClientConnection]] = {}
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
        while True:
            link, reused = await self._open(owner)
            try:
                answer = await link.request(request.method, request.target, headers, request.body)
            except client.ERRORS as error:
                await link.aclose()
                if reused:  # the owner closed a kept-alive connection before reading: try a fresh one
                    continue
                raise _OwnerUnreachable() from error
            except BaseException:
                await link.aclose()
                raise
            break
        keep = False
        try:
            await self._answer(answer, responder, standalone=request.method == "GET")
            keep = answer.reusable
        finally:
            if keep:
                self._release(owner, link)
            else:
                await link.aclose()

    async def _open(self, owner: tuple[str, int]) -> tuple[client.ClientConnection, bool]:
        """A kept-alive connection to ``owner`` if one is idle and fresh, else a new one."""
        idle = self._idle.get(owner)
        now = trio.current_time()
        while idle:
            link = idle.pop()
            if now - link.since < self._idle_limit and not link.buffer:
                return link, True
            await link.aclose()
        if self._gone.get(owner, -math.inf) > now:
            raise _OwnerUnreachable()
        try:
            with trio.fail_after(self.settings.forward_connect_timeout):
                link = await client.connect("http", *owner)
        except trio.TooSlowError as error:  # an address that drops SYNs (a deleted pod's): remember it a moment
            now = trio.current_time()
            self._gone = {gone: until for gone, until in self._gone.items() if until > now}  # deleted pods pile up
            self._gone[owner] = now + GONE_SECONDS
            raise _OwnerUnreachable() from error
        except OSError as error:  # refused at once: trying again costs nothing (a restarting adapter, same IP)
            raise _OwnerUnreachable() from error
        self._gone.pop(owner, None)
        return link, False

    def _release(self, owner: tuple[str, int], link: client.ClientConnection) -> None:
        idle = self._idle.setdefault(owner, [])
        if len(idle) < _MAX_IDLE_PER_OWNER:
            link.since = trio.current_time()
            idle.append(link)
        else:
            link.close_idle()

    async def aclose(self) -> None:
        """Close the kept-alive connections (on shutdown)."""
        for idle in self._idle.values():
            for link in idle:
                await link.aclose()
        self._idle.clear()

    async def _answer(self, answer: client.Response, responder: Responder, *, standalone: bool) -> None:
        """Relay the owner's answer: whole when it has a known, bounded length (and is not a stream), else chunk by
        chunk as it arrives, never buffered."""
        headers: Headers = [(name, value) for name, value in answer.headers
                            if name.decode("latin-1") not in _HOP_BY_HOP]
        content_type = answer.header(b"content-type") or b""
        length = answer.length
        if length is None:
            declared = answer.header(b"content-length")
            length = int(declared) if declared is not None and declared.isdigit() else None
        if not content_type.lower().startswith(b"text/event-stream") and length is not None \
                and length <= _BUFFER_LIMIT:
            try:
                body = await answer.read(_BUFFER_LIMIT)
            except client.ERRORS as error:
                raise _OwnerUnreachable() from error
            await responder.respond(answer.status, headers, body)
            return
        await responder.start(answer.status, headers)
        async with trio.open_nursery() as nursery:
            if standalone:  # a GET stream ends on drain, like a local one; a POST's answer is let finish
                nursery.start_soon(_cancel_on, self.stop, nursery.cancel_scope)
            try:
                async for chunk in answer.chunks():
                    await responder.send(chunk)
            except client.ERRORS:
                pass  # the owner went away mid-stream: end ours, the client reconnects or re-initializes
            nursery.cancel_scope.cancel()


CALL_GONE = "Suspended call not found: the adapter replica holding it is gone; call again without requestState"


async def relay_continuation(forwarder: Forwarder | None, request: Request, responder: Responder,
                             owner: tuple[str, int], request_id: jsonrpc.RequestId | None) -> None:
    """A retry of an input_required round another replica holds goes there. When that replica cannot be reached,
    the call died with it: the answer a gone session owner gets, under the request's own id."""
    if forwarder is not None and await forwarder.forward_to(request, responder, owner):
        return
    await jsonrpc_error(responder, 404, jsonrpc.SERVER_GONE, CALL_GONE, request_id)


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
