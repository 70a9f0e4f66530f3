"""Drive the adapter with the official MCP Python SDK client; prints one JSON object of what it saw.

Run as ``python sdk_client.py URL streamable|sse [BEARER_TOKEN]``. Kept out of the test process: the SDK runs on
asyncio here, so this also checks the adapter against the SDK's own event loop and HTTP stack (httpx).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.context import RequestContext
from mcp.types import CreateMessageRequestParams, CreateMessageResult, TextContent


async def sampling(context: RequestContext[ClientSession, Any], params: CreateMessageRequestParams,
                   ) -> CreateMessageResult:
    question = params.messages[0].content
    text = question.text if isinstance(question, TextContent) else "?"
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text=f"echo:{text}"), model="t")


async def main(url: str, kind: str, token: str | None = None) -> None:
    seen: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {token}"} if token else None
    transport = streamablehttp_client(url, headers=headers) if kind == "streamable" else sse_client(url, headers)
    async with transport as streams, ClientSession(streams[0], streams[1], sampling_callback=sampling) as session:
        init = await session.initialize()
        seen["protocol_version"] = init.protocolVersion
        seen["server_name"] = init.serverInfo.name
        seen["tools"] = sorted(tool.name for tool in (await session.list_tools()).tools)
        seen["echo"] = _text(await session.call_tool("echo", {"text": "hello"}))
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        seen["count"] = _text(await session.call_tool("count", {"steps": 3}, progress_callback=on_progress))
        seen["progress"] = progress
        seen["ask"] = _text(await session.call_tool("ask", {"question": "meaning of life"}))
        seen["resources"] = [str(r.uri) for r in (await session.list_resources()).resources]
        contents = (await session.read_resource("test://greeting")).contents[0]
        seen["resource"] = getattr(contents, "text", None)
        prompt = await session.get_prompt("review", {"code": "x = 1"})
        seen["prompt"] = getattr(prompt.messages[0].content, "text", None)
        await session.send_ping()
        seen["ping"] = True
        pids = {_text(await session.call_tool("pid", {})) for _ in range(2)}
        seen["pids"] = sorted(pids)
    print(json.dumps(seen))


def _text(result: Any) -> str:
    return str(result.content[0].text)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
