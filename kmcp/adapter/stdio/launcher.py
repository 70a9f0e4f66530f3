"""How a session gets its server process. The session and transports only see :class:`ServerProcess`.

``LocalLauncher`` spawns ``cmd args`` as a child of the adapter. A ``FifoLauncher`` (starting the process in the
pod's mcp-server container through ``/kmcp``) implements the same :class:`Launcher` protocol.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import trio

from kmcp.processes import stop_process


class ServerProcess(Protocol):
    """A running stdio MCP server: bytes in, bytes out, and a way to learn it has exited."""

    @property
    def send_stream(self) -> trio.abc.SendStream:
        """The server's stdin."""
        ...

    @property
    def receive_stream(self) -> trio.abc.ReceiveStream:
        """The server's stdout."""
        ...

    async def wait(self) -> int:
        """Wait for the process to exit; its exit code."""
        ...


class Launcher(Protocol):
    """Starts one server process per session. Leaving the context ends the process and reaps it, always."""

    def launch(self, session_id: str) -> AbstractAsyncContextManager[ServerProcess]: ...


class LaunchError(Exception):
    """The server process could not be started."""


class _LocalProcess:
    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = process.stdout

    @property
    def send_stream(self) -> trio.abc.SendStream:
        return self._stdin

    @property
    def receive_stream(self) -> trio.abc.ReceiveStream:
        return self._stdout

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait(self) -> int:
        return await self._process.wait()


async def _forward_stderr(stream: trio.abc.ReceiveStream, prefix: bytes) -> None:
    """Copy the child's stderr to ours line by line, each line prefixed with the session id."""
    out = sys.stderr.buffer
    pending = b""
    async for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if lines:
            out.write(b"".join(prefix + line + b"\n" for line in lines))
            out.flush()
        if len(pending) > 65536:
            out.write(prefix + pending + b"\n")
            out.flush()
            pending = b""
    if pending:
        out.write(prefix + pending + b"\n")
        out.flush()


async def end_process(process: trio.Process, grace: float) -> None:
    """The MCP stdio shutdown: close stdin, wait; SIGTERM, wait; SIGKILL. Always reaps the child."""
    await stop_process(process, grace, close_stdin=True)


class LocalLauncher:
    """Spawns ``command`` (argv) as a child process for each session."""

    def __init__(self, command: Sequence[str], *, kill_grace: float = 2.0, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
        if not command:
            raise ValueError("LocalLauncher needs a command")
        self.command = list(command)
        self.kill_grace = kill_grace
        self.env = env
        self.cwd = cwd

    @asynccontextmanager
    async def launch(self, session_id: str) -> AsyncIterator[ServerProcess]:
        try:
            process = await trio.lowlevel.open_process(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )
        except OSError as error:
            raise LaunchError(f"cannot start {self.command[0]}: {error.strerror or error}") from None
        try:
            async with trio.open_nursery() as nursery:
                assert process.stderr is not None
                nursery.start_soon(_forward_stderr, process.stderr, f"[{session_id[:8]}] ".encode())
                try:
                    yield _LocalProcess(process)
                finally:
                    await end_process(process, self.kill_grace)
                    # A grandchild may still hold stderr open: give the forwarder a moment, then stop it.
                    nursery.cancel_scope.deadline = trio.current_time() + 0.5
        finally:
            if process.returncode is None:  # only if the nursery itself failed
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


__all__ = ["LaunchError", "Launcher", "LocalLauncher", "ServerProcess", "describe_exit", "end_process"]
