"""The official MCP SDK clients (Streamable HTTP and legacy SSE) against the adapter wrapping a FastMCP server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from tests.adapter.rawhttp import FASTMCP_SERVER, running_adapter

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).with_name("sdk_client.py")


async def run_client(url: str, kind: str) -> dict[str, object]:
    with trio.fail_after(60):
        done = await trio.run_process([sys.executable, str(CLIENT), url, kind], capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert isinstance(seen, dict)
    return seen


def check_full_session(seen: dict[str, object]) -> None:
    assert seen["server_name"] == "kmcp-test-server"
    assert seen["tools"] == ["ask", "count", "crash", "echo", "log", "pid", "sleep"]
    assert seen["echo"] == "hello"
    assert seen["count"] == "counted 3"
    assert seen["progress"] == [1.0, 2.0, 3.0]
    assert seen["ask"] == "model said: echo:meaning of life"  # the sampling round trip
    assert seen["resources"] == ["test://greeting"]
    assert seen["resource"] == "hello from the resource"
    assert seen["prompt"] == "Please review this code:\nx = 1"
    assert seen["ping"] is True
    assert isinstance(seen["pids"], list)
    assert len(seen["pids"]) == 1  # one process for the whole session


async def test_streamable_http_client_full_session() -> None:
    async with running_adapter(FASTMCP_SERVER) as adapter:
        seen = await run_client(f"http://127.0.0.1:{adapter.port}/mcp", "streamable")
        check_full_session(seen)
        assert seen["protocol_version"] in ("2025-06-18", "2025-11-25")


async def test_legacy_sse_client_full_session() -> None:
    async with running_adapter(FASTMCP_SERVER) as adapter:
        check_full_session(await run_client(f"http://127.0.0.1:{adapter.port}/sse", "sse"))


async def test_two_sdk_clients_get_separate_processes() -> None:
    async with running_adapter(FASTMCP_SERVER) as adapter:
        url = f"http://127.0.0.1:{adapter.port}/mcp"
        results: list[dict[str, object]] = []

        async def one() -> None:
            results.append(await run_client(url, "streamable"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            nursery.start_soon(one)
        assert results[0]["pids"] != results[1]["pids"]


