"""The CLI's MCP check (kmcp.commands.mcpcheck): 2026-07-28 requests built as the revision wants them, the era
verdict read from the server/discover reply, and, against a real ``kmcp adapter``, 2026-07-28 when the adapter
serves it and the initialize handshake when it refuses stateless requests (``--server-era off``)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
import trio

from kmcp.commands.mcpcheck import (
    MODERN_VERSION,
    Reply,
    check_mcp,
    handshake_request,
    header_value,
    modern_request,
    read_reply,
    speaks_modern,
)
from kmcp.errors import CommandFailed
from tests.adapter.test_conformance import free_ports, serving

ROOT = Path(__file__).resolve().parents[2]
MCP2_PYTHON = ROOT / ".venv-mcp2/bin/python"
MODERN_SERVER = ROOT / "tests/servers/modern_conformance_server.py"
META_KEYS = {"io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientCapabilities",
             "io.modelcontextprotocol/clientInfo"}


def test_a_modern_request_carries_the_envelope_and_the_headers() -> None:
    call = modern_request(7, "tools/call", {"name": "echo", "arguments": {"message": "hi"}})
    assert call.body["id"] == 7 and call.body["method"] == "tools/call"
    assert set(call.body["params"]["_meta"]) == META_KEYS
    assert call.body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN_VERSION
    assert call.body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] == {}
    assert call.headers["MCP-Protocol-Version"] == MODERN_VERSION
    assert (call.headers["Mcp-Method"], call.headers["Mcp-Name"]) == ("tools/call", "echo")
    listing = modern_request(8, "tools/list")
    assert "Mcp-Name" not in listing.headers and listing.body["params"] == {"_meta": listing.body["params"]["_meta"]}
    assert modern_request(9, "resources/read", {"uri": "file:///a b"}).headers["Mcp-Name"] == "file:///a b"


@pytest.mark.parametrize("value", ["héllo", " padded", "=?base64?looks-encoded?="])
def test_header_values_that_are_not_plain_ascii_are_base64(value: str) -> None:
    encoded = header_value(value)
    assert encoded.startswith("=?base64?") and encoded.endswith("?=")
    assert base64.b64decode(encoded[len("=?base64?"):-2]).decode() == value
    assert header_value("get-weather") == "get-weather"


def test_a_handshake_request_after_initialize_names_the_session() -> None:
    request = handshake_request(3, "tools/list", {}, version="2025-06-18", session_id="abc")
    assert request.headers["Mcp-Session-Id"] == "abc" and request.headers["MCP-Protocol-Version"] == "2025-06-18"
    notification = handshake_request(None, "notifications/initialized")
    assert "id" not in notification.body and "params" not in notification.body


def test_replies_are_read_from_json_and_from_sse() -> None:
    sse = ('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\n\n'
           'data: {"jsonrpc":"2.0","id":2,\ndata: "result":{"tools":[]}}\n\n')
    assert read_reply(200, "text/event-stream", sse, 2).result == {"tools": []}
    body = json.dumps({"jsonrpc": "2.0", "id": 5, "error": {"code": -32601, "message": "nope"}})
    assert read_reply(404, "application/json", body, 5).error == {"code": -32601, "message": "nope"}
    anonymous = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "bad version"}})
    assert read_reply(400, "application/json", anonymous, 1).error == {"code": -32600, "message": "bad version"}
    assert read_reply(404, "text/plain", "Not Found", 1) == Reply(404)
    with pytest.raises(CommandFailed, match="without a JSON-RPC response"):
        read_reply(200, "application/json", json.dumps({"jsonrpc": "2.0", "id": 99, "result": {}}), 1)


@pytest.mark.parametrize(("reply", "modern"), [
    (Reply(200, result={"supportedVersions": ["2026-07-28"], "capabilities": {}}), True),
    (Reply(200, result={"supportedVersions": ["2025-11-25"], "capabilities": {}}), False),
    (Reply(400, error={"code": -32600, "message": "unsupported MCP-Protocol-Version"}), False),
    (Reply(404, error={"code": -32601, "message": "Method not found"}), False),
    (Reply(400, error={"code": -32022, "data": {"supported": ["2025-11-25"], "requested": "2026-07-28"}}), False),
    (Reply(404), False),
])
def test_only_a_discover_result_listing_2026_07_28_means_modern(reply: Reply, modern: bool) -> None:
    assert speaks_modern(reply) is modern


def test_a_server_speaking_only_other_stateless_revisions_fails_the_check() -> None:
    with pytest.raises(CommandFailed, match="speaks only 2027-01-01"):
        speaks_modern(Reply(400, error={"code": -32022, "data": {"supported": ["2027-01-01"]}}))


@pytest.fixture(scope="module")
def mcp2() -> Path:
    if not MCP2_PYTHON.exists():
        from tests.adapter.npm_peers import missing_peer

        missing_peer(f"{MCP2_PYTHON} is missing: scripts/setup builds the mcp 2.x virtualenv")
    return MCP2_PYTHON


@pytest.mark.slow
@pytest.mark.parametrize(("era", "version", "reason"), [
    ("auto", MODERN_VERSION, ""),
    ("off", "2025-11-25", "server/discover got HTTP 400 -32600"),
])
async def test_check_through_the_adapter_in_front_of_a_modern_server(mcp2: Path, tmp_path: Path, era: str,
                                                                     version: str, reason: str) -> None:
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}", "--server-era", era,
            "--", str(mcp2), str(MODERN_SERVER)]
    async with serving(argv, port, tmp_path / "adapter.log"):
        with trio.fail_after(60):
            seen = await check_mcp(f"http://127.0.0.1:{port}/mcp", ("test_simple_text", {}))
    assert seen.version == version
    assert seen.handshake_reason == reason
    assert seen.server["name"] == "kmcp-modern-conformance-server"
    assert "test_simple_text" in {tool["name"] for tool in seen.tools}
    assert seen.call_text == "This is a simple text response for testing."
    assert seen.summary().startswith(f"MCP {version}: " if not reason else f"MCP {version} (initialize handshake; ")
    assert seen.summary().endswith(f"tools/list OK ({len(seen.tools)} tools), tools/call test_simple_text OK")


@pytest.mark.slow
async def test_check_of_a_handshake_era_server_uses_the_adapters_bridge(tmp_path: Path) -> None:
    """The dev example (kmcp dev echo-server) only knows initialize; the adapter answers 2026-07-28 for it."""
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}", "--",
            sys.executable, "-m", "kmcp", "dev", "echo-server"]
    async with serving(argv, port, tmp_path / "adapter.log"):
        with trio.fail_after(60):
            seen = await check_mcp(f"http://127.0.0.1:{port}/mcp", ("echo", {"message": "bridged"}))
    assert (seen.version, seen.handshake_reason, seen.call_text) == (MODERN_VERSION, "", "bridged")
    assert seen.summary() == f"MCP {MODERN_VERSION}: tools/list OK (2 tools), tools/call echo OK"


async def test_an_unreachable_server_is_a_command_failure_not_an_era_verdict() -> None:
    (port,) = free_ports(1)
    with pytest.raises(CommandFailed, match="ConnectError"):
        await check_mcp(f"http://127.0.0.1:{port}/mcp")
