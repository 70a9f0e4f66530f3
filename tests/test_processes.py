"""kmcp.processes.stop_process on real processes: with ``group``, nothing of the group outlives the stop."""

from __future__ import annotations

import subprocess

import trio

from kmcp.processes import stop_process
from tests.adapter.rawhttp import eventually
from tests.procs import exists


async def test_a_group_member_that_ignores_sigterm_is_killed_although_the_leader_exited() -> None:
    # The leader (sh) exits on SIGTERM; its child ignores SIGTERM, as some npm and node children do.
    process = await trio.lowlevel.open_process(
        ["sh", "-c", "(trap '' TERM; exec sleep 60) & echo $!; wait"], stdout=subprocess.PIPE,
        start_new_session=True)
    assert process.stdout is not None
    with trio.fail_after(5):
        child = int((await process.stdout.receive_some(64)).split()[0])
    assert exists(child)
    with trio.fail_after(10):
        await stop_process(process, 0.5, group=True)
    assert process.returncode is not None

    async def gone() -> bool:  # killed, and reaped by init once its parent is gone
        return not exists(child)

    await eventually(gone)


async def test_without_group_only_the_child_is_signalled() -> None:
    process = await trio.lowlevel.open_process(["sleep", "60"])
    with trio.fail_after(10):
        await stop_process(process, 0.5)
    assert process.returncode == -15
