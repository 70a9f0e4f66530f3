"""Fixtures the adapter tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapter.npm_peers import missing_peer

MCP2_PYTHON = Path(__file__).resolve().parents[2] / ".venv-mcp2/bin/python"


@pytest.fixture(scope="session")
def mcp2_python() -> Path:
    """The interpreter of the mcp 2.x virtualenv (the 2026-07-28 SDK), which scripts/setup builds."""
    if not MCP2_PYTHON.exists():
        missing_peer(f"{MCP2_PYTHON} is missing: scripts/setup builds the mcp 2.x virtualenv")
    return MCP2_PYTHON
