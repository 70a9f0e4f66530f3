"""The MCP session core: a sans-IO state machine between one HTTP client and one stdio server.

Like ``h11.Connection`` it never touches a socket or a process. The transport feeds it what the client posted
(``from_client``) and what the server printed (``from_server``), and it answers with the bytes to write to the
server and the :class:`Delivery` list saying which client *stream* each server message belongs to.

A stream is where the client listens: the SSE (or JSON) answer of one POST, or the session's standalone stream
(``STANDALONE``: the Streamable HTTP GET stream, or the legacy ``/sse`` stream). Responses go to the stream of
their request; progress goes to the stream of the request that asked for it; other server notifications and
server->client requests (sampling, elicitation, roots) go to the oldest stream still waiting for a response,
else to the standalone stream; ``*/list_changed`` and ``resources/updated`` always go to the standalone stream.
"""

from __future__ import annotations

import enum
from collections import Counter

import msgspec

from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.jsonrpc import JsonRpcError, Kind, Message, RequestId

STANDALONE = 0

# The 2026-style probe newer SDK clients send first; answering "method not found" at once makes them fall back.
DISCOVER_METHOD = "server/discover"
_BROADCAST_SUFFIXES = ("/list_changed", "resources/updated")


class State(enum.Enum):
    NEW = "new"  # no initialize seen yet
    INITIALIZING = "initializing"  # initialize forwarded, no result yet
    READY = "ready"  # initialize answered
    CLOSED = "closed"  # the server process is gone


class Delivery(msgspec.Struct, frozen=True, gc=False):
    """One message for the client, on ``stream``; ``last`` marks the final response that stream waits for."""

    stream: int
    data: bytes
    last: bool = False
    response: bool = False  # a response to a client request (not a notification or a server request)
    method: str | None = None  # for a response: the method of its request
    elapsed: float = 0.0  # for a response: seconds since its request (by the clock the caller passes)


class ClientOutcome(msgspec.Struct, frozen=True, gc=False):
    """What posting client messages produced: messages for the server and answers given locally."""

    messages: list[Message]  # for the server, in order
    deliveries: list[Delivery]

    @property
    def to_server(self) -> bytes:
        """The messages as the lines a server process reads on its stdin."""
        return b"".join([message.raw + b"\n" for message in self.messages])


class SessionClosed(Exception):
    """The session's server process has exited; the session cannot take more messages."""


class _Pending:
    """A client request the server has not answered yet."""

    __slots__ = ("heard", "method", "started", "stream", "token")

    def __init__(self, stream: int, method: str, started: float, token: RequestId | None) -> None:
        self.stream = stream
        self.method = method
        self.started = started
        self.heard = started  # the request's last sign of life (progress counts): its timeout runs from here
        self.token = token


# What the core could not route, by kind; the I/O layer logs the counts (rate-limited).
GARBAGE = "non-JSON-RPC output"
UNKNOWN_RESPONSE = "a response to no pending request"
NULL_ID = 'an error with "id": null while several requests were pending'


