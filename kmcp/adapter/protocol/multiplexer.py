"""Many clients on one stdio server process, sans-IO: the rewriting that keeps them from seeing each other.

A *client* is whoever waits for answers: an MCP session in ``--session-mode shared``, or one stateless
(2026-07-28) request on a pooled process. The multiplexer takes parsed messages from clients and from the server
and says what to write to the server (:class:`ToServer`) and what each client receives (:class:`ToClient`):

- a client's request id becomes a unique id on the process, and the response gets the client's id back;
- so does a progress token, so ``notifications/progress`` reaches the client that asked;
- ``notifications/cancelled`` names the process-side id going in, the client's id coming out;
- ``initialize`` reaches the server once; later clients get the first result under their own id, and only the
  first ``notifications/initialized`` is passed on;
- a server->client request (sampling, elicitation, roots) goes to the client named :attr:`Multiplexer.asker` when
  one is (a pool keeps one call per process that may cause them), else to the client with a request in flight (the
  most recent one to send if several), and its answer goes back under the server's own id;
- ``*/list_changed``, ``notifications/message`` and ``notifications/resources/updated`` go to every client;
- an error with ``"id": null`` goes to the one request in flight, when there is exactly one.

Messages are re-framed, not re-encoded: ``params``/``result``/``error`` stay the bytes the sender wrote (only a
progress token or a cancelled request id is decoded, and only where one is present).
"""

from __future__ import annotations

import itertools
from collections import Counter

import msgspec

from kmcp.adapter.protocol import era, jsonrpc
from kmcp.adapter.protocol.jsonrpc import Kind, Message, RequestId

_BROADCAST_PREFIXES = ("notifications/message", "notifications/resources/updated")

# What the multiplexer dropped, by kind (the I/O layer logs the counts).
UNKNOWN_RESPONSE = "a response to no pending request"
NULL_ID = 'an error with "id": null while several requests were pending'
UNROUTABLE_REQUEST = "a server request with no client to take it"


def is_broadcast(method: str) -> bool:
    return method.endswith("/list_changed") or method.startswith(_BROADCAST_PREFIXES)


class ToServer(msgspec.Struct, frozen=True, gc=False):
    """One line (without its newline) for the server's stdin."""

    data: bytes


class ToClient(msgspec.Struct, frozen=True, gc=False):
    """A message for ``client``, already carrying that client's own ids."""

    client: int
    message: Message


Output = ToServer | ToClient


class _Request(msgspec.Struct, gc=False):
    client: int
    own_id: RequestId
    token: str | None  # the process-side progress token it carries
    cancelled: bool = False


class _ClientState:
    __slots__ = ("in_flight", "initialized")

    def __init__(self) -> None:
        self.in_flight = 0
        self.initialized = False


