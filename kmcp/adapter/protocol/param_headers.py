"""``Mcp-Param-*`` headers (2026-07-28), sans-IO: which tool arguments a client must mirror in headers, and the check.

A tool's ``inputSchema`` may mark a top-level property with ``"x-mcp-header": "<Token>"`` (string, integer or
boolean); a client then sends the argument's value as ``Mcp-Param-<Token>`` too, so gateways and load balancers can
route or authorize on it without reading the body. The server must refuse a request whose header is missing,
badly encoded, or says something other than the body (400 with -32020): otherwise an intermediary decides on one
value while the tool runs with another. A stdio server never sees the headers, so the adapter checks them against
the tool list it has seen (:class:`ToolHeaders`).
"""

from __future__ import annotations

import re

import msgspec

from kmcp.adapter.protocol.era import decode_header_value

PREFIX = "mcp-param-"
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


class _Property(msgspec.Struct):
    header: str | None = msgspec.field(default=None, name="x-mcp-header")
    type: object = None


class _Schema(msgspec.Struct):
    properties: dict[str, _Property] = msgspec.field(default_factory=dict)


class _Tool(msgspec.Struct):
    name: str
    input_schema: _Schema = msgspec.field(default_factory=_Schema, name="inputSchema")


class _ToolsList(msgspec.Struct):
    tools: list[_Tool] = msgspec.field(default_factory=list)
    next_cursor: str | None = msgspec.field(default=None, name="nextCursor")


class _Call(msgspec.Struct):
    name: object = None
    arguments: dict[str, object] | None = None


def read_tools(result: bytes) -> tuple[dict[str, dict[str, str]], str | None]:
    """From one ``tools/list`` result: tool -> {header token (lower case) -> property}, and the next cursor."""
    try:
        listed = msgspec.json.decode(result, type=_ToolsList)
    except msgspec.MsgspecError:
        return {}, None
    tools: dict[str, dict[str, str]] = {}
    for tool in listed.tools:
        tokens = {prop.header.lower(): name for name, prop in tool.input_schema.properties.items()
                  if isinstance(prop.header, str) and prop.header}
        tools[tool.name] = tokens
    return tools, listed.next_cursor


class ToolHeaders:
    """What the adapter knows of the tools' ``x-mcp-header`` properties: filled from ``tools/list`` results,
    forgotten when the tool list changes. ``known`` is False until a full list was read."""

    def __init__(self) -> None:
        self.tools: dict[str, dict[str, str]] = {}
        self.known = False

    def learn(self, tools: dict[str, dict[str, str]], complete: bool) -> None:
        self.tools.update({name: tokens for name, tokens in tools.items() if tokens})  # only tools with headers
        self.known = self.known or complete

    def forget(self) -> None:
        self.tools.clear()
        self.known = False

    def check(self, headers: dict[str, str], params: bytes) -> str | None:
        """Why a ``tools/call``'s ``Mcp-Param-*`` headers do not match its arguments, or None."""
        if not self.tools:  # no tool declares x-mcp-header (the usual case): nothing to decode on the hot path
            return None
        try:
            call = msgspec.json.decode(params or b"{}", type=_Call)
        except msgspec.MsgspecError:
            return None  # the server answers malformed params itself
        tokens = self.tools.get(call.name) if isinstance(call.name, str) else None
        if not tokens:
            return None
        arguments = call.arguments or {}
        for token, prop in tokens.items():
            value = arguments.get(prop)
            sent = headers.get(PREFIX + token)
            if sent is None:
                if value is not None:
                    return f"the Mcp-Param-{token} header is missing (it must carry arguments.{prop})"
                continue
            if not _PRINTABLE.fullmatch(sent):
                return f"Mcp-Param-{token} has characters a header value cannot carry unencoded (use =?base64?…?=)"
            decoded = decode_header_value(sent.strip())
            if decoded is None:
                return f"Mcp-Param-{token} is not valid =?base64?…?= encoding"
            if value is None or decoded != _as_header(value):
                return f"Mcp-Param-{token} {sent!r} is not the request's arguments.{prop}"
        return None


def _as_header(value: object) -> str | None:
    """An argument's value as a client writes it in the header (strings, integers and booleans only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None
