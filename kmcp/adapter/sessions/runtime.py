"""Live sessions: a :class:`SessionCore` wired to a server process and to the HTTP responses listening to it.

``Session.run`` owns the process (through the launcher's context manager) and pumps its stdout into the core;
transports post client messages with ``Session.post`` and listen to a stream with ``Session.listen``. The
:class:`SessionTable` creates sessions (``--max-sessions``), finds them, ends them, and reaps idle ones.
"""

from __future__ import annotations

import math
import select
import sys
from collections import deque
from contextlib import suppress
from typing import Protocol, runtime_checkable

import msgspec
import trio

from kmcp.adapter.metrics import Metrics
from kmcp.adapter.protocol.jsonrpc import Kind, Message
from kmcp.adapter.protocol.session import STANDALONE, ClientOutcome, Delivery, SessionClosed, SessionCore
from kmcp.adapter.protocol.session_ids import SessionIds
from kmcp.adapter.sessions.inbox import Inbox as _Inbox
from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import Launcher, LaunchError, ServerProcess, describe_exit
from kmcp.adapter.stdio.pipes import StdinWriter, read_lines

STREAM_BUFFER = 4096  # messages queued for one listener before it is dropped as too slow (also a byte bound)


class StreamItem(msgspec.Struct, frozen=True, gc=False):
    """A message on its way to one listening HTTP response."""

    seq: int
    stream: int
    data: bytes
    last: bool
    response: bool

    @property
    def event_id(self) -> str:
        return f"{self.stream}-{self.seq}"


class TooManySessions(Exception):
    pass


@runtime_checkable
class MessagePort(Protocol):
    """A server process that takes and gives parsed messages, not lines: the shared process's view for one
    session (``sessions/shared.py``). The session then hands the core's messages over as they are, and routes
    what comes back without parsing it again."""

    async def post_messages(self, messages: list[Message]) -> None:
        """Send ``messages`` to the server; raises trio.ClosedResourceError when it is gone."""
        ...

    async def next_messages(self) -> list[Message]:
        """What the server sent since the last call, waiting for at least one message; [] once it is gone."""
        ...


def parse_event_id(value: str) -> tuple[int, int] | None:
    stream, sep, seq = value.strip().partition("-")
    if not sep or not stream.isdigit() or not seq.isdigit():
        return None
    return int(stream), int(seq)