class Multiplexer:
    def __init__(self) -> None:
        self.problems: Counter[str] = Counter()
        self._numbers = itertools.count(1)
        self._ids = itertools.count(1)
        self._clients: dict[int, _ClientState] = {}
        self._requests: dict[int, _Request] = {}  # process-side id -> who asked
        self._tokens: dict[str, tuple[int, RequestId]] = {}  # process-side token -> (client, its own token)
        self._server_requests: dict[bytes, int] = {}  # a server request's id (as JSON) -> the client asked
        self._init_result: bytes | None = None
        self._init_id: int | None = None  # the process-side id of the one initialize in flight
        self._init_waiters: list[tuple[int, RequestId]] = []
        self._initialized_sent = False
        self._last_active: int | None = None
        self.asker: int | None = None  # the one client whose calls may cause server requests, when known

    # -- clients -----------------------------------------------------------------------------------------------

    def attach(self) -> int:
        client = next(self._numbers)
        self._clients[client] = _ClientState()
        return client

    def detach(self, client: int) -> None:
        """Forget ``client`` and everything it was waiting for (late answers are then dropped)."""
        self._clients.pop(client, None)
        for shared_id in [k for k, request in self._requests.items() if request.client == client]:
            if shared_id != self._init_id:  # another client may be waiting for that answer
                self._forget(shared_id)
        for token in [k for k, (owner, _) in self._tokens.items() if owner == client]:
            del self._tokens[token]
        for key in [k for k, owner in self._server_requests.items() if owner == client]:
            del self._server_requests[key]
        self._init_waiters = [(c, i) for c, i in self._init_waiters if c != client]
        if self._last_active == client:
            self._last_active = None
        if self.asker == client:
            self.asker = None

    def reset(self) -> list[int]:
        """The process is gone: every client is detached (and returned), and the next process starts afresh."""
        clients = list(self._clients)
        for client in clients:
            self.detach(client)
        self._requests.clear()
        self._init_result = self._init_id = None
        self._init_waiters.clear()
        self._initialized_sent = False
        return clients

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def in_flight(self) -> int:
        """Client requests the process has not answered yet."""
        return len(self._requests)

    def own_requests(self, client: int) -> list[RequestId]:
        """The ids (the client's own) of the requests ``client`` has in flight."""
        return [request.own_id for request in self._requests.values() if request.client == client]

    @property
    def initialize_result(self) -> bytes | None:
        """The ``result`` of the first successful initialize (raw JSON)."""
        return self._init_result

    # -- client -> server --------------------------------------------------------------------------------------

    def from_client(self, client: int, message: Message) -> list[Output]:
        if message.kind is Kind.RESPONSE:  # a client answers a server request: the id is the server's own
            if message.id is not None:
                self._server_requests.pop(jsonrpc.encode(message.id), None)
            return [ToServer(message.raw)]
        if message.kind is Kind.NOTIFICATION:
            return self._client_notification(client, message)
        own_id = message.id
        assert own_id is not None  # a request always has one (jsonrpc.parse_message)
        if message.method == "initialize":
            return self._initialize(client, own_id, message)
        shared_id = next(self._ids)
        params = message.params
        token: str | None = None
        own_token = jsonrpc.progress_token(params)
        if own_token is not None:
            token = f"{client}:{jsonrpc.encode(own_token).decode()}"
            self._tokens[token] = (client, own_token)
            params = _with_progress_token(params, token)
        self._requests[shared_id] = _Request(client, own_id, token)
        state = self._clients.get(client)
        if state is not None:
            state.in_flight += 1
        self._last_active = client
        return [ToServer(jsonrpc.request_bytes(shared_id, message.method or "", params))]

    def _client_notification(self, client: int, message: Message) -> list[Output]:
        method = message.method
        if method == "notifications/initialized":
            state = self._clients.get(client)
            if state is not None:
                state.initialized = True
            if self._initialized_sent:
                return []
            self._initialized_sent = True
        elif method == "notifications/cancelled":
            wanted = jsonrpc.cancelled_request(message.params)
            shared_id = next((sid for sid, request in self._requests.items()
                              if request.client == client and request.own_id == wanted), None)
            if shared_id is None:
                return []
            request = self._requests[shared_id]
            if not request.cancelled:
                request.cancelled = True
                self._settle(client)  # no longer waiting: not a target for server requests
            return [ToServer(_with_param(message, "requestId", shared_id).raw)]
        return [ToServer(message.raw)]

    def _initialize(self, client: int, own_id: RequestId, message: Message) -> list[Output]:
        if self._init_result is not None:
            return [ToClient(client, _response(own_id, self._init_result, b""))]
        self._init_waiters.append((client, own_id))
        if self._init_id is not None:
            return []
        shared_id = self._init_id = next(self._ids)
        self._requests[shared_id] = _Request(client, own_id, None)
        return [ToServer(jsonrpc.request_bytes(shared_id, "initialize", message.params))]

    # -- server -> clients -------------------------------------------------------------------------------------

    def from_server(self, message: Message) -> list[ToClient]:
        if message.kind is Kind.RESPONSE:
            return self._response(message)
        if message.kind is Kind.REQUEST:
            return self._server_request(message)
        return self._notification(message)

    def _response(self, message: Message) -> list[ToClient]:
        shared_id = message.id
        if shared_id is None:  # the server could not read a request: only the one in flight can be meant
            if len(self._requests) != 1:
                self.problems[NULL_ID if self._requests else UNKNOWN_RESPONSE] += 1
                return []
            shared_id = next(iter(self._requests))
        if not isinstance(shared_id, int) or shared_id not in self._requests:
            self.problems[UNKNOWN_RESPONSE] += 1
            return []
        if shared_id == self._init_id:
            request = self._forget(shared_id)
            if message.result:
                self._init_result = message.result
            waiters, self._init_waiters, self._init_id = self._init_waiters, [], None
            return [ToClient(waiter, _response(waiter_id, message.result, message.error))
                    for waiter, waiter_id in waiters]
        request = self._forget(shared_id)
        if not request.cancelled:
            self._settle(request.client)
        return [ToClient(request.client, _response(request.own_id, message.result, message.error))]

    def _server_request(self, message: Message) -> list[ToClient]:
        busy = [client for client, state in self._clients.items() if state.in_flight]
        target: int | None
        if self.asker in self._clients:
            target = self.asker
        elif busy:
            target = self._last_active if self._last_active in busy else busy[0]
        else:
            target = self._last_active if self._last_active in self._clients else None
        if target is None:
            self.problems[UNROUTABLE_REQUEST] += 1
            return []
        self._server_requests[jsonrpc.encode(message.id)] = target
        return [ToClient(target, message)]

    def _notification(self, message: Message) -> list[ToClient]:
        method = message.method or ""
        if method == "notifications/progress":
            token = jsonrpc.progress_token_of_notification(message.params)
            entry = self._tokens.get(token) if isinstance(token, str) else None
            if entry is None:
                return []
            client, own_token = entry
            return [ToClient(client, _with_param(message, "progressToken", own_token))]
        if jsonrpc.has_meta_key(message.params, era.META_SUBSCRIPTION):  # 2026-07-28: on a subscriptions/listen
            return self._subscription_event(message)
        if method == "notifications/cancelled":
            shared_id = jsonrpc.cancelled_request(message.params)
            request = self._requests.get(shared_id) if isinstance(shared_id, int) else None
            if request is None:
                return []
            return [ToClient(request.client, _with_param(message, "requestId", request.own_id))]
        if is_broadcast(method):
            return [ToClient(client, message) for client in self._clients]
        return []

    def _subscription_event(self, message: Message) -> list[ToClient]:
        """An event tagged with the id of the listen request it belongs to: to that client, under its own id."""
        value = msgspec.json.decode(message.params)
        meta = value["_meta"]
        request = self._requests.get(meta[era.META_SUBSCRIPTION])
        if request is None:
            return []
        meta[era.META_SUBSCRIPTION] = request.own_id
        params = jsonrpc.encode(value)
        return [ToClient(request.client, Message(Kind.NOTIFICATION, jsonrpc.notification_bytes(
            message.method or "", params), method=message.method, params=params))]

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def _forget(self, shared_id: int) -> _Request:
        request = self._requests.pop(shared_id)
        if request.token is not None:
            self._tokens.pop(request.token, None)
        return request

    def _settle(self, client: int) -> None:
        state = self._clients.get(client)
        if state is not None and state.in_flight:
            state.in_flight -= 1


# -- re-framing ------------------------------------------------------------------------------------------------

def _response(own_id: RequestId, result: bytes, error: bytes) -> Message:
    data = jsonrpc.response_bytes(own_id, result, error)
    return Message(Kind.RESPONSE, data, id=own_id, result=result, error=error)


def _with_progress_token(params: bytes, token: str) -> bytes:
    value = msgspec.json.decode(params)
    value["_meta"]["progressToken"] = token
    return jsonrpc.encode(value)


def _with_param(message: Message, key: str, value: RequestId) -> Message:
    """A notification with one top-level param changed (a progress token, a cancelled request id)."""
    params_value = msgspec.json.decode(message.params) if message.params else {}
    params_value[key] = value
    params = jsonrpc.encode(params_value)
    return Message(Kind.NOTIFICATION, jsonrpc.notification_bytes(message.method or "", params),
                   method=message.method, params=params)
