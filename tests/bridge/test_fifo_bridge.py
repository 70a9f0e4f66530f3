"""serve.sh + FifoBridge: the adapter starts server processes in another 'container' over FIFOs.

The mcp-server container is stood in for by a child process running the script with a real shell (dash, bash,
busybox ash), in a temp dir standing in for /kmcp.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from kmcp.fifo_bridge import BridgeLost, FifoBridge
from tests.procs import exists

pytestmark = pytest.mark.slow

ECHO = """
import sys
for line in sys.stdin:
    if line.strip() == "exit":
        sys.exit(7)
    sys.stdout.write("echo:" + line)
    sys.stdout.flush()
"""

SHELLS = {
    "dash": ["dash"],
    "bash": ["bash"],
    "busybox": ["busybox", "sh"],
}


def shell_command(name: str) -> list[str]:
    cmd = SHELLS[name]
    if shutil.which(cmd[0]) is None:
        pytest.fail(f"{cmd[0]} is not installed (scripts/setup installs it)")
    return cmd


@asynccontextmanager
async def pod(tmp_path: Path, shell: list[str]) -> AsyncIterator[tuple[FifoBridge, trio.Process]]:
    """An adapter-side bridge plus the 'mcp-server container' running serve.sh."""
    server = tmp_path / "echo.py"
    server.write_text(ECHO)
    async with trio.open_nursery() as nursery:
        bridge = FifoBridge(tmp_path / "kmcp", start_timeout=10)
        await nursery.start(bridge.run)
        container = await start_container(shell, bridge, server)
        try:
            yield bridge, container
        finally:
            await crash(container)
            nursery.cancel_scope.cancel()


async def start_container(shell: list[str], bridge: FifoBridge, server: Path) -> trio.Process:
    # Its own process group, so a 'container crash' can take every process in it, as a runtime would.
    return await trio.lowlevel.open_process([*shell, str(bridge.paths.script), sys.executable, str(server)],
                                            start_new_session=True)


async def crash(container: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(container.pid, signal.SIGKILL)
    await container.wait()


async def roundtrip(process: object, text: str) -> str:
    from kmcp.fifo_bridge import BridgeProcess

    assert isinstance(process, BridgeProcess)
    await process.stdin.send_all(text.encode() + b"\n")
    data = b""
    with trio.fail_after(10):
        while not data.endswith(b"\n"):
            data += await process.stdout.receive_some(4096)
    return data.decode().strip()


@pytest.mark.parametrize("shell_name", sorted(SHELLS))
async def test_processes_are_isolated_and_exits_are_reported(tmp_path: Path, shell_name: str) -> None:
    async with pod(tmp_path, shell_command(shell_name)) as (bridge, _container):
        first = await bridge.start_process()
        second = await bridge.start_process()
        assert first.pid != second.pid and first.pid > 0
        assert await roundtrip(first, "one") == "echo:one"
        assert await roundtrip(second, "two") == "echo:two"
        await first.stdin.send_all(b"exit\n")
        with trio.fail_after(10):
            assert await first.wait() == 7
        assert await roundtrip(second, "still here") == "echo:still here"
        await bridge.stop_process(second)
        assert second.exit_code == 0  # closing stdin ends a well-behaved server
        assert not list((tmp_path / "kmcp" / "s").iterdir())  # FIFOs and pid files cleaned up


@pytest.mark.parametrize("shell_name", sorted(SHELLS))
async def test_stubborn_process_is_terminated(tmp_path: Path, shell_name: str) -> None:
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    async with trio.open_nursery() as nursery:
        bridge = FifoBridge(tmp_path / "kmcp", start_timeout=10)
        await nursery.start(bridge.run)
        container = await trio.lowlevel.open_process(
            [*shell_command(shell_name), str(bridge.paths.script), sys.executable, str(stubborn)])
        try:
            process = await bridge.start_process()
            with trio.fail_after(15):
                await bridge.stop_process(process, grace=0.5)
            assert process.exit_code == 128 + signal.SIGTERM
            # Right after the kill and reap lines: the moment a shell blocking in `read` could miss a SIGTERM.
            container.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                assert await container.wait() == 143
        finally:
            if container.returncode is None:  # a failed run must not leave its 'container' behind
                container.kill()
                await container.wait()
        nursery.cancel_scope.cancel()


async def test_restarted_container_fails_old_processes_and_serves_new_ones(tmp_path: Path) -> None:
    async with pod(tmp_path, shell_command("dash")) as (bridge, container):
        old = await bridge.start_process()
        assert await roundtrip(old, "hi") == "echo:hi"
        await crash(container)  # the mcp-server container dies with every process in it
        replacement = await start_container(SHELLS["dash"], bridge, tmp_path / "echo.py")
        try:
            with trio.fail_after(10):
                await old.wait()
            assert old.exit_code == -1  # lost with the old container, reported when the new one says ready
            fresh = await bridge.start_process()
            assert await roundtrip(fresh, "again") == "echo:again"
        finally:
            await crash(replacement)


def pid_namespace_shell() -> list[str]:
    """dash as PID 1 of a fresh PID namespace, as the mcp-server container's script runs under a kubelet."""
    for prefix in (["unshare", "--pid", "--fork", "--kill-child"],
                   ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child"]):
        probe = subprocess.run([*prefix, "dash", "-c", 'echo $$'], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == "1":
            return [*prefix, "dash"]
    pytest.skip("cannot create a PID namespace here (needs root or unprivileged user namespaces)")


async def test_restart_is_noticed_when_the_script_is_pid_1_every_time(tmp_path: Path) -> None:
    # In a pod the script is PID 1 after every container restart: its PID cannot tell generations apart.
    shell = pid_namespace_shell()
    async with pod(tmp_path, shell) as (bridge, container):
        old = await bridge.start_process()
        assert await roundtrip(old, "hi") == "echo:hi"
        await crash(container)
        replacement = await start_container(shell, bridge, tmp_path / "echo.py")
        try:
            with trio.fail_after(10):
                await old.wait()
            assert old.exit_code == -1
            fresh = await bridge.start_process()
            assert await roundtrip(fresh, "again") == "echo:again"
        finally:
            await crash(replacement)


async def test_no_container_means_a_clear_error(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        bridge = FifoBridge(tmp_path / "kmcp", start_timeout=0.2)
        await nursery.start(bridge.run)
        with pytest.raises(BridgeLost, match="has not started"):
            await bridge.start_process()
        nursery.cancel_scope.cancel()


async def test_container_terminates_its_servers_on_sigterm(tmp_path: Path) -> None:
    async with pod(tmp_path, shell_command("busybox")) as (bridge, container):
        process = await bridge.start_process()
        assert exists(process.pid)
        container.send_signal(signal.SIGTERM)  # what the kubelet sends at pod deletion
        with trio.fail_after(10):
            assert await container.wait() == 143
        with trio.fail_after(10):
            assert await process.wait() == 128 + signal.SIGTERM
        assert not exists(process.pid)
