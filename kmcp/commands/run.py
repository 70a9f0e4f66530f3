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
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import trio

from kmcp import spec
from kmcp.commands.deploy import load_project
from kmcp.commands.ports import port_free
from kmcp.errors import BadInput, CommandFailed, plain_errors
from kmcp.httpprobe import http_status
from kmcp.processes import stop_process

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


def say(line: str) -> None:
    print(line, flush=True)


class HeldStderr:
    """The adapter's stderr, held back until the server has answered and passed through from then on: a start that
    fails shows the server's last lines once, under the error, instead of interleaved with it."""

    def __init__(self) -> None:
        self.lines: collections.deque[bytes] = collections.deque(maxlen=200)
        self.pending = b""  # a line begun, not ended yet
        self.passing = False
        self.finished = trio.Event()  # the adapter's stderr reached its end

    async def pump(self, stream: trio.abc.ReceiveStream) -> None:
        try:
            async for chunk in stream:
                if self.passing:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.flush()
                    continue
                *complete, self.pending = (self.pending + chunk).split(b"\n")
                self.lines.extend(line + b"\n" for line in complete)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.finished.set()

    def release(self) -> None:
        sys.stderr.buffer.write(b"".join(self.lines) + self.pending)
        sys.stderr.flush()
        self.lines.clear()
        self.pending = b""
        self.passing = True

    async def tail(self, count: int = 12) -> str:
        with trio.move_on_after(2):  # the adapter has been stopped: its last lines are on the way
            await self.finished.wait()
        return b"".join([*list(self.lines)[-count:], self.pending]).decode(errors="replace").rstrip()


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


@dataclass(frozen=True)
class _Plan:
    project: spec.ProjectFile
    project_dir: Path
    argv: list[str]  # the server
    port: int
    moved: str  # what to say when the default port was taken
    venv_hint: str
    request: RunRequest

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


async def _await_start(adapter: trio.Process, held: HeldStderr, plan: _Plan) -> str:
    """Wait for /health, then for tools/list through it (our adapter, bound before it answered anything); the
    check line. CommandFailed with the held stderr tail when either does not come."""
    from kmcp.commands.mcpcheck import check_mcp

    within = plan.request.startup_timeout
    deadline = trio.current_time() + within
    while await http_status(plan.port, "/health") != 200:
        if adapter.poll() is not None:
            raise CommandFailed(f"the adapter exited with code {adapter.returncode} before serving "
                                f"127.0.0.1:{plan.port}:\n{await held.tail()}")
        if trio.current_time() > deadline:
            raise CommandFailed(f"the adapter did not answer on 127.0.0.1:{plan.port} within {within:g}s")
        await trio.sleep(0.1)
    try:
        return (await check_mcp(plan.url)).summary()
    except CommandFailed as error:
        await stop_process(adapter, 5.0)
        raise CommandFailed(f"the MCP server did not start ({' '.join(plan.argv)}): {error}\n"
                            f"its stderr, through the adapter (last lines):\n{await held.tail()}{plan.venv_hint}"
                            ) from None


async def _stop_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for _ in signals:
        say("stopping")
        scope.cancel()
        return


async def _serve(plan: _Plan) -> int:
    """The adapter (and the Inspector) until Ctrl-C, SIGTERM or the adapter's exit."""
    adapter_argv = [*kmcp_command(), "adapter", "--listen", f"127.0.0.1:{plan.port}", "--warm-pool", "1", "--",
                    *plan.argv]
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        adapter = await trio.lowlevel.open_process(adapter_argv, cwd=plan.project_dir, env=kmcp_env(),
                                                   stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert adapter.stderr is not None
        held = HeldStderr()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(held.pump, adapter.stderr)
                nursery.start_soon(_stop_on_signal, signals, nursery.cancel_scope)
                check = await _await_start(adapter, held, plan)
                held.release()
                _announce(plan, check)
                if plan.request.inspector:
                    from kmcp.commands.inspector import run_inspector

                    nursery.start_soon(run_inspector, plan.url, say)
                say("Ctrl-C to stop.")
                code = await adapter.wait()
                raise CommandFailed(f"the adapter exited with code {code}")
        finally:
            await stop_process(adapter, 5.0)
    return 0  # only a signal ends the nursery without an error


def _announce(plan: _Plan, check: str) -> None:
    if plan.moved:
        say(plan.moved)
    say(f"Serving {plan.project.name} ({' '.join(plan.argv)}) from {plan.project_dir}")
    say(check)
    say(f"Streamable HTTP: {plan.url}")
    say(f"SSE:             http://127.0.0.1:{plan.port}/sse")
    print(inspector_text(plan.url, plan.argv), end="", flush=True)


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
    with plain_errors():
        return trio.run(_serve, _Plan(project, project_dir, argv, port, moved, venv_hint, request))
