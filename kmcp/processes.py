"""Ending a child process, written once: ask, wait, insist, and always reap.

An MCP stdio server is asked by closing its stdin (the protocol's shutdown); any process then by SIGTERM and, after
``grace`` seconds more, SIGKILL. ``group``: signal the child's whole process group (children started with
``start_new_session=True``, whose own children must go too). Shielded, so a cancelled caller still reaps.
"""

from __future__ import annotations

import os
import signal
from contextlib import suppress

import trio


async def stop_process(process: trio.Process, grace: float, *, group: bool = False,
                       close_stdin: bool = False) -> None:
    with trio.CancelScope(shield=True):
        if close_stdin and process.stdin is not None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await process.stdin.aclose()
            with trio.move_on_after(grace):
                await process.wait()
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if process.returncode is not None:
                return
            _signal(process, signum, group)
            if signum == signal.SIGTERM:
                with trio.move_on_after(grace):
                    await process.wait()
        await process.wait()


def _signal(process: trio.Process, signum: int, group: bool) -> None:
    with suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
