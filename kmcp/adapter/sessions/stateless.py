"""Stateless (2026-07-28) requests on a small pool of warm server processes, shared by every client.

A modern stdio server (one that answers ``server/discover``) gets each request passed through, its id rewritten
by the :class:`~kmcp.adapter.protocol.multiplexer.Multiplexer` of the process it lands on. A handshake-era server
is *bridged*: the adapter initializes its processes itself (one set of processes per client-capability set, since
a handshake fixes the capabilities), answers ``server/discover`` from the ``initialize`` result, and turns the
server's results into 2026-07-28 ones (``resultType``, caching hints, the not-found error). The era of a process
is fixed by its first request (so the SDK decides), so a process is probed once and keeps its era.

A legacy server's server->client requests during a call become ``input_required`` rounds (the call waits on its
process, its handle sealed into ``requestState``). ``subscriptions/listen`` is served by the adapter for a legacy
server (from its broadcast change notifications) and fanned out to every pooled process of a modern one (a
change made on any process reaches the listener). Not done (see the issue note): ``Mcp-Param-*`` checks against
tool schemas.
"""

from __future__ import annotations

import math
import secrets
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

import trio

from kmcp.adapter.protocol import bridge, continuations, era, jsonrpc, param_headers, subscriptions
from kmcp.adapter.protocol.era import ModernRequest
from kmcp.adapter.protocol.jsonrpc import JsonRpcError, Kind, Message, RequestId
from kmcp.adapter.protocol.multiplexer import Multiplexer, ToClient, ToServer
from kmcp.adapter.server.http import Responder, sse_event
from kmcp.adapter.server.httputil import JSON, SSE_HEADERS, jsonrpc_error
from kmcp.adapter.sessions.inbox import Inbox
from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import Launcher, LaunchError, ServerProcess
from kmcp.adapter.stdio.pipes import StdinWriter, read_lines

SPARES = 2
_POOL_FAILURES = (LaunchError, OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)
PROBE_TIMEOUT = 10.0  # a server slower than this to answer its first request is taken for handshake-era
PROCESS_EXITED = jsonrpc.encode({"code": jsonrpc.SERVER_GONE, "message": "the MCP server process exited"})
LISTEN_BUFFER = 1024  # change events queued for one listen stream whose client reads slowly (then dropped)
EXCLUSIVE_EXTRA = 7  # processes a group may add beyond the pool's size for exclusive requests
EXTRA_IDLE_SECONDS = 30.0
TOOLS_TTL = 60.0  # how long the tools' x-mcp-header properties are trusted before the list is read again
TOOLS_PAGES = 20


def _load(pooled: PooledProcess) -> int:
    return pooled.load


def _message_size(message: Message) -> int:
    return len(message.raw)


def _mailbox(most: int = sys.maxsize) -> Inbox[Message]:
    """Unbounded for a request (its response must never be dropped), ``most`` messages for a listen stream."""
    return Inbox(_message_size, sys.maxsize if most == sys.maxsize else 64 << 20, most)


@dataclass(eq=False, slots=True)
class Ticket:
    """One request in flight on a pooled process: what the process sent for it, in order (into an inbox of its
    own, or one several tickets share: the parts of a listen stream)."""

    number: int
    inbox: Inbox[Message]
    shared: bool = False


