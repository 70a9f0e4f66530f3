"""The sans-IO rule of ``kmcp/adapter/protocol/``: it imports no I/O (trio, sockets, processes, the OS), nor any
adapter module above it, so it can be driven with bytes and messages alone."""

from __future__ import annotations

import ast
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parents[2] / "kmcp" / "adapter" / "protocol"
# h11 may be used: it is sans-IO itself (the HTTP connection's fallback parser); httpx does I/O.
FORBIDDEN = ("trio", "trio_websocket", "socket", "os", "subprocess", "asyncio", "selectors", "threading", "httpx",
             "kubernetes")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_protocol_package_imports_no_io_and_nothing_above_it() -> None:
    files = sorted(PROTOCOL.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        for name in imported_modules(path):
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {name}"
            if name.startswith("kmcp"):
                assert name.startswith("kmcp.adapter.protocol"), f"{path.name} imports {name}"
