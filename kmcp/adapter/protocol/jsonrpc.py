"""JSON-RPC 2.0 framing for the adapter: classify a message by its ``id``/``method`` without building its body.

The adapter forwards message bytes untouched; it only needs to know what a message is (request, notification,
response) and whom it belongs to. ``msgspec`` decodes the envelope and skips ``params``/``result``/``error`` as raw
byte slices, so a large tool result costs one scan and no Python objects.
"""

from __future__ import annotations

import enum
import re

import msgspec

JSONRPC_VERSION = "2.0"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors (-32000..-32099).
SERVER_GONE = -32000
REQUEST_TIMEOUT = -32001  # as the TypeScript and Python SDKs name it
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


class Message(msgspec.Struct, frozen=True, gc=False):
    """One JSON-RPC message: its kind, the fields routing needs, and its exact bytes."""

    kind: Kind
    raw: bytes
    id: RequestId | None = None
    method: str | None = None
    params: bytes = b""
    result: bytes = b""
    error: bytes = b""

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
    except RecursionError:
        raise JsonRpcError(INVALID_REQUEST, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except msgspec.ValidationError as error:
        if _first_byte(data) != ord("{"):
            raise JsonRpcError(INVALID_REQUEST, "a JSON-RPC message must be a JSON object") from None
        raise JsonRpcError(INVALID_REQUEST, f"invalid JSON-RPC message: {error}") from None
    except msgspec.DecodeError as error:
        raise JsonRpcError(PARSE_ERROR, _parse_error_text(data, error)) from None
    return _classify(env, data)


def _parse_error_text(data: bytes, error: Exception) -> str:
    """msgspec reports an escaped lone surrogate as "Input data was truncated": say what is wrong instead."""
    if lone_surrogate(data):
        return "parse error: a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair)"
    return f"parse error: {error}"


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
    return Message(Kind.RESPONSE, data, id=env.id, result=bytes(env.result) if has_result else b"",
                   error=bytes(env.error) if has_error else b"")


def _id_or_none(value: int | str | msgspec.UnsetType | None) -> RequestId | None:
    return None if value is None or isinstance(value, msgspec.UnsetType) else value


def parse_body(data: bytes) -> tuple[list[Message], bool]:
    """Parse what a client sent: one message or (``is_batch``) a JSON array of them. Raises JsonRpcError.

    What passes is safe to write to a stdio server as one line per message: valid UTF-8 without lone
    surrogates (a server would fail to decode it and answer with ``"id": null``), nested at most
    ``MAX_DEPTH`` levels, and free of line breaks (pretty-printed JSON is compacted, token for token)."""
    _check_text(data)
    first = _first_byte(data)
    if first == ord("["):
        try:
            items = _batch_decoder.decode(data)
        except RecursionError:
            raise JsonRpcError(INVALID_REQUEST, f"JSON nested deeper than {MAX_DEPTH} levels") from None
        except msgspec.DecodeError as error:
            raise JsonRpcError(PARSE_ERROR, f"parse error: {error}") from None
        if not items:
            raise JsonRpcError(INVALID_REQUEST, "an empty batch is not a valid request")
        return [_one_line(parse_message(bytes(item))) for item in items], True
    if first == ord("{"):
        return [_one_line(parse_message(data))], False
    # Not an object: distinguish valid-but-wrong JSON (-32600) from garbage (-32700).
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError as error:
        raise JsonRpcError(PARSE_ERROR, f"parse error: {error}") from None
    raise JsonRpcError(INVALID_REQUEST, "a JSON-RPC message must be a JSON object")


MAX_DEPTH = 64  # arrays/objects inside one message; far beyond MCP's needs, far below any decoder's stack
_SURROGATE = re.compile(rb"(?<!\\)(?:\\\\)*\\u([dD][89a-fA-F][0-9a-fA-F]{2})")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def _check_text(data: bytes) -> None:
    """Refuse (-32700) what a stdio server cannot decode, and (-32600) what nests too deep, before parsing."""
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError as error:
            raise JsonRpcError(PARSE_ERROR, f"parse error: the body is not valid UTF-8 (byte {error.start})",
                               _salvage_id(data.decode(errors="replace").encode())) from None
    if b"\\u" in data and lone_surrogate(data):
        raise JsonRpcError(PARSE_ERROR, "parse error: a string holds a lone UTF-16 surrogate escape "
                                        "(\\ud800-\\udfff without its pair)", _salvage_id(data))
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and nesting_depth(data) > MAX_DEPTH:
        raise JsonRpcError(INVALID_REQUEST, f"JSON nested deeper than {MAX_DEPTH} levels", _salvage_id(data))


def lone_surrogate(data: bytes) -> bool:
    """Whether a ``\\uD800``-``\\uDFFF`` escape in ``data`` is not half of a high+low pair."""
    return bool(_lone_surrogates(data))


def _lone_surrogates(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each surrogate escape that is not half of an adjacent high+low pair."""
    lone: list[tuple[int, int]] = []
    high: tuple[int, int] | None = None  # the last high surrogate, waiting for its low
    for match in _SURROGATE.finditer(data):
        span = (match.start(1) - 2, match.end())
        if int(match.group(1), 16) < 0xDC00:
            if high is not None:
                lone.append(high)
            high = span
        elif high is not None and high[1] == span[0]:
            high = None
        else:
            if high is not None:
                lone.append(high)
                high = None
            lone.append(span)
    if high is not None:
        lone.append(high)
    return lone


def nesting_depth(data: bytes) -> int:
    """How deep arrays and objects nest in ``data`` (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub(b"", data)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _salvage_id(data: bytes) -> RequestId | None:
    """The id of a message refused before parsing, when its envelope still decodes (so the error names it)."""
    try:
        value = _envelope_decoder.decode(_replace_surrogates(data)).id
    except (msgspec.MsgspecError, RecursionError):
        return None
    return _id_or_none(value)


def _one_line(message: Message) -> Message:
    if b"\n" not in message.raw and b"\r" not in message.raw:  # two memchr scans: faster than a regex search
        return message
    raw = msgspec.json.format(message.raw, indent=-1)  # whitespace between tokens only: strings cannot hold them
    return Message(message.kind, raw, message.id, message.method, message.params, message.result, message.error)


def parse_server_line(line: bytes) -> Message:
    """Classify a line a stdio server printed. A line that is JSON in all but strictness is repaired rather than
    lost: raw bytes that are not UTF-8 and escaped lone surrogates (which strict client decoders such as the
    Python SDK's refuse) become U+FFFD, so the request it answers still gets its answer."""
    if not line.isascii():
        try:
            line.decode()
        except UnicodeDecodeError:
            line = line.decode(errors="replace").encode()
    try:
        return parse_message(line)
    except JsonRpcError as error:
        if error.code != PARSE_ERROR or b"\\u" not in line or not lone_surrogate(line):
            raise
    return parse_message(_replace_surrogates(line))


def _replace_surrogates(data: bytes) -> bytes:
    """Each lone surrogate escape becomes ``\\ufffd``; pairs (a character outside the BMP) stay."""
    spans = _lone_surrogates(data)
    if not spans:
        return data
    parts, last = [], 0
    for start, end in spans:
        parts += [data[last:start], b"\\ufffd"]
        last = end
    parts.append(data[last:])
    return b"".join(parts)


def progress_token(params: bytes) -> RequestId | None:
    """``params._meta.progressToken`` of a request, decoded only when the bytes mention it."""
    if b"progressToken" not in params:
        return None
    try:
        meta = _params_decoder.decode(params).meta
    except msgspec.MsgspecError:
        return None
    return meta.progressToken if meta is not None else None


class _MetaKeys(msgspec.Struct):
    meta: dict[str, msgspec.Raw] | None = msgspec.field(default=None, name="_meta")


_meta_keys_decoder = msgspec.json.Decoder(_MetaKeys)


def has_meta_key(params: bytes, key: str) -> bool:
    """Whether ``params._meta`` has ``key``; decoded only when the bytes mention it."""
    if key.encode() not in params:
        return False
    try:
        meta = _meta_keys_decoder.decode(params).meta
    except msgspec.MsgspecError:
        return False
    return meta is not None and key in meta


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


# Re-framing: a message under another id, its params/result/error kept as the bytes they were (no re-encoding).

def request_bytes(id: RequestId, method: str, params: bytes) -> bytes:
    head = b'{"jsonrpc":"2.0","id":' + _encoder.encode(id) + b',"method":' + _encoder.encode(method)
    return head + (b',"params":' + params + b"}" if params else b"}")


def cancelled_notification(request_id: RequestId, reason: str) -> bytes:
    """``notifications/cancelled`` for ``request_id``: what tells a server to stop working on a request."""
    return _encoder.encode({"jsonrpc": "2.0", "method": "notifications/cancelled",
                            "params": {"requestId": request_id, "reason": reason}})


def notification_bytes(method: str, params: bytes) -> bytes:
    head = b'{"jsonrpc":"2.0","method":' + _encoder.encode(method)
    return head + (b',"params":' + params + b"}" if params else b"}")


def response_bytes(id: RequestId | None, result: bytes, error: bytes = b"") -> bytes:
    """A response with ``result`` (raw JSON) or, when it is empty, ``error``."""
    body = b',"result":' + result if result else b',"error":' + error
    return b'{"jsonrpc":"2.0","id":' + _encoder.encode(id) + body + b"}"


def join_batch(messages: list[bytes]) -> bytes:
    """A JSON array of already-encoded messages, without re-encoding them."""
    return b"[" + b",".join(messages) + b"]"