@dataclass(eq=False)
class PooledProcess:
    era: str  # "modern" | "legacy"
    capabilities: bytes  # legacy: the capability set it was initialized with
    mux: Multiplexer = field(default_factory=Multiplexer)
    process: ServerProcess | None = None
    initialize_result: bytes = b""
    tickets: dict[int, Ticket] = field(default_factory=dict)
    ready: trio.Event = field(default_factory=trio.Event)
    assigned: trio.Event = field(default_factory=trio.Event)  # legacy: its capability set is chosen
    gone: bool = False
    listens: int = 0  # listen streams on the process: in flight for good, so not load
    on_change: Callable[[Message], None] | None = None  # legacy: where its change notifications go
    exclusive: Ticket | None = None  # the one request whose server requests and logs are its own
    on_free: Callable[[], None] | None = None
    scope: trio.CancelScope | None = None
    idle_since: float = 0.0
    stdin: StdinWriter | None = None

    @property
    def load(self) -> int:
        return self.mux.in_flight - self.listens

    async def write(self, lines: list[bytes]) -> None:
        if self.stdin is None or self.gone:
            raise trio.ClosedResourceError("the pooled MCP server process is gone")
        await self.stdin.write(lines[0] + b"\n" if len(lines) == 1 else b"".join(line + b"\n" for line in lines))

    def open_ticket(self, into: Inbox[Message] | None = None) -> Ticket:
        """A ticket with an inbox of its own, or (``into``) one more sender into an inbox several share."""
        ticket = Ticket(self.mux.attach(), into, True) if into is not None else Ticket(self.mux.attach(), _mailbox())
        self.tickets[ticket.number] = ticket
        return ticket

    def close_ticket(self, ticket: Ticket) -> None:
        self.mux.detach(ticket.number)
        self.tickets.pop(ticket.number, None)
        if not ticket.shared:
            ticket.inbox.close()
        if self.exclusive is ticket:
            self.exclusive = None
            if self.on_free is not None:
                self.on_free()

    def route(self, line: bytes) -> None:
        try:
            message = jsonrpc.parse_server_line(line)
        except JsonRpcError:
            return
        if self.on_change is not None and message.kind is Kind.NOTIFICATION \
                and message.method in subscriptions.CHANGE_METHODS:
            self.on_change(message)  # a legacy server's change: for the adapter's listen streams, not a request's
            return
        for output in self.mux.from_server(message):
            ticket = self.tickets.get(output.client)
            if ticket is not None:
                with suppress(trio.WouldBlock, trio.ClosedResourceError):
                    ticket.inbox.send_nowait(output.message)  # WouldBlock: a listen whose client lags

    def fail_all(self) -> None:
        """The process exited: every request on it ends with :data:`PROCESS_EXITED`."""
        self.gone = True
        for ticket in list(self.tickets.values()):
            with suppress(trio.WouldBlock, trio.ClosedResourceError):
                ticket.inbox.send_nowait(Message(Kind.RESPONSE, b"", error=PROCESS_EXITED))
            if not ticket.shared:
                ticket.inbox.close()
        self.tickets.clear()
        self.mux.reset()


