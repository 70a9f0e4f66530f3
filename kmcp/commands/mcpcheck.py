"""The CLI's own MCP client, for its checks (``kmcp dev up --check``, ``kmcp run``, ``kmcp deploy``): revision
2026-07-28 first, as the SDK clients do, and the ``initialize`` handshake only when the server shows it does not
speak that revision.

The requests and the reading of replies are pure functions (tested without a socket); :func:`check_mcp` is the one
place that does I/O, over httpx, and the one place its errors are caught. The fallback rule is the ``mcp`` 2.x
client's: anything that is not positive evidence of a 2026-07-28 server (an HTTP 4xx or a JSON-RPC error to
``server/discover``, or a discover result whose ``supportedVersions`` lacks 2026-07-28) means the handshake; only a
-32022 that names nothing but other stateless revisions is an incompatibility. A network error is never an era
verdict.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from kmcp import __version__
from kmcp.errors import CommandFailed

Obj = dict[str, Any]
MODERN_VERSION = "2026-07-28"
HANDSHAKE_VERSION = "2025-11-25"  # what the fallback's initialize asks for; servers answer with one they speak
HANDSHAKE_VERSIONS = frozenset({"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"})
UNSUPPORTED_PROTOCOL_VERSION = -32022
CLIENT_INFO = {"name": "kmcp-check", "version": __version__}
# The request parameter a 2026-07-28 client repeats in Mcp-Name, per method.
NAMED_PARAMS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
BASE_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass(frozen=True)
class HttpRequest:
    """One POST to the MCP endpoint: its headers and its JSON-RPC body."""

    headers: dict[str, str]
    body: Obj


@dataclass(frozen=True)
class Reply:
    """What came back for one request: HTTP status and the JSON-RPC result or error (neither: no JSON-RPC body)."""

    status: int
    result: Obj | None = None
    error: Obj | None = None
    session_id: str = ""

    def describe(self) -> str:
        if self.error is not None:
            return f"HTTP {self.status} {self.error.get('code')} {str(self.error.get('message'))[:80]!r}"
        return f"HTTP {self.status}, no JSON-RPC response"


def header_value(text: str) -> str:
    """An Mcp-* header value as 2026-07-28 sends it: plain printable ASCII as is, anything else (edge whitespace, a
    value that looks like the sentinel itself) as ``=?base64?...?=``."""
    plain = text.isascii() and text.isprintable() and text == text.strip() and not text.startswith("=?base64?")
    return text if plain else f"=?base64?{base64.b64encode(text.encode()).decode()}?="


def modern_request(request_id: int, method: str, params: Obj | None = None) -> HttpRequest:
    """A self-contained 2026-07-28 request: the envelope in ``params._meta``, the method (and name) in headers."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": CLIENT_INFO}
    params = {**(params or {}), "_meta": meta}
    headers = {**BASE_HEADERS, "MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": method}
    if method in NAMED_PARAMS:
        headers["Mcp-Name"] = header_value(str(params[NAMED_PARAMS[method]]))
    return HttpRequest(headers, {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def handshake_request(request_id: int | None, method: str, params: Obj | None = None, *, version: str = "",
                      session_id: str = "") -> HttpRequest:
    """A handshake-era message; after initialize it carries the negotiated version and the session id. No id: a
    notification."""
    headers = dict(BASE_HEADERS)
    if version:
        headers["MCP-Protocol-Version"] = version
    if session_id:
        headers["Mcp-Session-Id"] = session_id
    body: Obj = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        body["id"] = request_id
    if params is not None:
        body["params"] = params
    return HttpRequest(headers, body)


def initialize_request(request_id: int) -> HttpRequest:
    return handshake_request(request_id, "initialize", {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {},
                                                        "clientInfo": CLIENT_INFO})


def _sse_messages(text: str) -> list[Any]:
    messages, data = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            messages.append(json.loads("\n".join(data)))
            data = []
    return messages


def read_reply(status: int, content_type: str, text: str, request_id: int, session_id: str = "") -> Reply:
    """The response to ``request_id`` out of a JSON or SSE body. An error whose id is null (the server could not
    tell which request it was) also counts. Raises CommandFailed for a 2xx without the response."""
    try:
        messages = _sse_messages(text) if content_type.startswith("text/event-stream") else [json.loads(text)]
    except ValueError:
        messages = []
    for message in messages:
        if isinstance(message, dict) and message.get("id") in (request_id, None) and \
                ("result" in message or "error" in message):
            if "error" in message:
                error = message["error"] if isinstance(message["error"], dict) else {"message": message["error"]}
                return Reply(status, error=error, session_id=session_id)
            if message.get("id") == request_id and isinstance(message["result"], dict):
                return Reply(status, result=message["result"], session_id=session_id)
    if 200 <= status < 300:
        raise CommandFailed(f"HTTP {status} without a JSON-RPC response to request {request_id}: {text[:200]!r}")
    return Reply(status, session_id=session_id)


def speaks_modern(discover: Reply) -> bool:
    """Whether a ``server/discover`` reply is positive evidence of a 2026-07-28 server. Raises CommandFailed for
    the one answer that rules out both eras: -32022 naming only other stateless revisions."""
    if discover.result is not None:
        return MODERN_VERSION in (discover.result.get("supportedVersions") or [])
    error = discover.error or {}
    if error.get("code") == UNSUPPORTED_PROTOCOL_VERSION:
        supported = (error.get("data") or {}).get("supported")
        if isinstance(supported, list) and supported and not HANDSHAKE_VERSIONS.intersection(supported):
            raise CommandFailed(f"the server speaks only {', '.join(map(str, supported))}, neither "
                                f"{MODERN_VERSION} nor a handshake revision this check knows")
    return False


def server_identity(discover_or_init: Obj) -> Obj:
    """serverInfo from an initialize result, or from a 2026-07-28 result's ``_meta`` stamp."""
    info = discover_or_init.get("serverInfo") or \
        (discover_or_init.get("_meta") or {}).get("io.modelcontextprotocol/serverInfo") or {}
    return dict(info) if isinstance(info, dict) else {}


@dataclass
class CheckResult:
    """What a check saw; ``summary`` is the one line the commands print."""

    version: str  # the revision the check ran on: 2026-07-28, or what initialize negotiated
    handshake_reason: str = ""  # why it fell back to the handshake ("" on 2026-07-28)
    server: Obj = field(default_factory=dict)
    tools: list[Obj] = field(default_factory=list)
    called: str = ""  # the tool called, if any
    call_text: str = ""

    def summary(self) -> str:
        era = f"MCP {self.version}" if not self.handshake_reason else \
            f"MCP {self.version} (initialize handshake; {self.handshake_reason})"
        line = f"{era}: tools/list OK ({len(self.tools)} tool{'s' if len(self.tools) != 1 else ''})"
        return line + (f", tools/call {self.called} OK" if self.called else "")


# ------------------------------------------------------------------------------------------------------------------
# I/O


class _Endpoint:
    """POSTs requests to one MCP endpoint and reads the replies."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url

    async def post(self, request: HttpRequest) -> Reply:
        response = await self.http.post(self.url, headers=request.headers, json=request.body)
        session_id = response.headers.get("mcp-session-id", "")
        if "id" not in request.body:
            if response.status_code >= 400:
                raise CommandFailed(f"{request.body['method']}: HTTP {response.status_code}")
            return Reply(response.status_code, session_id=session_id)
        return read_reply(response.status_code, response.headers.get("content-type", ""), response.text,
                          request.body["id"], session_id)


def _result(reply: Reply, version: str, what: str) -> Obj:
    if reply.result is None:
        raise CommandFailed(f"MCP {version}: {what} failed: {reply.describe()}")
    return reply.result


async def _list_tools(endpoint: _Endpoint, version: str, build: Callable[[int, Obj], HttpRequest]) -> list[Obj]:
    """Every page of tools/list; ``build(id, params)`` makes the era's request."""
    tools: list[Obj] = []
    cursor = None
    for page in range(100):
        result = _result(await endpoint.post(build(10 + page, {"cursor": cursor} if cursor else {})), version,
                         "tools/list")
        tools += [tool for tool in result.get("tools") or [] if isinstance(tool, dict)]
        cursor = result.get("nextCursor")
        if not cursor:
            return tools
    raise CommandFailed(f"MCP {version}: tools/list returned more than 100 pages")


async def _call_tool(endpoint: _Endpoint, version: str, request: HttpRequest) -> str:
    what = f"tools/call {request.body['params']['name']}"
    result = _result(await endpoint.post(request), version, what)
    text = " ".join(str(item.get("text", "")) for item in result.get("content") or [] if isinstance(item, dict))
    if result.get("isError"):
        raise CommandFailed(f"MCP {version}: {what} returned an error result: {text[:200]!r}")
    if result.get("resultType", "complete") != "complete":
        raise CommandFailed(f"MCP {version}: {what} answered {result.get('resultType')!r}, not a complete result")
    return text


async def _modern(endpoint: _Endpoint, discover: Obj, call: tuple[str, Obj] | None) -> CheckResult:
    seen = CheckResult(MODERN_VERSION, server=server_identity(discover))
    seen.tools = await _list_tools(endpoint, MODERN_VERSION, lambda i, p: modern_request(i, "tools/list", p))
    if call is not None:
        seen.called = call[0]
        seen.call_text = await _call_tool(endpoint, MODERN_VERSION, modern_request(
            2, "tools/call", {"name": call[0], "arguments": call[1]}))
    return seen


async def _handshake(endpoint: _Endpoint, reason: str, call: tuple[str, Obj] | None) -> CheckResult:
    reply = await endpoint.post(initialize_request(3))
    init = _result(reply, HANDSHAKE_VERSION, "initialize")
    version, session = str(init.get("protocolVersion", "")), reply.session_id
    seen = CheckResult(version, handshake_reason=reason, server=server_identity(init))
    try:
        await endpoint.post(handshake_request(None, "notifications/initialized", version=version, session_id=session))
        seen.tools = await _list_tools(endpoint, version, lambda i, p: handshake_request(
            i, "tools/list", p, version=version, session_id=session))
        if call is not None:
            seen.called = call[0]
            seen.call_text = await _call_tool(endpoint, version, handshake_request(
                4, "tools/call", {"name": call[0], "arguments": call[1]}, version=version, session_id=session))
    finally:
        if session:
            with trio.CancelScope(shield=True), trio.move_on_after(5), contextlib.suppress(httpx.HTTPError):
                await endpoint.http.delete(endpoint.url, headers={"Mcp-Session-Id": session,
                                                                  "MCP-Protocol-Version": version})
    return seen


async def check_mcp(url: str, call: tuple[str, Obj] | None = None, *, http_timeout: float = 30) -> CheckResult:
    """List the tools (and call ``call``: name, arguments) of the MCP server at ``url``, on 2026-07-28 when it
    speaks it, else after an initialize handshake. Raises CommandFailed for every failure, network ones included."""
    try:
        async with httpx.AsyncClient(timeout=http_timeout) as http:
            endpoint = _Endpoint(http, url)
            discover = await endpoint.post(modern_request(1, "server/discover"))
            if speaks_modern(discover):
                assert discover.result is not None
                return await _modern(endpoint, discover.result, call)
            if discover.result is not None:
                versions = ", ".join(map(str, discover.result.get("supportedVersions") or [])) or "none"
                reason = f"server/discover lists {versions}"
            else:
                code = f" {discover.error.get('code')}" if discover.error is not None else ""
                reason = f"server/discover got HTTP {discover.status}{code}"
            return await _handshake(endpoint, reason, call)
    except httpx.HTTPError as error:
        raise CommandFailed(f"MCP check of {url}: {type(error).__name__}: {error}") from None
