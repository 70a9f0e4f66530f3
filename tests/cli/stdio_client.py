"""Talk to a stdio MCP server with the official MCP Python SDK client; print one JSON object of what it saw.

Run as ``python stdio_client.py CWD TOOL=JSON_ARGS... -- COMMAND [ARGS...]``: initialize, list tools, call each
named tool with its arguments. Kept out of the test process (the SDK runs on asyncio; the tests run on trio).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(cwd: str, calls: list[tuple[str, dict[str, Any]]], command: list[str]) -> None:
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=cwd)
    seen: dict[str, Any] = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        seen["server_name"] = init.serverInfo.name
        seen["protocol"] = init.protocolVersion
        tools = (await session.list_tools()).tools
        seen["tools"] = {tool.name: tool.description for tool in tools}
        seen["schemas"] = {tool.name: tool.inputSchema for tool in tools}
        seen["calls"] = {}
        for name, arguments in calls:
            result = await session.call_tool(name, arguments)
            seen["calls"][name] = {"error": result.isError, "text": [getattr(c, "text", None) for c in result.content]}
    print(json.dumps(seen))


if __name__ == "__main__":
    split = sys.argv.index("--")
    requested = [arg.split("=", 1) for arg in sys.argv[2:split]]
    anyio.run(main, sys.argv[1], [(name, json.loads(args)) for name, args in requested], sys.argv[split + 1:])
