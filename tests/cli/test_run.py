"""`kmcp init python` then `kmcp run --no-inspector`: the MCP SDK client lists and calls the echo tool over
Streamable HTTP on 127.0.0.1, and Ctrl-C stops the adapter and the server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import ROOT, kmcp

pytestmark = pytest.mark.slow
HTTP_CLIENT = Path(__file__).with_name("http_client.py")
SDK2_CLIENT = ROOT / "tests/adapter/sdk2_client.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serves_the_scaffolded_server_over_http(tmp_path: Path, scaffold_python: Path) -> None:
    assert kmcp("init", "python", tmp_path / "my-mcp-server").returncode == 0
    port = free_port()
    env = dict(os.environ)
    # `python` in kmcp.yaml is the scaffold's virtualenv (mcp 2.x, from its pyproject.toml); no uv here.
    env["PATH"] = os.pathsep.join([str(scaffold_python.parent), "/usr/bin", "/bin"])
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "kmcp", "run", "--project-dir", str(tmp_path / "my-mcp-server"),
                             "--no-inspector", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C to stop."):
                break
        output = "".join(lines)
        assert f"Streamable HTTP: http://127.0.0.1:{port}/mcp" in output, output + proc.stderr.read()
        assert f"SSE:             http://127.0.0.1:{port}/sse" in output
        assert "Transport Type: Streamable HTTP" in output
        assert "MCP 2026-07-28: tools/list OK (1 tool)\n" in output  # kmcp run's own check, discover first
        client = subprocess.run([sys.executable, str(HTTP_CLIENT), f"http://127.0.0.1:{port}/mcp",
                                 'echo={"message": "hello from kmcp run"}'],
                                capture_output=True, text=True, timeout=60)
        assert client.returncode == 0, client.stderr
        seen = json.loads(client.stdout.strip().splitlines()[-1])
        assert seen["server_name"] == "my-mcp-server"
        assert "echo" in seen["tools"]
        assert seen["calls"]["echo"] == {"error": False, "text": ["hello from kmcp run"]}
        # mcp 2.x's Client (the scaffold's own SDK) in auto mode: server/discover first, and it stays on 2026-07-28.
        modern = subprocess.run([str(scaffold_python), str(SDK2_CLIENT), f"http://127.0.0.1:{port}/mcp", "auto",
                                 'echo={"message": "stateless"}'], capture_output=True, text=True, timeout=60)
        assert modern.returncode == 0, modern.stderr
        seen = json.loads(modern.stdout.strip().splitlines()[-1])
        assert seen["version"] == "2026-07-28" and seen["results"] == {"echo": ["stateless"]}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    with socket.socket() as s:  # the adapter is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0


def start_run(project: Path, port: int, path: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "kmcp", "run", "--project-dir", str(project), "--no-inspector",
                             "--port", str(port), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def read_until_ready(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    output = ""
    for line in proc.stdout:
        output += line
        if line.startswith("Ctrl-C to stop."):
            break
    return output


def test_run_uses_the_projects_virtualenv(tmp_path: Path, scaffold_python: Path) -> None:
    """The scaffold README's `python -m venv .venv && .venv/bin/pip install -e .`: kmcp run must use that .venv even
    when the `python` on PATH lacks the project's dependencies (here: /usr/bin only, no mcp there)."""
    project = tmp_path / "venv-project"
    assert kmcp("init", "python", project).returncode == 0
    (project / ".venv").symlink_to(scaffold_python.parent.parent, target_is_directory=True)
    port = free_port()
    proc = start_run(project, port, "/usr/bin:/bin")
    try:
        output = read_until_ready(proc)
        assert "MCP 2026-07-28: tools/list OK (1 tool)\n" in output, output
        assert f"({project / '.venv' / 'bin' / 'python'} src/main.py)" in output
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_run_fails_visibly_when_the_server_cannot_start(tmp_path: Path) -> None:
    """No virtualenv and a `python3` without mcp: the server dies on import. The start fails, exit 1, with one error
    line and the server's own stderr under it; /health alone must not make it look served."""
    project = tmp_path / "broken"
    assert kmcp("init", "python", project).returncode == 0
    port = free_port()
    proc = start_run(project, port, "/usr/bin:/bin")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, out + err
    assert "Serving" not in out and "Ctrl-C" not in out
    lines = err.strip().splitlines()
    assert lines[0].startswith("kmcp: error: the MCP server did not start (python3 src/main.py): "), err
    assert "ModuleNotFoundError: No module named 'mcp'" in err
    assert "ExceptionGroup" not in err and 'kmcp/commands' not in err  # the server's traceback, not kmcp's own
    with socket.socket() as s:  # the adapter is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_run_on_a_busy_port(tmp_path: Path, scaffold_python: Path) -> None:
    """--port PORT in use: one line, exit 1 (another server answering /health there must not look like ours).
    Without --port, the default 3000 in use: the next free port, said so."""
    project = tmp_path / "busy"
    assert kmcp("init", "python", project).returncode == 0
    path = os.pathsep.join([str(scaffold_python.parent), "/usr/bin", "/bin"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start_run(project, port, path)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert err.strip().splitlines() == [
        f"kmcp: error: port {port} on 127.0.0.1 is in use: pick another with --port"], err
    assert "Serving" not in out

    with socket.socket() as default:
        default.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):  # else someone else holds 3000: the same case
            default.bind(("127.0.0.1", 3000))
            default.listen()
        env = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "kmcp", "run", "--project-dir", str(project),
                                 "--no-inspector"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            output = read_until_ready(proc)
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    moved = re.search(r"port 3000 on 127\.0\.0\.1 is in use: serving on port (\d+) instead", output)
    assert moved is not None, output + err
    assert f"Streamable HTTP: http://127.0.0.1:{moved.group(1)}/mcp" in output
    assert "Traceback" not in err and proc.returncode == 0


def test_run_errors(tmp_path: Path) -> None:
    missing = kmcp("run", "--project-dir", tmp_path)
    assert missing.returncode == 2 and "no kmcp.yaml" in missing.stderr
    (tmp_path / "kmcp.yaml").write_text("name: x\nframework: python\ncommand: no-such-binary-kmcp\n")
    absent = kmcp("run", "--project-dir", tmp_path, "--no-inspector")
    assert absent.returncode == 1 and "no-such-binary-kmcp not found on PATH" in absent.stderr
    assert "example:" in kmcp("run", "--help").stdout