class Session:
    def __init__(self, session_id: str, transport: str, settings: AdapterSettings, metrics: Metrics) -> None:
        self.id = session_id
        self.transport = transport  # "streamable" | "sse" | "ws"
        self.settings = settings
        self.metrics = metrics
        self.core = SessionCore()
        self.ended = trio.Event()
        self.end_reason = ""
        self.last_activity = trio.current_time()
        self._process: ServerProcess | None = None
        self._stdin: StdinWriter | None = None
        self._port: MessagePort | None = None  # set when the process speaks messages (shared mode)
        self._listeners: dict[int, Inbox] = {}
        # Both bounded in messages and in bytes (settings.event_log_bytes, settings.stream_buffer_bytes).
        self._log: deque[StreamItem] = deque()
        self._log_bytes = 0
        self._log_limits = (max(settings.event_log_size, 0), settings.event_log_bytes)
        self._unclaimed: deque[StreamItem] = deque()  # standalone messages nobody heard yet
        self._unclaimed_bytes = 0
        self._slow_reported = False
        self._seq = 0
        self._cancel = trio.CancelScope()
        self.warm = False  # started ahead of demand, not handed out yet

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def run(self, launcher: Launcher, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the process, serve it until it exits or the session is ended, then fail what is pending."""
        reason = "the MCP server process exited"
        try:
            with self._cancel:
                async with launcher.launch(self.id) as process:
                    self.metrics.child_starts += 1
                    self._process = process
                    self._port = process if isinstance(process, MessagePort) else None
                    task_status.started()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._watch_idle, nursery.cancel_scope)
                        with trio.CancelScope() as pump_scope:
                            nursery.start_soon(self._stop_pump_on_exit, process, pump_scope)
                            await self._pump(process)
                        with trio.move_on_after(self.settings.kill_grace):
                            code = await process.wait()
                            reason = f"the MCP server process exited ({describe_exit(code)})"
                        nursery.cancel_scope.cancel()
            if self._cancel.cancelled_caught:
                reason = self.end_reason or "the MCP session was ended"
        finally:
            if self._process is not None:
                self.metrics.child_exits += 1
            self._finish(reason)

    def end(self, reason: str) -> None:
        """End the session from outside: its process is stopped and its pending requests fail."""
        if not self.end_reason:
            self.end_reason = reason
        self._cancel.cancel()

    @property
    def gone(self) -> bool:
        """Ended, or ending: the session takes no more requests."""
        return bool(self.end_reason) or self.ended.is_set()

    def _finish(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = self.end_reason or reason
        for delivery in self.core.child_exited(reason):
            self._deliver_now(delivery)
        for channel in self._listeners.values():
            channel.close()
        self._listeners.clear()
        # Nothing can resume or claim these any more; a handler still holding the session must not keep them.
        self._log.clear()
        self._unclaimed.clear()
        self._log_bytes = self._unclaimed_bytes = 0
        self.ended.set()

    async def _watch_idle(self, scope: trio.CancelScope) -> None:
        idle = self.settings.session_idle_timeout
        while True:
            await trio.sleep_until(self.last_activity + idle)
            if trio.current_time() >= self.last_activity + idle and not self.busy:
                self.end_reason = "the MCP session was idle too long"
                self._cancel.cancel()
                return
            if self.busy:
                self.touch()

    @property
    def busy(self) -> bool:
        return bool(self.warm or self.core.pending_requests or self._listeners)

    def touch(self) -> None:
        self.last_activity = trio.current_time()

    # -- server -> client --------------------------------------------------------------------------------------

    async def _stop_pump_on_exit(self, process: ServerProcess, pump_scope: trio.CancelScope) -> None:
        """End the pump when the process exits even if its stdout never reaches EOF.

        A FIFO bridge's stdout is held open read-write by the adapter (so opening never blocks), so a server that
        died with its container gives no EOF: only the bridge's exit report. What the process wrote before it
        exited is already in the pipe, so the pump first reads all of it.
        """
        await process.wait()
        stream = process.receive_stream
        if not isinstance(stream, trio.lowlevel.FdStream):
            return  # no fd to look at: the pump ends at EOF as before
        fd = stream.fileno()
        while True:
            try:
                readable, _, _ = select.select([fd], [], [], 0)
            except (OSError, ValueError):
                break
            if not readable:
                break
            await trio.sleep(0.005)
        pump_scope.cancel()

    async def _pump(self, process: ServerProcess) -> None:
        """Route each line of the server's stdout (or each message of a message port) through the core."""
        core = self.core
        if self._port is not None:
            while messages := await self._port.next_messages():
                now = trio.current_time()
                for message in messages:
                    for delivery in core.from_server_message(message, now):
                        self._deliver_now(delivery)
            return

        def on_line(line: bytes) -> None:
            for delivery in core.from_server(line, trio.current_time()):
                self._deliver_now(delivery)

        def on_chunk() -> None:
            if core.problems:
                self._report_problems()

        limit = self.settings.max_line_bytes
        await read_lines(process.receive_stream, limit, on_line, on_chunk=on_chunk,
                         on_oversized=lambda: self._warn_oversized(limit))

    _reported_at = -math.inf
    PROBLEM_LOG_INTERVAL = 10.0  # at most one line per session this often: a server printing junk cannot flood

    def _warn_oversized(self, limit: int) -> None:
        print(f"kmcp adapter: [{self.id[:8]}] server message over {limit} bytes dropped", file=sys.stderr)

    def _report_problems(self) -> None:
        """Log what the core dropped since the last report, as one rate-limited line of counts."""
        now = trio.current_time()
        if now - self._reported_at < self.PROBLEM_LOG_INTERVAL:
            return
        self._reported_at = now
        counts = ", ".join(f"{count} x {kind}" for kind, count in self.core.problems.items())
        self.core.problems.clear()
        print(f"kmcp adapter: [{self.id[:8]}] server stdout lines dropped (ignored): {counts}", file=sys.stderr)

    def _deliver_now(self, delivery: Delivery) -> None:
        self._seq += 1
        item = StreamItem(self._seq, delivery.stream, delivery.data, delivery.last, delivery.response)
        if delivery.response and delivery.method is not None:
            self.metrics.observe_latency(delivery.method, delivery.elapsed)
        size = len(item.data)
        log = self._log
        most, most_bytes = self._log_limits
        if most:
            log.append(item)
            self._log_bytes += size
            while len(log) > 1 and (self._log_bytes > most_bytes or len(log) > most):
                self._log_bytes -= len(log.popleft().data)
        channel = self._listeners.get(delivery.stream)
        if channel is None:
            if delivery.stream == STANDALONE:
                unclaimed = self._unclaimed
                unclaimed.append(item)
                self._unclaimed_bytes += size
                while len(unclaimed) > 1 and (self._unclaimed_bytes > self.settings.stream_buffer_bytes
                                              or len(unclaimed) > STREAM_BUFFER):
                    self._unclaimed_bytes -= len(unclaimed.popleft().data)
                    self._report_slow("no client listens on the standalone stream; the oldest unheard "
                                      "messages are dropped")
            return
        try:
            channel.send_nowait(item)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            # Too slow or gone: drop the listener rather than stall every stream of the session.
            channel.close()
            del self._listeners[delivery.stream]
            if isinstance(error, trio.WouldBlock):
                self._dropped_slow(delivery.stream)

    def _dropped_slow(self, stream: int) -> None:
        """A listener's client read too slowly: its queue was full (settings.stream_buffer_bytes). A legacy /sse
        or WebSocket session has no other way to reach its client, so it ends rather than lose replies."""
        limit = self.settings.stream_buffer_bytes
        if stream == STANDALONE and self.transport in ("sse", "ws"):
            self._report_slow(f"the client did not read its stream ({limit} bytes queued): ending the session")
            self.end(f"the client did not read its stream (over {limit} bytes queued)")
        else:
            self._report_slow(f"the client did not read stream {stream} ({limit} bytes queued): stream dropped")

    def _report_slow(self, what: str) -> None:
        if not self._slow_reported:  # once per session: a client that does not read would flood the log
            self._slow_reported = True
            print(f"kmcp adapter: [{self.id[:8]}] {what}", file=sys.stderr)

    def to_standalone(self, item: StreamItem) -> None:
        """Re-route a message its own stream cannot carry (a JSON-only POST) to the standalone stream."""
        self._deliver_now(Delivery(STANDALONE, item.data))

    # -- client -> server --------------------------------------------------------------------------------------

    async def expire_requests(self, now: float) -> None:
        """Fail the requests the server left unanswered past ``request_timeout`` and tell the server."""
        outcome = self.core.expire(now, self.settings.request_timeout)
        self.metrics.requests_timed_out += len(outcome.deliveries)
        await self._apply(outcome)

    async def post(self, messages: list[Message], stream: int) -> None:
        """Forward what the client posted; requests will be answered on ``stream``."""
        if self.gone:
            raise SessionClosed(self.end_reason)
        self.touch()
        outcome: ClientOutcome = self.core.from_client(messages, stream, trio.current_time())
        for message in messages:
            if message.kind is Kind.REQUEST:
                self.metrics.requests[message.method or ""] += 1
        await self._apply(outcome)

    async def _apply(self, outcome: ClientOutcome) -> None:
        """Deliver the core's local answers and write its bytes to the server's stdin."""
        for delivery in outcome.deliveries:
            self._deliver_now(delivery)
        if not outcome.messages or self._process is None:
            return
        if self._port is not None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._port.post_messages(outcome.messages)
            return
        data = outcome.to_server
        # A dead server is noticed by the stdout pump, which fails the pending requests.
        if self._stdin is None:
            self._stdin = StdinWriter(self._process.send_stream)
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self._stdin.write(data)

    def listen(self, stream: int, after: int | None = None, *, fresh: bool = False) -> Listening:
        """Attach a listener to ``stream`` (replacing any previous one), as a context manager giving its
        :class:`Inbox`. ``after``: replay logged events with a higher sequence number first (Last-Event-ID); on
        the standalone stream, unheard messages come first. ``fresh``: the stream was just opened for a POST
        whose messages are not posted yet."""
        inbox = stream_inbox(self.settings.stream_buffer_bytes)
        if after is not None:
            for item in self._log:
                if item.stream == stream and item.seq > after:
                    inbox.replay(item)
        if stream == STANDALONE:
            while self._unclaimed:
                item = self._unclaimed.popleft()
                if after is None or item.seq > after:
                    inbox.replay(item)
            self._unclaimed_bytes = 0
        previous = self._listeners.pop(stream, None)
        if previous is not None:
            previous.close()
        if self.ended.is_set() or not (fresh or stream == STANDALONE or self.core.stream_waiting(stream)):
            inbox.close()  # nothing more will come: the listener drains the replay and stops
        else:
            self._listeners[stream] = inbox
        return Listening(self, stream, inbox)

    def _unlisten(self, stream: int, inbox: Inbox) -> None:
        if self._listeners.get(stream) is inbox:
            del self._listeners[stream]
        inbox.close()
        self.touch()


Inbox = _Inbox[StreamItem]


def _item_size(item: StreamItem) -> int:
    return len(item.data)


def stream_inbox(limit: int) -> Inbox:
    """A listener's inbox: ``limit`` bytes of message data, and at most STREAM_BUFFER messages."""
    return _Inbox(_item_size, limit, STREAM_BUFFER)  # not ``Inbox(...)``: calling the alias costs a typing call


class Listening:
    """``with session.listen(...) as inbox``: detaches the listener on exit."""

    __slots__ = ("_inbox", "_session", "_stream")

    def __init__(self, session: Session, stream: int, inbox: Inbox) -> None:
        self._session = session
        self._stream = stream
        self._inbox = inbox

    def __enter__(self) -> Inbox:
        return self._inbox

    def __exit__(self, *exc_info: object) -> None:
        self._session._unlisten(self._stream, self._inbox)


class SessionTable:
    """Every live session, by id. Runs each session in its own task of the table's nursery.

    With ``warm_pool`` N, N processes are started ahead of demand (sessions not yet handed out, invisible to
    clients), so a new MCP session does not wait for the server's cold start; each hand-out starts a
    replacement."""

    def __init__(self, settings: AdapterSettings, launcher: Launcher, metrics: Metrics) -> None:
        self.settings = settings
        self.launcher = launcher
        self.metrics = metrics
        self.ids = SessionIds(settings.session_key, settings.peer_address)  # ids name this replica if asked
        self._sessions: dict[str, Session] = {}
        self._warm: deque[Session] = deque()
        self._warming = 0
        self._closing = False
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            self._top_up()
            if self.settings.request_timeout > 0:
                await self._expire_requests()
            await trio.sleep_forever()

    async def _expire_requests(self) -> None:
        """One sweep over every session's pending requests, a few times per timeout (at least once a second),
        rather than a timer per request on the hot path."""
        interval = min(1.0, self.settings.request_timeout / 4)
        while True:
            await trio.sleep(interval)
            await self._expire_once(trio.current_time())

    async def _expire_once(self, now: float) -> None:
        # A function of its own, so no loop variable keeps an ended session alive while the sweep sleeps.
        for session in list(self._sessions.values()):
            if session.core.pending_requests and not session.gone:
                await session.expire_requests(now)

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def warm(self) -> int:
        return len(self._warm)

    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None and session.gone:
            return None
        return session

    async def create(self, transport: str) -> Session:
        """Start a session and its process. Raises TooManySessions, or LaunchError from the launcher."""
        assert self._nursery is not None, "SessionTable.run is not running"
        if len(self._sessions) >= self.settings.max_sessions:
            self.metrics.sessions_rejected += 1
            raise TooManySessions()
        while self._warm:
            session = self._warm.popleft()
            if session.gone:
                continue
            session.warm = False
            session.transport = transport
            session.touch()
            self._register(session)
            self.metrics.sessions_total += 1
            self._top_up()
            return session
        session = Session(self.ids.mint(), transport, self.settings, self.metrics)
        self._register(session)
        try:
            await self._nursery.start(self._run_session, session)
        except BaseException:
            self._unregister(session)
            raise
        self.metrics.sessions_total += 1
        self._top_up()
        return session

    def _register(self, session: Session) -> None:
        self._sessions[session.id] = session
        self.metrics.active_sessions = len(self._sessions)

    def _unregister(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        self.metrics.active_sessions = len(self._sessions)

    def _top_up(self) -> None:
        assert self._nursery is not None
        while not self._closing and len(self._warm) + self._warming < self.settings.warm_pool:
            self._warming += 1
            self._nursery.start_soon(self._warm_one)

    async def _warm_one(self) -> None:
        assert self._nursery is not None
        session = Session(self.ids.mint(), "", self.settings, self.metrics)
        session.warm = True
        try:
            await self._nursery.start(self._run_session, session)
        except LaunchError as error:
            print(f"kmcp adapter: warm pool: {error}", file=sys.stderr)
            return
        finally:
            self._warming -= 1
        self._warm.append(session)

    async def _run_session(self, session: Session, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await session.run(self.launcher, task_status=task_status)
        finally:
            self._unregister(session)
            if session in self._warm:
                self._warm.remove(session)

    def end_all(self, reason: str) -> None:
        self._closing = True
        for session in [*self._sessions.values(), *self._warm]:
            session.end(reason)

    async def wait_empty(self) -> None:
        while self._sessions or self._warm:
            session = next(iter(self._sessions.values())) if self._sessions else self._warm[0]
            await session.ended.wait()
            await trio.lowlevel.checkpoint()
