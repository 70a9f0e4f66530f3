"""The pool of warm server processes that stateless (2026-07-28) requests share: processes, tickets, eras.

Processes are grouped by era and, for a bridged (handshake-era) server, by client-capability set; each has a
:class:`~kmcp.adapter.protocol.multiplexer.Multiplexer` that rewrites ids so requests from many clients share it.
The pool probes the server's era once, keeps spares warm, gives calls that a stdio line cannot attribute a
process of their own, reads the tools' ``x-mcp-header`` declarations, and holds the state of suspended
``input_required`` rounds and listen streams. How one HTTP request is answered on it: ``stateless.py``.
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

from kmcp.adapter.protocol import bridge, continuations, jsonrpc, param_headers, subscriptions
from kmcp.adapter.protocol.jsonrpc import JsonRpcError, Kind, Message, RequestId
from kmcp.adapter.protocol.multiplexer import Multiplexer, ToClient, ToServer
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


def mailbox(most: int = sys.maxsize) -> Inbox[Message]:
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
        ticket = Ticket(self.mux.attach(), into, True) if into is not None else Ticket(self.mux.attach(), mailbox())
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
        self._tools_refreshing = False

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
        if not self.tool_headers.known:
            fresh = await self._read_tools()
        elif trio.current_time() - self._tools_read_at > TOOLS_TTL:
            self._refresh_tools_soon()  # off this request's path: the list it has is checked meanwhile
        problem = self.tool_headers.check(headers, params)
        if problem is not None and not fresh and await self._read_tools():
            problem = self.tool_headers.check(headers, params)
        return problem

    def _refresh_tools_soon(self) -> None:
        if not self._tools_refreshing and self._nursery is not None:
            self._tools_refreshing = True
            self._nursery.start_soon(self._refresh_tools)

    async def _refresh_tools(self) -> None:
        try:
            await self._read_tools()
        finally:
            self._tools_refreshing = False

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
            self._tools_read_at = -math.inf  # Mcp-Param-* checks read the list again, starting now
            self._refresh_tools_soon()
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
            if answer is not None and server_gone(answer):
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


def server_gone(message: Message) -> bool:
    return message.error == PROCESS_EXITED


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