class StatelessPool:
    """The processes modern requests run on. ``era`` is ``auto`` (probe the first process), ``modern`` or
    ``legacy``. ``size`` processes per era/capability set; a request goes to the least busy one."""

    def __init__(self, settings: AdapterSettings, launcher: Launcher) -> None:
        self.settings = settings
        self.launcher = launcher
        self.era = settings.server_era if settings.server_era != "auto" else ""
        self.size = max(settings.stateless_pool, 1)
        self._known = trio.Event()  # the era is known
        self._probe_ended = trio.Event()  # set (and replaced) when a probe ends, answered or not
        self._probe_failure = ""
        if self.era:
            self._known.set()
        self._groups: dict[bytes, list[PooledProcess]] = {}
        self._nursery: trio.Nursery | None = None
        self._serial = 0
        self._spares: list[PooledProcess] = []
        # input_required rounds of bridged calls, by handle; the state a client holds is sealed with the
        # MCPServer's session key when there is one (any replica can open it), else with a key of this process.
        self.suspended: dict[str, Suspended] = {}
        self.sealer = continuations.Sealer(settings.session_key or secrets.token_bytes(32), settings.input_ttl,
                                           settings.peer_address if settings.session_key else None)
        # subscriptions/listen streams: served by the adapter for a legacy server, fanned out for a modern one
        self.listeners: set[Listener] = set()
        self.modern_listens: set[ModernListen] = set()
        self.watched: Counter[str] = Counter()  # legacy: resource URIs some listener subscribes to
        self._freed = trio.Event()  # set (and replaced) when an exclusive request lets go of its process
        self.tool_headers = param_headers.ToolHeaders()
        self._tools_read_at = -math.inf
        self._tools_lock = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            if self.settings.stateless_warm:  # the first client pays no cold start, and learns the era at once
                self._grow(b"{}")
                nursery.start_soon(self._read_tools)  # nor the first tools/call the Mcp-Param-* check's list
            while True:
                await trio.sleep(min(5.0, self.sealer.ttl / 2))
                await self._expire_suspended()
                await self._reap_extras()

    async def _expire_suspended(self) -> None:
        """A round nobody answered in time: the call is cancelled on the server and forgotten."""
        now = trio.current_time()
        for handle, suspended in list(self.suspended.items()):
            if suspended.expires <= now or suspended.pooled.gone:
                del self.suspended[handle]
                if not suspended.pooled.gone:
                    await self.cancel(suspended.pooled, suspended.ticket, "input timed out")
                suspended.pooled.close_ticket(suspended.ticket)

    async def cancel(self, pooled: PooledProcess, ticket: Ticket, reason: str) -> None:
        """Tell the server to stop every request of ``ticket`` (by the ids the multiplexer knows them under, so a
        resumed call is cancelled too: its id on the process is its first round's)."""
        notices = [jsonrpc.parse_message(jsonrpc.cancelled_notification(own, reason))
                   for own in pooled.mux.own_requests(ticket.number)]
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            for notice in notices:
                await self.send(pooled, ticket, notice)

    async def process_for(self, capabilities: bytes, *, asks: bool = False, logs: bool = False,
                          internal: bool = False) -> PooledProcess:
        """A ready process for a request declaring ``capabilities`` (legacy processes are initialized with
        them; modern ones serve every set). Starts one when the group is not full and all are busy.

        A request that ``logs`` (a log level in its envelope), or that ``asks`` (a call that may make a legacy
        server send server requests) is *exclusive*: a stdio line ties neither log lines nor server requests to
        the request that caused them, so it gets a process with no other exclusive request on it. The group may
        then grow by :data:`EXCLUSIVE_EXTRA` processes, which end again once idle; beyond that it waits.
        ``internal``: the adapter's own request (its tool list), which is no sign that modern clients came."""
        if self.era == "modern" and not logs:  # the usual case, without allocating or a scheduler round trip
            group = self._groups.get(b"")
            if group:
                least = min(group, key=_load)
                if least.ready.is_set() and not least.gone and (not least.load or len(group) >= self.size):
                    return least
        with trio.fail_after(PROBE_TIMEOUT + 5):
            while not self._known.is_set():
                if not any(self._groups.values()):  # none started, or the last probe failed: ask a new process
                    self._grow(b"{}")
                ended = self._probe_ended
                await ended.wait()
                if not self._known.is_set():  # that probe failed: this request fails now, the next asks anew
                    raise LaunchError(self._probe_failure or "the MCP server did not answer its first request")
        if self.era == "legacy" and not internal:
            self._grow_spare()  # only once modern clients show up: an idle adapter runs one extra process
        key = b"" if self.era == "modern" else bridge.canonical(capabilities)
        exclusive = self.exclusive(asks, logs)
        with trio.fail_after(PROBE_TIMEOUT + 30):
            while True:
                chosen = self._choose(key, exclusive)
                if chosen is None:
                    await self._freed.wait()
                    continue
                await chosen.ready.wait()
                if chosen.gone:
                    raise LaunchError("the MCP server process exited before it was ready")
                if not (exclusive and chosen.exclusive is not None):  # taken while it started: choose again
                    return chosen

    def _choose(self, key: bytes, exclusive: bool) -> PooledProcess | None:
        group = [p for p in self._groups.get(key, []) if not p.gone]
        spares = [p for p in self._spares if not p.gone]
        if not group and spares:  # a new capability set: no cold start
            spare = spares[0]
            self._spares.remove(spare)
            spare.capabilities = key
            self._groups.setdefault(key, []).append(spare)
            spare.assigned.set()
            group = [spare]
            self._grow_spare()
        free = [p for p in group if not (exclusive and p.exclusive is not None)]
        idle = [p for p in free if p.ready.is_set() and not p.load]
        if not idle and len(group) < self.size + (EXCLUSIVE_EXTRA if exclusive else 0):
            grown = self._grow(key)
            group.append(grown)
            free.append(grown)
        if not free:
            return None
        candidates = [p for p in free if p.ready.is_set()] or free
        return min(candidates, key=lambda p: p.load)

    def exclusive(self, asks: bool, logs: bool) -> bool:
        return logs or (asks and self.era == "legacy")

    def take(self, pooled: PooledProcess, ticket: Ticket) -> None:
        """``ticket`` holds ``pooled`` exclusively until it is closed: server requests go to it alone."""
        pooled.exclusive = ticket
        pooled.mux.asker = ticket.number

    def _release(self) -> None:
        self._freed.set()
        self._freed = trio.Event()

    async def _reap_extras(self) -> None:
        """Processes grown beyond the pool's size for exclusive requests end once idle for a while."""
        now = trio.current_time()
        for group in self._groups.values():
            extras = [p for p in group if p.ready.is_set() and not p.gone][self.size:]
            for pooled in extras:
                if pooled.load or len(pooled.tickets) > pooled.listens:
                    pooled.idle_since = now
                elif now - pooled.idle_since >= EXTRA_IDLE_SECONDS and pooled.scope is not None:
                    pooled.scope.cancel()

    def _grow(self, key: bytes) -> PooledProcess:
        assert self._nursery is not None, "StatelessPool.run is not running"
        pooled = PooledProcess(self.era or "?", key, on_free=self._release)
        pooled.assigned.set()
        self._groups.setdefault(key, []).append(pooled)
        self._nursery.start_soon(self._run_process, pooled)
        return pooled

    def _grow_spare(self) -> None:
        """Legacy processes started but not initialized (two, so clients declaring a few different capability
        sets in a row find one): a new capability set takes one and pays only the initialize round trip."""
        assert self._nursery is not None
        while len(self._spares) < SPARES and self.era == "legacy" and self.settings.stateless_warm:
            spare = PooledProcess("legacy", b"", on_free=self._release)
            self._spares.append(spare)
            self._nursery.start_soon(self._run_process, spare)

    async def _run_process(self, pooled: PooledProcess) -> None:
        self._serial += 1
        name = f"stateless-{self._serial}"
        pooled.scope = trio.CancelScope()
        try:
            with pooled.scope:
                await self._serve_process(pooled, name)
        finally:
            pooled.fail_all()
            pooled.ready.set()
            group = self._groups.get(pooled.capabilities, [])
            if pooled in group:
                group.remove(pooled)
            if pooled in self._spares:
                self._spares.remove(pooled)
            self._release()  # whoever waits for a free process chooses again

    async def _serve_process(self, pooled: PooledProcess, name: str) -> None:
        try:
            async with self.launcher.launch(name) as process:
                pooled.process = process
                pooled.stdin = StdinWriter(process.send_stream)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, pooled, process)
                    # Failures are caught here, inside the nursery, so they never leave it as an exception group
                    # that would end the adapter: a pooled process that cannot be prepared is only ended.
                    try:
                        await self._prepare(pooled)
                    except _POOL_FAILURES as error:
                        self._failed(error)
                    else:
                        pooled.ready.set()
                        pooled.idle_since = trio.current_time()
                        await self._on_ready(pooled)
                        await process.wait()
                    nursery.cancel_scope.cancel()
        except _POOL_FAILURES as error:
            self._failed(error)
        finally:
            if not self._known.is_set():  # it was probing: whoever waits on the probe hears it failed
                self._end_probe()

    def _failed(self, error: BaseException) -> None:
        print(f"kmcp adapter: stateless pool: {error}", file=sys.stderr, flush=True)
        if not self._known.is_set():
            self._probe_failure = str(error) or type(error).__name__

    def _end_probe(self) -> None:
        self._probe_ended.set()
        self._probe_ended = trio.Event()

    async def _on_ready(self, pooled: PooledProcess) -> None:
        """A new process joins the open listen streams (modern) or the resource subscriptions (legacy)."""
        if pooled.era == "modern":
            for listen in list(self.modern_listens):
                await self.join_listen(listen, pooled)
        else:
            for uri in list(self.watched):
                await self._ask(pooled, subscriptions.resource_request("resources/subscribe", uri), 5.0)

    # -- Mcp-Param-* ---------------------------------------------------------------------------------------------

    async def param_problem(self, headers: dict[str, str], params: bytes) -> str | None:
        """Why a tools/call's ``Mcp-Param-*`` headers contradict its arguments, by the tools' ``x-mcp-header``
        properties (read with the adapter's own tools/list, again after TOOLS_TTL or when the list changed, and
        once more before refusing, so a stale list never refuses a request the server's current tools allow)."""
        fresh = False
        if not self.tool_headers.known or trio.current_time() - self._tools_read_at > TOOLS_TTL:
            fresh = await self._read_tools()
        problem = self.tool_headers.check(headers, params)
        if problem is not None and not fresh and await self._read_tools():
            problem = self.tool_headers.check(headers, params)
        return problem

    async def _read_tools(self) -> bool:
        """Read every page of the tool list; False when it could not be read (then nothing is refused)."""
        started = trio.current_time()
        async with self._tools_lock:
            if self._tools_read_at >= started:
                return True  # read by another request meanwhile
            learned: dict[str, dict[str, str]] = {}
            cursor: str | None = None
            try:
                pooled = await self.process_for(b"{}", internal=True)  # the warm process: no spares for it
                for _ in range(TOOLS_PAGES):
                    answer = await self._ask(pooled, bridge.tools_list_request(pooled.era == "modern", cursor), 10.0)
                    if answer is None or not answer.result:
                        return False
                    page, cursor = param_headers.read_tools(answer.result)
                    learned.update(page)
                    if cursor is None:
                        break
            except (*_POOL_FAILURES, JsonRpcError):
                return False
            self.tool_headers.forget()
            self.tool_headers.learn(learned, complete=cursor is None)
            self._tools_read_at = trio.current_time()
            return True

    # -- subscriptions/listen ----------------------------------------------------------------------------------

    def publish(self, message: Message) -> None:
        """A legacy server's change notification, to every listener that asked for its kind."""
        if message.method == subscriptions.TOOLS_CHANGED:
            self._tools_read_at = -math.inf  # Mcp-Param-* checks read the list again
        for listener in list(self.listeners):
            if listener.filter.wants(message.method or "", message.params):
                with suppress(trio.WouldBlock, trio.ClosedResourceError):
                    listener.inbox.send_nowait(subscriptions.tagged(message, listener.listen_id))

    async def watch(self, uris: list[str], method: str) -> None:
        """Count ``uris`` in (``resources/subscribe``) or out; the server hears of a URI's first and last
        listener, on every ready legacy process (it sends updates only for what its session subscribed to)."""
        changed = []
        for uri in uris:
            before = self.watched[uri]
            self.watched[uri] += 1 if method == "resources/subscribe" else -1
            if self.watched[uri] <= 0:
                del self.watched[uri]
            if (before == 0) == (method == "resources/subscribe"):
                changed.append(uri)
        for pooled in [p for group in self._groups.values() for p in group if p.ready.is_set() and not p.gone]:
            for uri in changed:
                with suppress(*_POOL_FAILURES):
                    await self._ask(pooled, subscriptions.resource_request(method, uri), 5.0)

    async def join_listen(self, listen: ModernListen, pooled: PooledProcess) -> None:
        """Open ``listen`` on one more modern process: its events go into the listen's one channel."""
        if pooled in listen.parts or pooled.gone:
            return
        ticket = pooled.open_ticket(into=listen.inbox)
        listen.parts[pooled] = ticket
        pooled.listens += 1
        with suppress(*_POOL_FAILURES):
            await self.send(pooled, ticket, listen.request)

    async def leave_listen(self, listen: ModernListen) -> None:
        for pooled, ticket in listen.parts.items():
            pooled.listens -= 1
            if not pooled.gone:
                await self.cancel(pooled, ticket, "the client closed the subscription")
            pooled.close_ticket(ticket)
        listen.parts.clear()

    def modern_processes(self) -> list[PooledProcess]:
        return [p for p in self._groups.get(b"", []) if p.ready.is_set() and not p.gone]

    async def _pump(self, pooled: PooledProcess, process: ServerProcess) -> None:
        limit = self.settings.max_line_bytes
        await read_lines(process.receive_stream, limit, pooled.route, on_oversized=lambda: print(
            f"kmcp adapter: stateless pool: server message over {limit} bytes dropped", file=sys.stderr))
        pooled.fail_all()  # its stdout is closed: nothing more can answer what is in flight, so say so now

    async def _prepare(self, pooled: PooledProcess) -> None:
        """Learn the era (the first process only), then initialize a legacy process."""
        if not self.era:
            answer = await self._ask(pooled, bridge.discover_probe(), PROBE_TIMEOUT)
            if answer is not None and _server_gone(answer):
                raise LaunchError("the MCP server exited before it answered its first request (server/discover)")
            if answer is None:  # no verdict: the probe may have fixed a modern server's era, so this process is
                # spent, and the next request asks a new one
                raise LaunchError(f"the MCP server did not answer server/discover in {PROBE_TIMEOUT:g} s")
            self.era = "modern" if bridge.is_modern_discover(answer) else "legacy"
            self._known.set()
            self._end_probe()
            print(f"kmcp adapter: the MCP server speaks the {'2026-07-28' if self.era == 'modern' else 'handshake'}"
                  " protocol era: 2026-07-28 requests are " + ("passed through" if self.era == "modern" else
                                                                "bridged"), file=sys.stderr, flush=True)
            if self.era == "modern":
                self._groups[b""] = self._groups.pop(pooled.capabilities, [])
                pooled.capabilities = b""
        pooled.era = self.era
        if self.era == "legacy":
            pooled.on_change = self.publish
            await pooled.assigned.wait()
            answer = await self._ask(pooled, bridge.initialize_request(pooled.capabilities or b"{}"), 60.0)
            if answer is None or not answer.result:
                raise LaunchError("the MCP server did not answer initialize")
            pooled.initialize_result = answer.result
            await pooled.write([bridge.INITIALIZED])

    async def _ask(self, pooled: PooledProcess, request: Message, seconds: float) -> Message | None:
        ticket = pooled.open_ticket()
        try:
            try:
                await pooled.write([o.data for o in pooled.mux.from_client(ticket.number, request)
                                    if isinstance(o, ToServer)])
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                raise LaunchError(f"the MCP server exited (or closed its stdin) before it answered "
                                  f"{request.method}") from None
            with trio.move_on_after(seconds):
                async for message in ticket.inbox:
                    if message.kind is Kind.RESPONSE:
                        return message
            return None
        finally:
            pooled.close_ticket(ticket)

    async def send(self, pooled: PooledProcess, ticket: Ticket, message: Message) -> None:
        outputs = pooled.mux.from_client(ticket.number, message)
        for output in outputs:
            if isinstance(output, ToClient):
                ticket.inbox.send_nowait(output.message)
        lines = [output.data for output in outputs if isinstance(output, ToServer)]
        if lines:
            await pooled.write(lines)


