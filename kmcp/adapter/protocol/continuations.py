"""``input_required`` for a handshake-era server, sans-IO: a call suspended on server->client requests.

A legacy server asks its client mid-call (``elicitation/create``, ``sampling/createMessage``, ``roots/list``) and
waits. A 2026-07-28 client cannot be asked: the bridge answers the call with ``resultType: "input_required"``,
naming each pending server request under a key, and a ``requestState`` that seals which suspended call it is
(HMAC-SHA256 with the adapter's key, with an expiry and the method/name it belongs to). The client retries the
same request with ``inputResponses`` keyed the same way; the bridge answers the server's requests with them and
the call goes on, to its result or to another round.

A legacy request has only a JSON-RPC id, so the keys are the bridge's own: ``_meta["kmcp.dev/inputKey"]`` of the
server's request when it sets one, else ``elicitation_1``, ``sampling_1``, ``roots_1``, … (2026-07-28 lets the
server choose; a client must echo whatever it got).

With replicas, the suspended call lives in one adapter's memory, and the retry may land on any replica. A state
therefore also seals the address of the replica holding the call (the address its session ids carry, under the
same MCPServer key): a replica that opens a state naming another replica is told so (:class:`HeldElsewhere`) and
forwards the request there. The MAC covers the address, so a client cannot point a forward anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import msgspec

from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.jsonrpc import Message, RequestId

STATE_PREFIX = "kmcp1."
INPUT_KEY_META = "kmcp.dev/inputKey"
ASKABLE = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}
MAY_SUSPEND = frozenset({"tools/call", "prompts/get", "resources/read"})


class StateError(Exception):
    """A requestState that does not verify, names no suspended call, or has expired."""


class HeldElsewhere(Exception):
    """A valid requestState whose call another replica of this MCPServer holds: the retry belongs there."""

    def __init__(self, owner: tuple[str, int]) -> None:
        super().__init__(f"the suspended call is held by the replica at {owner[0]}:{owner[1]}")
        self.owner = owner


@dataclass(frozen=True, slots=True)
class InputRequest:
    key: str
    server_id: RequestId  # the id the server asked under: its answer goes back under it
    method: str
    params: bytes


class _Sealed(msgspec.Struct, forbid_unknown_fields=True):
    h: str  # the suspended call's handle
    e: float  # expires at (unix seconds)
    m: str  # the method and name it belongs to
    n: str = ""
    o: tuple[str, int] | None = None  # the replica holding the call (its pod IP and port), with replicas


class _InputKey(msgspec.Struct):
    meta: dict[str, msgspec.Raw] | None = msgspec.field(default=None, name="_meta")


class _Continuation(msgspec.Struct):
    input_responses: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""), name="inputResponses")
    request_state: str | None = msgspec.field(default=None, name="requestState")
    name: str | None = None
    uri: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Seals and opens requestState values with one key (the MCPServer's session key: every replica opens them).
    ``owner`` is this replica's address when replicas forward to each other (None when it runs alone)."""

    def __init__(self, key: bytes, ttl: float, owner: tuple[str, int] | None = None) -> None:
        self._key = key
        self.ttl = ttl
        self.owner = owner

    def seal(self, handle: str, method: str, name: str, now: float | None = None) -> str:
        sealed = _Sealed(handle, (now or time.time()) + self.ttl, method, name, self.owner)
        body = _b64(msgspec.json.encode(sealed))
        return f"{STATE_PREFIX}{body}.{_b64(self._mac(body))}"

    def verifies(self, state: str) -> bool:
        """Whether ``state`` was sealed with this key (by this replica or another), whatever it names."""
        return self._verified(state) is not None

    def open(self, state: str, method: str, name: str, now: float | None = None) -> str:
        """The handle a state names; StateError when it was not made here for this method and name, or expired;
        HeldElsewhere when it is valid but another replica holds the call."""
        sealed = self._verified(state)
        if sealed is None:
            raise StateError("requestState was not issued by this server" if not state.startswith(STATE_PREFIX)
                             else "requestState failed verification")
        if (sealed.m, sealed.n) != (method, name):
            raise StateError("requestState belongs to another request")
        if sealed.e < (now or time.time()):
            raise StateError("requestState has expired")
        if self.owner is not None and sealed.o is not None and sealed.o != self.owner:
            raise HeldElsewhere(sealed.o)
        return sealed.h

    def _verified(self, state: str) -> _Sealed | None:
        if not state.startswith(STATE_PREFIX):
            return None
        body, _, mac = state[len(STATE_PREFIX):].partition(".")
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(body)):
                return None
            return msgspec.json.decode(_unb64(body), type=_Sealed)
        except (ValueError, msgspec.MsgspecError):
            return None

    def _mac(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()


def input_key(message: Message, taken: set[str]) -> str:
    """The key a server request is offered to the client under (see the module docstring)."""
    meta = None
    if INPUT_KEY_META.encode() in message.params:
        try:
            meta = msgspec.json.decode(message.params, type=_InputKey).meta
        except msgspec.MsgspecError:
            meta = None
    if meta is not None and INPUT_KEY_META in meta:
        try:
            chosen = msgspec.json.decode(meta[INPUT_KEY_META])
        except msgspec.MsgspecError:
            chosen = None
        if isinstance(chosen, str) and chosen and chosen not in taken:
            return chosen
    stem = ASKABLE.get(message.method or "", "input")
    number = 1
    while f"{stem}_{number}" in taken:
        number += 1
    return f"{stem}_{number}"


def input_required_result(requests: list[InputRequest], state: str) -> bytes:
    entries = b",".join(jsonrpc.encode(r.key) + b':{"method":' + jsonrpc.encode(r.method) + b',"params":'
                        + (r.params or b"{}") + b"}" for r in requests)
    return (b'{"resultType":"input_required","inputRequests":{' + entries + b'},"requestState":'
            + jsonrpc.encode(state) + b"}")


@dataclass(frozen=True, slots=True)
class Retry:
    """What a request says about an earlier round."""

    state: str | None
    responses: dict[str, bytes] | None  # key -> raw result; None when the request carries no inputResponses
    name: str  # params.name or params.uri: what a state is bound to


def read_retry(params: bytes) -> Retry:
    """``requestState`` and ``inputResponses`` of a request. Raises JsonRpcError(-32602) for malformed ones
    (``inputResponses`` must be an object of result objects)."""
    try:
        value = msgspec.json.decode(params or b"{}", type=_Continuation)
    except msgspec.MsgspecError:
        return Retry(None, None, "")
    name = value.name or value.uri or ""
    raw = bytes(value.input_responses)
    if not raw:
        return Retry(value.request_state, None, name)
    try:
        responses = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    except msgspec.MsgspecError:
        raise _invalid("inputResponses must be an object mapping input keys to results") from None
    for key, response in responses.items():
        if not bytes(response).lstrip().startswith(b"{"):
            raise _invalid(f"inputResponses[{key!r}] must be a result object")
    return Retry(value.request_state, {k: bytes(v) for k, v in responses.items()}, name)


def _invalid(message: str) -> jsonrpc.JsonRpcError:
    return jsonrpc.JsonRpcError(jsonrpc.INVALID_PARAMS, f"Invalid params: {message}")


def strip_retry(params: bytes) -> bytes:
    """The request's params without ``inputResponses`` and ``requestState`` (what the legacy server is sent)."""
    if b"inputResponses" not in params and b"requestState" not in params:
        return params
    value = msgspec.json.decode(params)
    if isinstance(value, dict):
        value.pop("inputResponses", None)
        value.pop("requestState", None)
    return jsonrpc.encode(value)
