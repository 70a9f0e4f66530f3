"""A handshake-era stdio server seen as a 2026-07-28 server, sans-IO: the messages the bridge makes and rewrites.

The adapter initializes the server's processes itself and answers ``server/discover`` from the ``initialize``
result; each result the server gives becomes a 2026-07-28 one (``resultType``, caching hints on lists and
reads), and the server's own not-found error for ``resources/read`` becomes -32602 with ``data.uri``.
"""

from __future__ import annotations

import msgspec

from kmcp.adapter.protocol import era, jsonrpc
from kmcp.adapter.protocol.jsonrpc import Kind, Message

BRIDGE_VERSION = "2025-11-25"  # what the bridge asks a handshake-era server for
PROBE_ID = "kmcp-era-probe"
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
CLIENT_INFO = {"name": "kmcp-adapter", "version": "0.1.0"}
# Complete results that MUST carry ttlMs and cacheScope.
CACHEABLE = frozenset({"server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list",
                       "resources/read"})
# The 2026-07-28 methods a handshake-era server can answer (anything else is -32601 at the bridge: a 1.x SDK
# server answers an unknown method with -32602).
BRIDGED_METHODS = frozenset({"tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list",
                             "resources/read", "resources/templates/list", "completion/complete"})
RESOURCE_NOT_FOUND_CODES = (0, -32002, jsonrpc.INVALID_PARAMS)


def canonical(capabilities: bytes) -> bytes:
    """One spelling per capability set (key order, whitespace), so equal sets share processes."""
    try:
        return msgspec.json.encode(msgspec.json.decode(capabilities or b"{}"), order="sorted")
    except msgspec.MsgspecError:
        return b"{}"


class _AskingCapabilities(msgspec.Struct):
    elicitation: msgspec.Raw = msgspec.Raw(b"")
    sampling: msgspec.Raw = msgspec.Raw(b"")
    roots: msgspec.Raw = msgspec.Raw(b"")


def may_ask(capabilities: bytes) -> bool:
    """Whether a server initialized with these client capabilities may send server->client requests (which a
    stdio line never ties to the request that caused them)."""
    try:
        caps = msgspec.json.decode(capabilities or b"{}", type=_AskingCapabilities)
    except msgspec.MsgspecError:
        return False
    return any(bytes(value) not in (b"", b"null") for value in (caps.elicitation, caps.sampling, caps.roots))


def discover_probe() -> Message:
    data = jsonrpc.encode({"jsonrpc": "2.0", "id": PROBE_ID, "method": "server/discover", "params": {"_meta": {
        era.META_VERSION: era.MODERN_VERSION, era.META_CAPABILITIES: {}, era.META_CLIENT_INFO: CLIENT_INFO}}})
    return jsonrpc.parse_message(data)


def is_modern_discover(answer: Message) -> bool:
    """Whether an answer to :func:`discover_probe` comes from a 2026-07-28 server."""
    if not answer.result:
        return False
    try:
        result = msgspec.json.decode(answer.result)
    except msgspec.MsgspecError:
        return False
    versions = result.get("supportedVersions") if isinstance(result, dict) else None
    return isinstance(versions, list) and any(v in era.MODERN_VERSIONS for v in versions)


def tools_list_request(modern: bool, cursor: str | None = None) -> Message:
    """The adapter's own ``tools/list`` (to learn the tools' ``x-mcp-header`` properties)."""
    params: dict[str, object] = {"cursor": cursor} if cursor else {}
    if modern:
        params["_meta"] = {era.META_VERSION: era.MODERN_VERSION, era.META_CAPABILITIES: {},
                           era.META_CLIENT_INFO: CLIENT_INFO}
    return jsonrpc.parse_message(jsonrpc.request_bytes("kmcp-tools", "tools/list", jsonrpc.encode(params)))


