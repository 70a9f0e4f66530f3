"""Real npm MCP peers: the official TypeScript SDK client, the MCP Inspector CLI and server-everything.

Installed (pinned, cached under ~/.cache/kmcp/npm) by scripts/npm-peers on first use. Without node/npm the tests
are skipped with a reason, except under CI=true, where a missing peer is a failure.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import trio

from tests.adapter.npm_peers import install_node_modules, missing_peer
from tests.adapter.rawhttp import FASTMCP_SERVER, eventually, running_adapter

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TS_CLIENT = ROOT / "tests/peers/ts_client.cjs"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    if shutil.which("node") is None:
        missing_peer("node and npm are needed for the npm peer tests")
    modules, problem = install_node_modules()
    if modules is not None:
        if (modules / ".bin/mcp-server-everything").exists():
            return modules
        problem = f"{modules} lacks the pinned peers"
    missing_peer(problem)


async def run_json(argv: list[str]) -> object:
    with trio.fail_after(90):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False, cwd="/tmp")
    assert done.returncode == 0, (argv, done.stderr.decode()[-3000:])
    return json.loads(done.stdout.decode())


def check_ts_session(seen: object) -> None:
    assert isinstance(seen, dict)
    assert seen["tools"] == ["ask", "count", "crash", "echo", "log", "pid", "sleep"]
    assert seen["echo"] == "from ts"
    assert seen["count"] == "counted 2"
    # The TS SDK runs notification handlers a microtask late, so progress that arrives in the same read as the
    # response can be dropped by the client itself; what did arrive must be in order.
    assert seen["progress"] in ([], [1], [1, 2])
    assert seen["ask"] == "model said: ts:q"  # sampling round trip through the TS client
    assert seen["resource"] == "hello from the resource"
    assert seen["ping"] is True


async def test_typescript_sdk_client_streamable_http(node_modules: Path) -> None:
    async with running_adapter(FASTMCP_SERVER) as adapter:
        seen = await run_json(["node", str(TS_CLIENT), str(node_modules), f"http://127.0.0.1:{adapter.port}/mcp",
                               "streamable"])
        check_ts_session(seen)
        assert isinstance(seen, dict)
        assert seen["protocolVersion"] in ("2025-06-18", "2025-11-25")
        assert seen["terminated"] is True  # DELETE /mcp ended the session

        async def gone() -> bool:
            return b"kmcp_adapter_active_sessions 0" in (await adapter.request("GET", "/metrics")).body

        await eventually(gone)


async def test_typescript_sdk_client_legacy_sse(node_modules: Path) -> None:
    async with running_adapter(FASTMCP_SERVER) as adapter:
        check_ts_session(await run_json(["node", str(TS_CLIENT), str(node_modules),
                                         f"http://127.0.0.1:{adapter.port}/sse", "sse"]))


@pytest.mark.parametrize("path", ["/mcp", "/sse"])
async def test_inspector_cli_against_server_everything(node_modules: Path, path: str) -> None:
    everything = [str(node_modules / ".bin/mcp-server-everything"), "stdio"]
    inspector = [str(node_modules / ".bin/mcp-inspector"), "--cli"]
    async with running_adapter(everything) as adapter:
        url = f"http://127.0.0.1:{adapter.port}{path}"
        listed = await run_json([*inspector, url, "--method", "tools/list"])
        assert isinstance(listed, dict)
        names = {tool["name"] for tool in listed["tools"]}
        assert {"echo", "get-sum"} <= names
        echoed = await run_json([*inspector, url, "--method", "tools/call", "--tool-name", "echo",
                                 "--tool-arg", "message=through kmcp"])
        assert echoed == {"content": [{"type": "text", "text": "Echo: through kmcp"}]}
        summed = await run_json([*inspector, url, "--method", "tools/call", "--tool-name", "get-sum",
                                 "--tool-arg", "a=2", "b=40"])
        assert isinstance(summed, dict)
        assert "42" in summed["content"][0]["text"]
        resources = await run_json([*inspector, url, "--method", "resources/list"])
        assert isinstance(resources, dict)
        assert resources["resources"]
