"""List and call tools on an MCP server over Streamable HTTP with the official MCP Python SDK client; print one
JSON object of what it saw. ``python http_client.py URL TOOL=JSON_ARGS...`` (asyncio, so out of the trio tests)."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def main(url: str, calls: list[tuple[str, dict[str, Any]]]) -> None:
    seen: dict[str, Any] = {"calls": {}}
    async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as session:
        init = await session.initialize()
        seen["server_name"] = init.serverInfo.name
        seen["tools"] = sorted(tool.name for tool in (await session.list_tools()).tools)
        for name, arguments in calls:
            result = await session.call_tool(name, arguments)
            seen["calls"][name] = {"error": result.isError, "text": [getattr(c, "text", None) for c in result.content]}
    print(json.dumps(seen))


if __name__ == "__main__":
    requested = [arg.split("=", 1) for arg in sys.argv[2:]]
    anyio.run(main, sys.argv[1], [(name, json.loads(args)) for name, args in requested])
