"""The stateless pool keeps what a stdio line cannot attribute with the one request that caused it.

A handshake-era server's ``elicitation/create`` and any server's ``notifications/message`` carry no request id on
stdio. Two such calls at once on one process would get each other's input requests or log lines, so the pool gives
each its own process (and ends the extra ones once idle).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from tests.adapter.test_conformance_2026 import LEGACY_TWIN
from tests.adapter.test_listen import ENVELOPE, adapter, headers

ASKING = {**ENVELOPE, "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}

pytestmark = pytest.mark.timeout(240)


def events(response_text: str, content_type: str) -> list[dict[str, Any]]:
    if not content_type.startswith("text/event-stream"):
        return [msgspec.json.decode(response_text)]
    return [msgspec.json.decode(line[5:]) for line in response_text.splitlines() if line.startswith("data:")]


async def test_concurrent_elicitations_of_a_legacy_server_each_reach_their_own_caller(tmp_path: Path) -> None:
    async with adapter([sys.executable, str(LEGACY_TWIN)], tmp_path) as client:
        tool = "test_input_required_result_elicitation"
        rounds: dict[str, dict[str, Any]] = {}

        async def first(name: str, request_id: int) -> None:
            body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                    "params": {"name": tool, "arguments": {}, "_meta": ASKING}}
            response = await client.post("/mcp", json=body, headers=headers("tools/call", tool))
            rounds[name] = events(response.text, response.headers["content-type"])[-1]

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(first, "Alice", 1)
                nursery.start_soon(first, "Bob", 2)
        for name, request_id in (("Alice", 1), ("Bob", 2)):
            result = rounds[name]["result"]
            assert rounds[name]["id"] == request_id
            assert result["resultType"] == "input_required", result
            assert len(result["inputRequests"]) == 1, result  # its own question, not the other caller's too
            (key,) = result["inputRequests"]
            body = {"jsonrpc": "2.0", "id": request_id + 10, "method": "tools/call", "params": {
                "name": tool, "arguments": {}, "_meta": ASKING, "requestState": result["requestState"],
                "inputResponses": {key: {"action": "accept", "content": {"name": name}}}}}
            response = await client.post("/mcp", json=body, headers=headers("tools/call", tool))
            final = events(response.text, response.headers["content-type"])[-1]
            assert final["result"]["content"][0]["text"] == f"Hello, {name}!", final


async def test_concurrent_log_opted_calls_each_hear_only_their_own_log_lines(tmp_path: Path) -> None:
    async with adapter([sys.executable, str(LEGACY_TWIN)], tmp_path) as client:
        tool = "test_logging_tool"
        heard: dict[int, list[dict[str, Any]]] = {}

        async def logged(request_id: int) -> None:
            meta = {**ENVELOPE, "io.modelcontextprotocol/logLevel": "info"}
            body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                    "params": {"name": tool, "arguments": {}, "_meta": meta}}
            response = await client.post("/mcp", json=body, headers=headers("tools/call", tool))
            heard[request_id] = events(response.text, response.headers["content-type"])

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for request_id in (1, 2, 3):
                    nursery.start_soon(logged, request_id)
        for request_id, seen in heard.items():
            logs = [event for event in seen if event.get("method") == "notifications/message"]
            assert len(logs) == 3, (request_id, seen)  # three lines each, never a neighbour's
            assert seen[-1]["id"] == request_id and seen[-1]["result"]["content"][0]["text"] == \
                "Logging tool executed"
