"""``kmcp run``: the project's stdio server behind ``kmcp adapter`` on 127.0.0.1, plus the MCP Inspector.

The command comes from kmcp.yaml (``command``/``args``) or the framework's local default: ``python src/main.py``
run by the project's ``.venv`` when it has one (else ``uv run python src/main.py`` when uv is on PATH and the project
has a pyproject.toml), ``go run .`` for Go (the kmcp.yaml command of a Go project names the binary inside the image,
which does not exist locally).

The start counts only once the server has answered tools/list through the adapter (``/health`` is the adapter's
alone): a server that cannot start ends the command with its stderr tail.

The Inspector (:mod:`kmcp.commands.inspector`: pinned, 127.0.0.1 only, its URL opening on this server) starts in the
background once the server answers; where it cannot, one line says why and the server runs on.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from kmcp import spec
from kmcp.commands.deploy import load_project
from kmcp.commands.inspector import Inspector
from kmcp.commands.ports import port_free
from kmcp.errors import BadInput, CommandFailed

GO_IMAGE_BINARY = "/app/server"


def _zipapp() -> str | None:
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and Path(argv0).is_file() and zipfile.is_zipfile(argv0):
        return str(Path(argv0).resolve())
    return None


def kmcp_command() -> list[str]:
    """argv that starts this same kmcp: the zipapp when running from one, else ``python -m kmcp``."""
    zipapp = _zipapp()
    return [sys.executable, zipapp] if zipapp else [sys.executable, "-m", "kmcp"]


def kmcp_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``kmcp_command()``: a source checkout stays importable for ``python -m kmcp``."""
    import kmcp

    env = {**os.environ, **(extra or {})}
    if _zipapp() is None:
        source_root = str(Path(kmcp.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    return env


def server_command(project_dir: Path, project: spec.ProjectFile) -> list[str]:
    if project.framework == "go" and project.command in ("", GO_IMAGE_BINARY):
        argv = ["go", "run", "."]
    elif project.command:
        argv = [project.command, *project.args]
    else:
        argv = ["python", "src/main.py"]
    if project.framework == "python" and argv[0] in ("python", "python3"):
        venv_python = project_dir / ".venv" / "bin" / "python"
        if venv_python.exists():  # the scaffold README's `python -m venv .venv && .venv/bin/pip install -e .`
            argv = [str(venv_python), *argv[1:]]
        elif shutil.which("uv") and (project_dir / "pyproject.toml").exists():
            argv = ["uv", "run", *argv]
        elif not shutil.which(argv[0]) and shutil.which("python3"):
            argv = ["python3", *argv[1:]]
    if shutil.which(argv[0], path=os.environ.get("PATH")) is None and not (project_dir / argv[0]).is_file():
        raise CommandFailed(f"{argv[0]} not found on PATH: install it or set `command` in kmcp.yaml")
    return argv


@dataclass(frozen=True)
class RunRequest:
    project_dir: Path
    port: int | None = None  # None: the default port, or the next free one
    inspector: bool = True
    startup_timeout: float = 30.0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_OUT = threading.Lock()


def say(line: str) -> None:
    """One line on stdout in one write: the Inspector's thread says things too, never inside another line."""
    with _OUT:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def mcp_check_line(url: str) -> str:
    """One line saying the server answers tools/list, and on which revision (2026-07-28 first, as SDK clients try);
    CommandFailed when it does not."""
    import trio

    from kmcp.commands.mcpcheck import check_mcp

    return trio.run(check_mcp, url).summary()


class HeldStderr:
    """The adapter's stderr, held back until the server has answered and passed through from then on: a start that
    fails shows the server's last lines once, under the error, instead of interleaved with it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: collections.deque[bytes] = collections.deque(maxlen=200)
        self.passing = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            with self.lock:
                if not self.passing:
                    self.lines.append(line)
                    continue
            sys.stderr.buffer.write(line)
            sys.stderr.flush()

    def release(self) -> None:
        with self.lock:
            sys.stderr.buffer.write(b"".join(self.lines))
            sys.stderr.flush()
            self.passing = True

    def tail(self, count: int = 12) -> str:
        self.thread.join(timeout=2)  # the adapter has been stopped: its last lines are in
        with self.lock:
            return b"".join(list(self.lines)[-count:]).decode(errors="replace").rstrip()


def inspector_text(url: str, argv: list[str]) -> str:
    return (f"MCP Inspector settings:\n"
            f"  Transport Type: Streamable HTTP\n"
            f"  URL: {url}\n"
            f"  (or Transport Type: STDIO, Command: {argv[0]}, Arguments: {' '.join(argv[1:])})\n")


def choose_port(requested: int | None) -> tuple[int, str]:
    """(port, what to tell the user): a --port in use is an error; the default in use moves to the next free one."""
    if requested is not None:
        if not port_free(requested):
            raise CommandFailed(f"port {requested} on 127.0.0.1 is in use: pick another with --port")
        return requested, ""
    for port in range(spec.DEFAULT_PORT, spec.DEFAULT_PORT + 100):
        if port_free(port):
            moved = f"port {spec.DEFAULT_PORT} on 127.0.0.1 is in use: serving on port {port} instead"
            return port, "" if port == spec.DEFAULT_PORT else moved
    raise CommandFailed(f"ports {spec.DEFAULT_PORT}-{spec.DEFAULT_PORT + 99} on 127.0.0.1 are all in use: "
                        "pick one with --port")


def _await_start(adapter: subprocess.Popen[bytes], held: HeldStderr, port: int, within: float, argv: list[str],
                 venv_hint: str) -> str:
    """Wait for /health, then for tools/list through it (our adapter, bound before it answered anything); the
    check line. CommandFailed with the held stderr tail when either does not come."""
    deadline = time.monotonic() + within
    while not _healthy(port):
        if adapter.poll() is not None:
            raise CommandFailed(f"the adapter exited with code {adapter.returncode} before serving "
                                f"127.0.0.1:{port}:\n{held.tail()}")
        if time.monotonic() > deadline:
            raise CommandFailed(f"the adapter did not answer on 127.0.0.1:{port} within {within:g}s")
        time.sleep(0.1)
    try:
        return mcp_check_line(f"http://127.0.0.1:{port}/mcp")
    except CommandFailed as error:
        _stop(adapter)
        raise CommandFailed(f"the MCP server did not start ({' '.join(argv)}): {error}\n"
                            f"its stderr, through the adapter (last lines):\n{held.tail()}{venv_hint}") from None


def run_project(request: RunRequest) -> int:
    project_dir = request.project_dir
    if not (project_dir / "kmcp.yaml").is_file():
        raise BadInput(f"{project_dir}: no kmcp.yaml (create a project with `kmcp init python {project_dir}`)")
    project = load_project(project_dir / "kmcp.yaml")
    argv = server_command(project_dir, project)
    port, moved = choose_port(request.port)
    venv_hint = ""
    if project.framework == "python" and not (project_dir / ".venv").exists():
        venv_hint = "\nno .venv in the project: python -m venv .venv && .venv/bin/pip install -e ."
    adapter_argv = [*kmcp_command(), "adapter", "--listen", f"127.0.0.1:{port}", "--warm-pool", "1", "--", *argv]
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    adapter = subprocess.Popen(adapter_argv, cwd=project_dir, env=kmcp_env(), stdin=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    assert adapter.stderr is not None
    held = HeldStderr(adapter.stderr)
    inspector: Inspector | None = None
    try:
        check = _await_start(adapter, held, port, request.startup_timeout, argv, venv_hint)
        held.release()
        url = f"http://127.0.0.1:{port}/mcp"
        if moved:
            print(moved)
        print(f"Serving {project.name} ({' '.join(argv)}) from {project_dir}")
        print(check)
        print(f"Streamable HTTP: {url}")
        print(f"SSE:             http://127.0.0.1:{port}/sse")
        print(inspector_text(url, argv), end="")
        if request.inspector:
            inspector = Inspector(url, say=say)
            inspector.start()
        say("Ctrl-C to stop.")
        code = adapter.wait()
        raise CommandFailed(f"the adapter exited with code {code}")
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        if inspector is not None:
            inspector.stop()
        _stop(adapter)
        signal.signal(signal.SIGTERM, previous)
