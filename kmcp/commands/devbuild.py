"""The first ``kmcp dev up``'s build of the control plane's binaries (~9 minutes of Go, once), as a child process:
``kmcp dev build``, in its own process group.

A thread could not be stopped: ``kmcp dev down`` (SIGTERM) would wait for the whole build, or leave it orphaned.
A process group is stopped with everything Go started. Its step lines (:data:`binaries.STEP_PREFIX`) become
progress lines with the elapsed time, repeated while a step lasts, so a detached start's log shows it is alive.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence

import trio

from kmcp.devcluster import binaries
from kmcp.errors import CommandFailed

PROGRESS_SECONDS = 20.0


async def _stop_group(process: trio.Process, grace: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with trio.move_on_after(grace):
            await process.wait()
        if process.returncode is not None:
            return


async def build_binaries(command: Sequence[str], env: dict[str, str], say: Callable[[str], None],
                         every: float = PROGRESS_SECONDS, what: str = "the control plane's binaries") -> None:
    """Run ``command`` (``kmcp dev build``) until it is done, saying each step and, while one lasts, its elapsed
    time. CommandFailed with its last lines when it fails; stopped with its whole process group when cancelled."""
    started = trio.current_time()
    step = "starting the build"
    tail: collections.deque[str] = collections.deque(maxlen=15)
    process = await trio.lowlevel.open_process(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, env=env, start_new_session=True)
    assert process.stdout is not None
    output = process.stdout
    read_all = trio.Event()

    async def read_steps() -> None:
        nonlocal step
        pending = b""
        async for chunk in output:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip()
                tail.append(line)
                if line.startswith(binaries.STEP_PREFIX):
                    step = line.removeprefix(binaries.STEP_PREFIX)
                    say(f"{step} [{trio.current_time() - started:.0f}s]")
        read_all.set()

    async def tick() -> None:
        while True:
            await trio.sleep(every)
            say(f"still {step} [{trio.current_time() - started:.0f}s]")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_steps)
            nursery.start_soon(tick)
            code = await process.wait()
            with trio.move_on_after(2):  # its last lines (a leftover grandchild may hold the pipe open)
                await read_all.wait()
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            with trio.CancelScope(shield=True):
                await _stop_group(process)
    if code != 0:
        last = tail[-1] if tail else ""
        if last.startswith("kmcp: error: "):  # the build's own one-line reason (no Go, say): the same one line
            raise CommandFailed(f"the local control plane did not start: {last.removeprefix('kmcp: error: ')}")
        raise CommandFailed(f"building {what} failed (exit code {code}):\n" + "\n".join(tail))
    say(f"built {what} in {trio.current_time() - started:.0f}s (cached in {binaries.default_cache_root()})")


def run_build(node: bool = False) -> int:
    """``kmcp dev build``: build what the local control plane needs (``node``: and what the real node needs, its
    binaries and the kmcp image's root filesystem), printing its steps; SIGTERM stops it cleanly (the temporary
    build directory is removed, go is killed by subprocess.run)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        chain = binaries.ensure_binaries(log=True)
        print(f"control plane binaries: {chain.directory}", flush=True)
        if node:
            from kmcp.devcluster.images import debian_rootfs_layer

            for node_chain in (binaries.ensure_node_binaries(log=True), binaries.ensure_dns_binaries(log=True)):
                print(f"node binaries: {node_chain.directory}", flush=True)
            print(f"image root filesystem: {debian_rootfs_layer(log=True)}", flush=True)
    except RuntimeError as error:  # ImageBuildError is one too
        raise CommandFailed(str(error)) from None
    return 0
