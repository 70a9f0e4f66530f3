"""A tiny stdio MCP server bundled with kmcp, for ``kmcp dev up``: it runs wherever kmcp runs (also from the
zipapp, which holds no MCP SDK), so the quick start needs nothing but Python.

Newline-delimited JSON-RPC on stdin/stdout, as the MCP stdio transport specifies. Tools: ``echo`` and ``add``.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from kmcp import __version__

SERVER_NAME = "kmcp-echo"
PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
TOOLS: list[dict[str, Any]] = [
    {"name": "echo", "description": "Echo the message back.",
     "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}},
    {"name": "add", "description": "Add two numbers.",
     "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                     "required": ["a", "b"]}},
]


def _text(text: str, error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": error}


def call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if name == "echo":
        message = arguments.get("message")
        if not isinstance(message, str):
            return _text("echo needs a string argument 'message'", error=True)
        return _text(message)
    if name == "add":
        a, b = arguments.get("a"), arguments.get("b")
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            return _text("add needs numbers 'a' and 'b'", error=True)
        total = a + b
        return _text(str(int(total) if float(total).is_integer() else total))
    raise KeyError(name)


def handle(message: dict[str, Any]) -> dict[str, Any] | None:
    """One JSON-RPC message in, the response out (None for notifications and responses)."""
    method, request_id = message.get("method"), message.get("id")
    if method is None or request_id is None:
        return None
    params = message.get("params") or {}
    if method == "initialize":
        asked = params.get("protocolVersion")
        result: dict[str, Any] = {
            "protocolVersion": asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": SERVER_NAME, "version": __version__},
        }
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        try:
            result = call_tool(str(params.get("name")), params.get("arguments") or {})
        except KeyError:
            return {"jsonrpc": "2.0", "id": request_id,
                    "error": {"code": -32602, "message": f"unknown tool {params.get('name')!r}"}}
    else:
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    for line in stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            reply: dict[str, Any] | None = {"jsonrpc": "2.0", "id": None,
                                            "error": {"code": -32700, "message": "parse error"}}
        else:
            reply = handle(message) if isinstance(message, dict) else None
        if reply is not None:
            stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
            stdout.flush()


def main() -> int:
    serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
