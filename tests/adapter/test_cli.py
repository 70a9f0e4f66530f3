"""``kmcp adapter`` argv handling, start-up imports, and a real process that drains on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from kmcp.adapter.cli import main, parse_settings
from kmcp.adapter.server.http import parse_listen
from tests.adapter.rawhttp import RAW_SERVER, request
from tests.procs import alive

ROOT = Path(__file__).resolve().parents[2]


def test_listen_forms() -> None:
    assert parse_listen(":3000") == ("0.0.0.0", 3000)
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError):
        parse_listen("3000x")


def test_defaults_and_flags_fill_the_settings() -> None:
    settings, args = parse_settings(["--", "python", "server.py", "--flag"])
    assert (settings.host, settings.port) == ("0.0.0.0", 3000)
    assert settings.session_idle_timeout == 600
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert args.command == ["python", "server.py", "--flag"]
    settings, _ = parse_settings(["--listen", ":4000", "--max-sessions", "3", "--session-idle-timeout", "5",
                                  "--allow-origin", "https://a", "--allow-origin", "https://b", "--warm-pool", "2",
                                  "--session-mode", "isolated", "--", "x"])
    assert (settings.port, settings.max_sessions, settings.session_idle_timeout) == (4000, 3, 5)
    assert settings.warm_pool == 2
    assert settings.allowed_origins == ("https://a", "https://b")


@pytest.mark.parametrize("argv", [
    [],  # no command
    ["--listen", "nope", "--", "x"],
    ["--max-sessions", "0", "--", "x"],
    ["--session-mode", "pooled", "--", "x"],
    ["--warm-pool", "-1", "--", "x"],
    ["--bogus", "--", "x"],
])
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("kmcp adapter: ")


def test_bridge_without_a_fifo_launcher_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kmcp.adapter.stdio.fifo_launcher", None)  # as in a build without it
    assert main(["--listen", "127.0.0.1:0", "--bridge", str(tmp_path)]) == 2
    assert "FIFO launcher" in capsys.readouterr().err


def test_adapter_never_imports_kubernetes_or_httpx() -> None:
    code = ("import sys, kmcp.adapter.cli, kmcp.adapter.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'httpx', 'yaml')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
async def test_real_process_serves_then_drains_on_sigterm_without_leaving_children() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "kmcp", "adapter", "--listen", "127.0.0.1:0", "--", *RAW_SERVER],
        stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stderr is not None
    try:
        log = b""
        with trio.fail_after(20):
            while (found := re.search(rb"http://127\.0\.0\.1:(\d+)", log)) is None:
                chunk = await process.stderr.receive_some(4096)
                assert chunk, log
                log += chunk
        port = int(found.group(1))
        assert (await request(port, "GET", "/health")).status == 200
        init = (b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
                b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}')
        response = await request(port, "POST", "/mcp", init, {"content-type": "application/json",
                                                              "accept": "application/json, text/event-stream"})
        assert response.status == 200
        await trio.sleep(1)  # the pool has probed its warm process and read its tool list by now
        children = _children(process.pid)
        assert len(children) == 2  # the session's process, and the warm one of the 2026-07-28 pool (no spares)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await process.wait()
        assert code == 0
        assert all(not alive(pid) for pid in children)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_busy_port_is_one_line_and_exit_1_before_any_server_starts(tmp_path: Path) -> None:
    import socket

    marker = tmp_path / "started"
    server = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close(); import time; time.sleep(30)"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}", "--",
                                 *server], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"kmcp adapter: cannot listen on 127.0.0.1:{port}: Address already in use"], result.stderr
    assert not marker.exists()  # bound first: no warm or stateless server process was started
