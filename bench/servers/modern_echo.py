"""The smallest `mcp` 2.x (`MCPServer`) server: one `echo` tool, the same code over stdio and over the SDK's HTTP.

Used by bench/modern.py to compare `kmcp adapter` (this file over stdio: 2026-07-28 requests are passed through
to a warm pool, handshake-era sessions get a process each) with the SDK's own Streamable HTTP server running
this very code (`--http --port N`, 127.0.0.1, `/mcp`). Needs `mcp` 2.x: run it with `.venv-mcp2/bin/python`.
"""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("kmcp-bench-modern-echo", version="1.0.0", log_level="WARNING")


@mcp.tool(description="Echo the message back.")
def echo(message: str) -> str:
    return message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--http", action="store_true", help="serve the SDK's Streamable HTTP on 127.0.0.1:PORT/mcp")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--json-response", action="store_true", help="the SDK answers with JSON instead of SSE")
    args = parser.parse_args()
    if not args.http:
        mcp.run("stdio")
    else:
        mcp.run("streamable-http", host="127.0.0.1", port=args.port, json_response=args.json_response)


if __name__ == "__main__":
    main()
