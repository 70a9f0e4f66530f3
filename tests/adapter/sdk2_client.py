"""A real ``mcp`` 2.x ``Client`` against a URL, run under .venv-mcp2 by test_sdk2_clients.py: prints one JSON line
with the negotiated protocol version, the tool names and what calling tools gave (with an elicitation answered by
its callback, so an input_required round trip happens when the server asks)."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from mcp import Client, types


async def main(url: str, mode: str, calls: list[str]) -> None:
    asked: list[str] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Alice", "ok": True, "confirmed": True})

    out: dict[str, Any] = {}
    async with Client(url, mode=mode, elicitation_callback=elicit) as client:  # type: ignore[arg-type]
        out["version"] = client.protocol_version
        out["tools"] = [tool.name for tool in (await client.list_tools()).tools]
        results = {}
        for spec in calls:
            name, _, raw = spec.partition("=")
            result = await client.call_tool(name, json.loads(raw) if raw else {})
            results[name] = [getattr(item, "text", item.type) for item in result.content]
        out["results"] = results
        out["asked"] = asked
    print(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3:])
