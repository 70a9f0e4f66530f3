"""The ``mcp`` 2.x ``Client`` (PyPI mcp 2.3.0, in .venv-mcp2) through ``kmcp adapter``: in auto mode it probes
``server/discover`` and must settle on 2026-07-28 for a modern stdio server *and* for a handshake-era one
(``@modelcontextprotocol/server-everything``, bridged), an elicitation round trip included; pinned and legacy modes
work too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from tests.adapter.test_conformance import free_ports, serving
from tests.adapter.test_peers import node_modules  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MCP2_PYTHON = ROOT / ".venv-mcp2/bin/python"
CLIENT = ROOT / "tests/adapter/sdk2_client.py"
MODERN_SERVER = ROOT / "tests/servers/modern_conformance_server.py"


@pytest.fixture(scope="module")
def mcp2() -> Path:
    if not MCP2_PYTHON.exists():
        from tests.adapter.npm_peers import missing_peer

        missing_peer(f"{MCP2_PYTHON} is missing: scripts/setup builds the mcp 2.x virtualenv")
    return MCP2_PYTHON


async def client_run(mcp2: Path, server: list[str], mode: str, calls: list[str], tmp_path: Path) -> dict[str, object]:
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}", "--", *server]
    async with serving(argv, port, tmp_path / f"adapter-{mode}.log"):
        with trio.fail_after(90):
            done = await trio.run_process([str(mcp2), str(CLIENT), f"http://127.0.0.1:{port}/mcp", mode, *calls],
                                          capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    value = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("2026-07-28", "2026-07-28"),
                                               ("legacy", "2025-11-25")])
async def test_sdk2_client_against_a_modern_server(mcp2: Path, mode: str, version: str, tmp_path: Path) -> None:
    seen = await client_run(mcp2, [str(mcp2), str(MODERN_SERVER)], mode, ["test_simple_text"], tmp_path)
    assert seen["version"] == version
    assert "test_simple_text" in seen["tools"]  # type: ignore[operator]
    assert seen["results"] == {"test_simple_text": ["This is a simple text response for testing."]}


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_sdk2_client_against_server_everything_bridged(mcp2: Path, node_modules: Path,  # noqa: F811
                                                             mode: str, version: str, tmp_path: Path) -> None:
    everything = [str(node_modules / ".bin/mcp-server-everything"), "stdio"]
    seen = await client_run(mcp2, everything, mode, ['echo={"message": "hi"}', "trigger-elicitation-request"],
                            tmp_path)
    assert seen["version"] == version
    results = seen["results"]
    assert isinstance(results, dict)
    assert results["echo"] == ["Echo: hi"]
    assert "Alice" in " ".join(results["trigger-elicitation-request"])  # the callback's answer reached the server
    assert seen["asked"]  # and the elicitation reached the client: as input_required (auto) or a request (legacy)
