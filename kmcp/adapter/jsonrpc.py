"""JSON-RPC 2.0 framing for the adapter: classify a message by its ``id``/``method`` without building its body.

The adapter forwards message bytes untouched; it only needs to know what a message is (request, notification,
response) and whom it belongs to. ``msgspec`` decodes the envelope and skips ``params``/``result``/``error`` as raw
byte slices, so a large tool result costs one scan and no Python objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

JSONRPC_VERSION = "2.0"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors (-32000..-32099).
SERVER_GONE = -32000
REQUEST_CANCELLED = -32800  # as in LSP; MCP leaves the code of a cancelled request's answer open

RequestId = int | str


class _Envelope(msgspec.Struct):
    jsonrpc: str | None = None
    id: int | str | msgspec.UnsetType | None = msgspec.UNSET
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"")
    result: msgspec.Raw = msgspec.Raw(b"")
    error: msgspec.Raw = msgspec.Raw(b"")


class _Meta(msgspec.Struct):
    progressToken: int | str | None = None


class _ParamsWithMeta(msgspec.Struct):
    meta: _Meta | None = msgspec.field(default=None, name="_meta")


class _CancelledParams(msgspec.Struct):
    requestId: int | str | None = None


class _InitializeResult(msgspec.Struct):
    protocolVersion: str | None = None


class _InitializeParams(msgspec.Struct):
    protocolVersion: str | None = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_params_decoder = msgspec.json.Decoder(_ParamsWithMeta)
_init_result_decoder = msgspec.json.Decoder(_InitializeResult)
_init_params_decoder = msgspec.json.Decoder(_InitializeParams)
_cancelled_decoder = msgspec.json.Decoder(_CancelledParams)
_encoder = msgspec.json.Encoder()


class Kind(enum.Enum):
    REQUEST = "request"
    NOTIFICATION = "notification"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class Message:
    """One JSON-RPC message: its kind, the fields routing needs, and its exact bytes."""

    kind: Kind
    raw: bytes
    id: RequestId | None = None
    method: str | None = None
    params: bytes = b""
    result: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.kind is Kind.RESPONSE and not self.result


class JsonRpcError(Exception):
    """A message the adapter must refuse; ``code`` is the JSON-RPC error code to answer with."""

    def __init__(self, code: int, message: str, id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id


def _first_byte(data: bytes) -> int:
    for byte in data:
        if byte not in b" \t\r\n":
            return byte
    return -1


def parse_message(data: bytes) -> Message:
    """Classify one JSON object. Raises JsonRpcError(-32700) for bad JSON, (-32600) for a non-message."""
    try:
        env = _envelope_decoder.decode(data)
    except msgspec.ValidationError as error:
        if _first_byte(data) != ord("{"):
            raise JsonRpcError(INVALID_REQUEST, "a JSON-RPC message must be a JSON object") from None
        raise JsonRpcError(INVALID_REQUEST, f"invalid JSON-RPC message: {error}") from None
    except msgspec.DecodeError as error:
        raise JsonRpcError(PARSE_ERROR, f"parse error: {error}") from None
    return _classify(env, data)


def _classify(env: _Envelope, data: bytes) -> Message:
    if env.jsonrpc != JSONRPC_VERSION:
        raise JsonRpcError(INVALID_REQUEST, 'missing or wrong "jsonrpc" (must be "2.0")', _id_or_none(env.id))
    has_result, has_error = bool(env.result), bool(env.error)
    if env.method is not None:
        if has_result or has_error:
            raise JsonRpcError(INVALID_REQUEST, "a message cannot have both method and result/error")
        params = bytes(env.params) if env.params else b""
        if isinstance(env.id, msgspec.UnsetType):
            return Message(Kind.NOTIFICATION, data, method=env.method, params=params)
        if env.id is None:
            raise JsonRpcError(INVALID_REQUEST, "a request id must be a string or an integer")
        return Message(Kind.REQUEST, data, id=env.id, method=env.method, params=params)
    if has_result == has_error:
        raise JsonRpcError(INVALID_REQUEST, "a response must have exactly one of result and error", _id_or_none(env.id))
    if isinstance(env.id, msgspec.UnsetType):
        raise JsonRpcError(INVALID_REQUEST, "a response must have an id")
    return Message(Kind.RESPONSE, data, id=env.id, result=bytes(env.result) if has_result else b"")


def _id_or_none(value: int | str | msgspec.UnsetType | None) -> RequestId | None:
    return None if value is None or isinstance(value, msgspec.UnsetType) else value


def parse_body(data: bytes) -> tuple[list[Message], bool]:
    """Parse an HTTP body: one message or (``is_batch``) a JSON array of them. Raises JsonRpcError."""
    first = _first_byte(data)
    if first == ord("["):
        try:
            items = _batch_decoder.decode(data)
        except msgspec.DecodeError as error:
            raise JsonRpcError(PARSE_ERROR, f"parse error: {error}") from None
        if not items:
            raise JsonRpcError(INVALID_REQUEST, "an empty batch is not a valid request")
        return [parse_message(bytes(item)) for item in items], True
    if first == ord("{"):
        return [parse_message(data)], False
    # Not an object: distinguish valid-but-wrong JSON (-32600) from garbage (-32700).
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError as error:
        raise JsonRpcError(PARSE_ERROR, f"parse error: {error}") from None
    raise JsonRpcError(INVALID_REQUEST, "a JSON-RPC message must be a JSON object")


def progress_token(params: bytes) -> RequestId | None:
    """``params._meta.progressToken`` of a request, decoded only when the bytes mention it."""
    if b"progressToken" not in params:
        return None
    try:
        meta = _params_decoder.decode(params).meta
    except msgspec.MsgspecError:
        return None
    return meta.progressToken if meta is not None else None


def progress_token_of_notification(params: bytes) -> RequestId | None:
    """``params.progressToken`` of a ``notifications/progress``."""
    try:
        value = msgspec.json.decode(params, type=_Meta)
    except msgspec.MsgspecError:
        return None
    return value.progressToken


def cancelled_request(params: bytes) -> RequestId | None:
    """``params.requestId`` of a ``notifications/cancelled``."""
    try:
        return _cancelled_decoder.decode(params).requestId if params else None
    except msgspec.MsgspecError:
        return None


def negotiated_version(result: bytes) -> str | None:
    """``result.protocolVersion`` of an initialize response."""
    try:
        return _init_result_decoder.decode(result).protocolVersion
    except msgspec.MsgspecError:
        return None


def requested_version(params: bytes) -> str | None:
    """``params.protocolVersion`` of an initialize request."""
    try:
        return _init_params_decoder.decode(params).protocolVersion if params else None
    except msgspec.MsgspecError:
        return None


def error_response(id: RequestId | None, code: int, message: str) -> bytes:
    """The bytes of a JSON-RPC error response."""
    return _encoder.encode({"jsonrpc": JSONRPC_VERSION, "id": id, "error": {"code": code, "message": message}})


def encode(value: object) -> bytes:
    return _encoder.encode(value)


def join_batch(messages: list[bytes]) -> bytes:
    """A JSON array of already-encoded messages, without re-encoding them."""
    return b"[" + b",".join(messages) + b"]"
