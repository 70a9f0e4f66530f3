"""One MCP session through a load balancer in front of adapter replicas, driven by the official MCP Python SDK.

Run as ``python sdk_replica_client.py URL streamable|sse CALLS``; prints one JSON object of what it saw. The
HTTP client keeps no idle connections, so every request is a new connection and a per-connection round-robin
balancer sends consecutive requests of the session to different replicas. The server's parent process id is read
while the session is alive: it says which adapter ran the server that answered.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.context import RequestContext
from mcp.types import CreateMessageRequestParams, CreateMessageResult, TextContent


def no_keepalive_client(headers: dict[str, str] | None = None, timeout: httpx.Timeout | None = None,
                        auth: httpx.Auth | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(headers=headers, auth=auth, limits=httpx.Limits(max_keepalive_connections=0),
                             timeout=timeout or httpx.Timeout(30, read=300))


async def sampling(context: RequestContext[ClientSession, Any], params: CreateMessageRequestParams,
                   ) -> CreateMessageResult:
    question = params.messages[0].content
    text = question.text if isinstance(question, TextContent) else "?"
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text=f"echo:{text}"), model="t")


def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise LookupError(pid)


async def main(url: str, kind: str, calls: int) -> None:
    seen: dict[str, Any] = {}
    if kind == "streamable":
        transport: Any = streamablehttp_client(url, httpx_client_factory=no_keepalive_client)
    else:
        transport = sse_client(url, httpx_client_factory=no_keepalive_client)
    async with transport as streams, ClientSession(streams[0], streams[1], sampling_callback=sampling) as session:
        await session.initialize()
        if kind == "streamable":
            seen["session_id"] = streams[2]()
        seen["tools"] = sorted(tool.name for tool in (await session.list_tools()).tools)
        pids = [int(_text(await session.call_tool("pid", {}))) for _ in range(calls)]
        seen["pids"] = pids
        seen["echo"] = [_text(await session.call_tool("echo", {"text": f"m{i}"})) for i in range(calls)]
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        seen["count"] = _text(await session.call_tool("count", {"steps": 3}, progress_callback=on_progress))
        seen["progress"] = progress
        seen["ask"] = _text(await session.call_tool("ask", {"question": "who owns me"}))
        seen["server_parent"] = parent_of(pids[0])
    print(json.dumps(seen))


def _text(result: Any) -> str:
    return str(result.content[0].text)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