def initialize_request(capabilities: bytes) -> Message:
    params = b'{"protocolVersion":"' + BRIDGE_VERSION.encode() + b'","capabilities":' + (capabilities or b"{}") + \
        b',"clientInfo":' + jsonrpc.encode(CLIENT_INFO) + b"}"
    return jsonrpc.parse_message(jsonrpc.request_bytes("kmcp-initialize", "initialize", params))


def discover_result(initialize_result: bytes, ttl_ms: int = 0) -> bytes:
    """``server/discover``'s result, made from a handshake server's ``initialize`` result."""
    init = msgspec.json.decode(initialize_result)
    capabilities = init.get("capabilities") or {}  # listChanged / subscribe: the bridge serves them on listen
    capabilities.pop("logging", None)  # logging/setLevel is gone; logs are opted into per request
    result: dict[str, object] = {
        "resultType": "complete",
        "supportedVersions": [*era.MODERN_VERSIONS, *era.HANDSHAKE_VERSIONS],
        "capabilities": capabilities,
        "ttlMs": ttl_ms,
        "cacheScope": "private",
        "_meta": {era.META_SERVER_INFO: init.get("serverInfo") or {"name": "unknown", "version": "0"}},
    }
    if init.get("instructions"):
        result["instructions"] = init["instructions"]
    return jsonrpc.encode(result)


def complete_result(method: str, result: bytes, ttl_ms: int = 0) -> bytes:
    """A handshake-era result as a complete 2026-07-28 one."""
    body = result.strip()
    extra = b'"resultType":"complete"'
    if method in CACHEABLE:
        extra += b',"ttlMs":' + str(ttl_ms).encode() + b',"cacheScope":"private"'
    rest = body[1:].lstrip()
    if not rest or rest.startswith(b"}"):  # an empty object, however it is spaced
        return b"{" + extra + b"}"
    return b"{" + extra + b"," + rest


class _Error(msgspec.Struct):
    code: int = 0
    message: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")


class _Uri(msgspec.Struct):
    uri: str | None = None


def modern_error(method: str, params: bytes, error: bytes) -> bytes:
    """The server's error, as 2026-07-28 spells it: an unknown resource is -32602 with ``data.uri``."""
    if method != "resources/read":
        return error
    try:
        parsed = msgspec.json.decode(error, type=_Error)
        uri = msgspec.json.decode(params, type=_Uri).uri
    except msgspec.MsgspecError:
        return error
    if uri is None or parsed.code not in RESOURCE_NOT_FOUND_CODES or ("not found" not in parsed.message.lower() and \
            "unknown resource" not in parsed.message.lower()):
        return error
    return jsonrpc.encode({"code": jsonrpc.INVALID_PARAMS, "message": parsed.message, "data": {"uri": uri}})


def http_status(error: bytes) -> int:
    """The HTTP status a JSON-RPC error answer travels with in 2026-07-28 (most are 200)."""
    try:
        code = msgspec.json.decode(error, type=_Error).code
    except msgspec.MsgspecError:
        return 200
    if code == jsonrpc.METHOD_NOT_FOUND:
        return 404
    return 400 if code in (era.MISSING_CAPABILITY, era.HEADER_MISMATCH, era.UNSUPPORTED_VERSION) else 200


def adapter_discover(result: bytes) -> bytes:
    """A modern server's discover result, listing what the adapter in front of it serves: the handshake
    revisions too (sessions get processes of their own, so a modern SDK server serves them there)."""
    value = msgspec.json.decode(result)
    if isinstance(value, dict):
        value["supportedVersions"] = [*era.MODERN_VERSIONS, *era.HANDSHAKE_VERSIONS]
    return jsonrpc.encode(value)


def refuse_server_request(message: Message) -> bytes:
    """The answer to a server->client request the bridge cannot carry yet (see stateless.py)."""
    assert message.kind is Kind.REQUEST
    return jsonrpc.error_response(message.id, jsonrpc.METHOD_NOT_FOUND,
                                  f"{message.method}: the kmcp bridge does not carry server requests to "
                                  f"{era.MODERN_VERSION} clients yet")
