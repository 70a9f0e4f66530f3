"""The smallest honest stdio MCP server: initialize, tools/list, tools/call `echo`, ping.

Used by bench/ to expose a gateway's own overhead: the server does almost nothing, so what a benchmark
measures is the gateway. Standard library only, so every peer runs it the same way.
"""

from __future__ import annotations

import json
import sys

TOOLS = [{
    "name": "echo",
    "description": "Echo the message back.",
    "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
}]


def handle(msg: dict) -> dict | None:  # type: ignore[type-arg]
    method = msg.get("method")
    if "id" not in msg or method is None:
        return None  # a notification or a response: nothing to answer
    if method == "initialize":
        requested = msg.get("params", {}).get("protocolVersion", "2025-06-18")
        result: dict = {  # type: ignore[type-arg]
            "protocolVersion": requested,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "kmcp-bench-echo", "version": "1.0.0"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        text = str(msg.get("params", {}).get("arguments", {}).get("message", ""))
        result = {"content": [{"type": "text", "text": text}]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": f"unknown method {method}"}}
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def main() -> None:
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = handle(json.loads(line))
        if reply is not None:
            out.write(json.dumps(reply, separators=(",", ":")) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
