"""The two protocol eras on one ``/mcp``, sans-IO: which one a request speaks, and the 2026-07-28 HTTP rules.

Handshake era (2024-11-05 … 2025-11-25): ``initialize`` opens a session, later requests name it. Stateless era
(2026-07-28): every request carries its own envelope in ``params._meta`` and mirrors it in headers; there is no
session. A request is *modern* when its ``_meta`` has ``io.modelcontextprotocol/protocolVersion`` or its
``MCP-Protocol-Version`` header names a revision later than every handshake-era one. :func:`check_modern` applies the
revision's rules at the adapter, so a stdio server (which sees no headers) never gets a request they refuse.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import msgspec

from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.jsonrpc import Kind, Message, RequestId

MODERN_VERSION = "2026-07-28"
MODERN_VERSIONS = (MODERN_VERSION,)
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
META_SUBSCRIPTION = "io.modelcontextprotocol/subscriptionId"

HEADER_MISMATCH = -32020
MISSING_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022

# Gone in 2026-07-28: a modern request for one of them is 404 / -32601 whatever the server would do.
REMOVED_METHODS = frozenset({"initialize", "ping", "logging/setLevel", "resources/subscribe",
                             "resources/unsubscribe", "notifications/initialized"})
# Where Mcp-Name must mirror a param.
NAMED_BY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_BASE64_VALUE = re.compile(r"=\?base64\?(.*)\?=", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a modern request says of itself in ``params._meta``."""

    version: str
    capabilities: bytes  # raw JSON object
    client_info: bytes  # raw JSON object, or b"" when the client sent none
    log_level: str | None


@dataclass(frozen=True, slots=True)
class ModernRequest:
    message: Message
    envelope: Envelope
    param_headers: dict[str, str] | None = None  # tools/call: its Mcp-Param-* headers (names in lower case)

    @property
    def id(self) -> RequestId | None:
        return self.message.id

    @property
    def method(self) -> str:
        return self.message.method or ""


@dataclass(frozen=True, slots=True)
class EraError:
    """A modern request refused at the adapter: HTTP ``status`` with this JSON-RPC error under the request's id."""

    status: int
    code: int
    message: str
    id: RequestId | None
    data: object = None

    def body(self) -> bytes:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return jsonrpc.encode({"jsonrpc": "2.0", "id": self.id, "error": error})


class _Meta(msgspec.Struct):
    version: str | msgspec.UnsetType = msgspec.field(default=msgspec.UNSET, name=META_VERSION)
    capabilities: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""), name=META_CAPABILITIES)
    client_info: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""), name=META_CLIENT_INFO)
    log_level: str | None = msgspec.field(default=None, name=META_LOG_LEVEL)


class _Params(msgspec.Struct):
    meta: _Meta | None = msgspec.field(default=None, name="_meta")
    name: object = None
    uri: object = None


_params_decoder = msgspec.json.Decoder(_Params)


def _params(message: Message) -> _Params | None:
    if not message.params:
        return None
    try:
        return _params_decoder.decode(message.params)
    except msgspec.MsgspecError:
        return None


def is_modern(headers: dict[str, str], message: Message) -> bool:
    """Whether a POSTed message speaks 2026-07-28 (or later), by its ``_meta`` or its header."""
    header = headers.get("mcp-protocol-version", "")
    if header > HANDSHAKE_VERSIONS[0]:  # later than every handshake revision (dates compare as strings)
        return True
    return jsonrpc.has_meta_key(message.params, META_VERSION)


def decode_header_value(value: str) -> str | None:
    """A header value as the client meant it: ``=?base64?…?=`` decoded; None when that encoding is broken."""
    match = _BASE64_VALUE.fullmatch(value)
    if match is None:
        return value
    try:
        return base64.b64decode(match.group(1), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def check_modern(headers: dict[str, str], message: Message,
                 supported: tuple[str, ...] = MODERN_VERSIONS) -> ModernRequest | EraError:
    """Apply the 2026-07-28 HTTP rules to one modern message (request or notification)."""
    request_id = message.id
    params = _params(message)
    meta = params.meta if params is not None else None
    if meta is None or isinstance(meta.version, msgspec.UnsetType) or not meta.capabilities:
        missing = "_meta" if meta is None else (META_VERSION if isinstance(meta.version, msgspec.UnsetType)
                                                else META_CAPABILITIES)
        return EraError(400, jsonrpc.INVALID_PARAMS, f"Invalid params: a {MODERN_VERSION} request needs "
                        f"params._meta with {META_VERSION} and {META_CAPABILITIES} (missing: {missing})", request_id)
    header = headers.get("mcp-protocol-version", "")
    if header != meta.version:
        return EraError(400, HEADER_MISMATCH, f"Header mismatch: MCP-Protocol-Version {header!r} is not the "
                        f"request's _meta protocolVersion {meta.version!r}", request_id)
    mismatch = _header_mismatch(headers, message, params)
    if mismatch is not None:
        return EraError(400, HEADER_MISMATCH, f"Header mismatch: {mismatch}", request_id)
    if meta.version not in supported:
        return EraError(400, UNSUPPORTED_VERSION, f"Unsupported protocol version {meta.version!r}", request_id,
                        {"supported": [*supported, *HANDSHAKE_VERSIONS], "requested": meta.version})
    if message.kind is Kind.REQUEST and message.method in REMOVED_METHODS:
        return EraError(404, jsonrpc.METHOD_NOT_FOUND, f"Method not found: {message.method} is not part of "
                        f"protocol {MODERN_VERSION}", request_id)
    envelope = Envelope(meta.version, bytes(meta.capabilities), bytes(meta.client_info), meta.log_level)
    if message.method == "tools/call":
        params_sent = {name: value for name, value in headers.items() if name.startswith("mcp-param-")}
        return ModernRequest(message, envelope, params_sent)
    return ModernRequest(message, envelope)


def _header_mismatch(headers: dict[str, str], message: Message, params: _Params | None) -> str | None:
    method = headers.get("mcp-method")
    if method is None:
        return "the Mcp-Method header is missing"
    if decode_header_value(method) != message.method:
        return f"Mcp-Method {method!r} is not the request's method {message.method!r}"
    field = NAMED_BY.get(message.method or "")
    if field is None:
        return None
    name = headers.get("mcp-name")
    expected = getattr(params, field, None) if params is not None else None
    if name is None:
        return f"the Mcp-Name header is missing (it must carry params.{field})"
    if decode_header_value(name) != expected:
        return f"Mcp-Name {name!r} is not the request's params.{field}"
    return None