# -- answering one modern request over HTTP ----------------------------------------------------------------------

_REQUEST_SCOPED = ("notifications/progress", "notifications/message")
GATHER_SECONDS = 0.05  # after a server request, how long more may follow before the round is offered


@dataclass(eq=False)
class Listener:
    """A listen stream the adapter serves itself (a legacy server): what it asked for, and where events go."""

    filter: subscriptions.Filter
    listen_id: RequestId
    inbox: Inbox[Message]


@dataclass(eq=False)
class ModernListen:
    """A listen stream passed through to every modern pooled process (a process hears only its own changes)."""

    request: Message
    inbox: Inbox[Message]
    parts: dict[PooledProcess, Ticket] = field(default_factory=dict)


@dataclass(eq=False)
class Suspended:
    """A legacy call waiting for its client's answers to the server requests it made (an input_required round)."""

    pooled: PooledProcess
    ticket: Ticket
    requests: list[continuations.InputRequest]
    expires: float  # trio clock


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
    listener = Listener(granted, modern.id, _mailbox(LISTEN_BUFFER))
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
    listen = ModernListen(modern.message, _mailbox(LISTEN_BUFFER))
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
            if not _server_gone(message) or not live():
                return message
        elif message.kind is Kind.NOTIFICATION and deliver(message):
            await exchange.notify(message, always=True)


def _server_gone(message: Message) -> bool:
    return message.error == PROCESS_EXITED


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
