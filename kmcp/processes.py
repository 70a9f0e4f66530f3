"""Ending a child process, written once: ask, wait, insist, and always reap.

An MCP stdio server is asked by closing its stdin (the protocol's shutdown); any process then by SIGTERM and, after
``grace`` seconds more, SIGKILL. ``group``: signal the child's whole process group (children started with
``start_new_session=True``, whose own children must go too): the grace then lasts until the group is empty, and
whatever of it is left gets the SIGKILL, even when the child itself has exited. Shielded, so a cancelled caller
still reaps.
"""

from __future__ import annotations

import os
import signal
from contextlib import suppress

import trio

_GROUP_POLL = 0.05  # no event says a process group is empty: look this often


async def stop_process(process: trio.Process, grace: float, *, group: bool = False,
                       close_stdin: bool = False) -> None:
    with trio.CancelScope(shield=True):
        if close_stdin and process.stdin is not None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await process.stdin.aclose()
            with trio.move_on_after(grace):
                await process.wait()
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if not _running(process, group):
                break
            _signal(process, signum, group)
            if signum == signal.SIGTERM:
                await _wait_ended(process, group, grace)
        await process.wait()


def _running(process: trio.Process, group: bool) -> bool:
    return process.poll() is None or (group and _group_alive(process.pid))


async def _wait_ended(process: trio.Process, group: bool, grace: float) -> None:
    if not group:
        with trio.move_on_after(grace):
            await process.wait()
        return
    deadline = trio.current_time() + grace
    while trio.current_time() < deadline:
        if not _running(process, group):
            break
        await trio.sleep(_GROUP_POLL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal(process: trio.Process, signum: int, group: bool) -> None:
    with suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