class SessionCore:
    def __init__(self) -> None:
        self.state = State.NEW
        self.protocol_version: str | None = None  # negotiated: the server's initialize result
        self.client_protocol_version: str | None = None  # what the client asked for
        self.client_initialized = False  # notifications/initialized seen
        self.problems: Counter[str] = Counter()  # server output dropped, by kind (GARBAGE, UNKNOWN_RESPONSE, …)
        self._initialize_id: RequestId | None = None
        self._next_stream = STANDALONE + 1
        self._pending: dict[RequestId, _Pending] = {}  # by client request id
        self._waiting: dict[int, int] = {}  # stream -> responses it still waits for (insertion order = age)
        self._progress: dict[RequestId, RequestId] = {}  # progress token -> the client request id carrying it
        self._server_requests: dict[RequestId, int] = {}  # server->client request id -> stream it went to

    # -- client side -------------------------------------------------------------------------------------------

    def open_stream(self) -> int:
        """A new stream id for the answer of one POST."""
        stream = self._next_stream
        self._next_stream += 1
        return stream

    def stream_waiting(self, stream: int) -> bool:
        """Whether ``stream`` still waits for at least one response."""
        return stream in self._waiting

    @property
    def pending_requests(self) -> int:
        return len(self._pending)

    @property
    def garbage_lines(self) -> int:
        """Lines from the server that were not JSON-RPC."""
        return self.problems[GARBAGE]

    def from_client(self, messages: list[Message], stream: int, now: float = 0.0) -> ClientOutcome:
        """Accept what one POST carried. Requests are answered on ``stream``; raises JsonRpcError for a request
        whose id is already pending, SessionClosed once the server is gone."""
        if self.state is State.CLOSED:
            raise SessionClosed("the MCP server process has exited")
        seen: set[RequestId] = set()
        for message in messages:
            if message.kind is Kind.REQUEST and message.id is not None:  # (a request always has an id)
                if message.id in self._pending or message.id in seen:
                    raise JsonRpcError(jsonrpc.INVALID_REQUEST, f"request id {message.id!r} is already in use",
                                       message.id)
                seen.add(message.id)
        out: list[Message] = []
        local: list[Delivery] = []
        for message in messages:
            request_id = message.id
            if message.kind is Kind.REQUEST and request_id is not None:
                if message.method == DISCOVER_METHOD:
                    local.append(Delivery(stream, jsonrpc.error_response(
                        request_id, jsonrpc.METHOD_NOT_FOUND, f"Method not found: {DISCOVER_METHOD}"),
                        response=True, method=message.method))
                    continue
                if message.method == "initialize":
                    self._initialize_id = request_id
                    self.client_protocol_version = jsonrpc.requested_version(message.params)
                    if self.state is State.NEW:
                        self.state = State.INITIALIZING
                token = jsonrpc.progress_token(message.params)
                self._pending[request_id] = _Pending(stream, message.method or "", now, token)
                self._waiting[stream] = self._waiting.get(stream, 0) + 1
                if token is not None:
                    self._progress[token] = request_id
            elif message.kind is Kind.RESPONSE:
                if request_id is not None:
                    self._server_requests.pop(request_id, None)
            elif message.method == "notifications/initialized":
                self.client_initialized = True
            elif message.method == "notifications/cancelled":
                local.extend(self._cancel(jsonrpc.cancelled_request(message.params)))
            out.append(message)
        if stream not in self._waiting:  # answered entirely here: the last local answer on it ends the stream
            for index in range(len(local) - 1, -1, -1):
                if local[index].stream == stream:
                    if not local[index].last:
                        done = local[index]
                        local[index] = Delivery(stream, done.data, last=True, response=True, method=done.method)
                    break
        return ClientOutcome(out, local)

    def _cancel(self, request_id: RequestId | None) -> list[Delivery]:
        """The client gave up on a request. The server is told (the notification is forwarded) but need not
        answer, so the request's stream is closed now with an error; a late answer is dropped as unknown."""
        if request_id is None or request_id not in self._pending:
            return []
        return [self._fail(request_id, jsonrpc.REQUEST_CANCELLED, "Request cancelled")]

    def _fail(self, request_id: RequestId, code: int, message: str) -> Delivery:
        """Answer a pending request here, with an error, and forget it."""
        pending = self._forget(request_id)
        data = jsonrpc.error_response(request_id, code, message)
        return Delivery(pending.stream, data, last=self._settle(pending.stream), response=True, method=pending.method)

    def _forget(self, request_id: RequestId) -> _Pending:
        pending = self._pending.pop(request_id)
        if pending.token is not None:
            self._progress.pop(pending.token, None)
        return pending

    def expire(self, now: float, timeout: float) -> ClientOutcome:
        """Fail every request the server has said nothing about for ``timeout`` seconds (progress counts as
        something): the client gets a -32001 error, the server a ``notifications/cancelled``."""
        late = [request_id for request_id, pending in self._pending.items() if now - pending.heard >= timeout]
        out: list[Message] = []
        deliveries: list[Delivery] = []
        for request_id in late:
            reason = f"Request timed out: no answer from the MCP server in {timeout:g} s"
            deliveries.append(self._fail(request_id, jsonrpc.REQUEST_TIMEOUT, reason))
            out.append(jsonrpc.parse_message(jsonrpc.cancelled_notification(request_id, reason)))
        return ClientOutcome(out, deliveries)

    # -- server side -------------------------------------------------------------------------------------------

    def from_server(self, line: bytes, now: float = 0.0) -> list[Delivery]:
        """Route one line the server printed. What cannot be routed is counted in ``problems`` and dropped."""
        if not line.strip():
            return []
        try:
            message = jsonrpc.parse_server_line(line)
        except JsonRpcError:
            self.problems[GARBAGE] += 1
            return []
        return self.from_server_message(message, now)

    def from_server_message(self, message: Message, now: float = 0.0) -> list[Delivery]:
        """Route one message the server sent, already parsed (by the shared process's multiplexer, say)."""
        if message.kind is Kind.RESPONSE:
            return self._response(message, now)
        if message.kind is Kind.REQUEST and message.id is not None:  # (a request always has an id)
            stream = self._oldest_waiting()
            self._server_requests[message.id] = stream
            return [Delivery(stream, message.raw)]
        method = message.method or ""
        if method == "notifications/progress":
            token = jsonrpc.progress_token_of_notification(message.params)
            request_id = self._progress.get(token) if token is not None else None
            pending = self._pending.get(request_id) if request_id is not None else None
            if pending is None or pending.stream not in self._waiting:
                return [Delivery(STANDALONE, message.raw)]
            pending.heard = now
            return [Delivery(pending.stream, message.raw)]
        if method.endswith(_BROADCAST_SUFFIXES):
            return [Delivery(STANDALONE, message.raw)]
        return [Delivery(self._oldest_waiting(), message.raw)]

    def _response(self, message: Message, now: float) -> list[Delivery]:
        request_id = message.id
        if request_id is None:
            return self._orphan_error(message, now)
        if request_id not in self._pending:
            self.problems[UNKNOWN_RESPONSE] += 1
            return []  # an answer to nothing we forwarded (or to a request already failed here): drop it
        pending = self._forget(request_id)
        if request_id == self._initialize_id:
            self._initialize_id = None
            if not message.is_error:
                self.protocol_version = jsonrpc.negotiated_version(message.result)
                self.state = State.READY
            elif self.state is State.INITIALIZING:
                self.state = State.NEW
        return [Delivery(pending.stream, message.raw, last=self._settle(pending.stream), response=True,
                         method=pending.method, elapsed=now - pending.started)]

    def _orphan_error(self, message: Message, now: float) -> list[Delivery]:
        """An error with ``"id": null``: the server could not read a request. With exactly one request pending it
        can only be that one's, so it is answered with the error under its id; otherwise nobody can be named."""
        if len(self._pending) != 1:
            self.problems[NULL_ID if self._pending else UNKNOWN_RESPONSE] += 1
            return []
        [request_id] = self._pending
        data = b'{"jsonrpc":"2.0","id":' + jsonrpc.encode(request_id) + b',"error":' + message.error + b"}"
        return self._response(Message(Kind.RESPONSE, data, id=request_id, error=message.error), now)

    def _settle(self, stream: int) -> bool:
        left = self._waiting[stream] - 1
        if left:
            self._waiting[stream] = left
            return False
        del self._waiting[stream]
        return True

    def _oldest_waiting(self) -> int:
        return next(iter(self._waiting), STANDALONE)

    def child_exited(self, reason: str = "the MCP server process exited") -> list[Delivery]:
        """The server is gone: every pending request gets a JSON-RPC error and the session closes."""
        self.state = State.CLOSED
        deliveries = [self._fail(request_id, jsonrpc.SERVER_GONE, reason) for request_id in list(self._pending)]
        self._progress.clear()
        self._server_requests.clear()
        return deliveries
