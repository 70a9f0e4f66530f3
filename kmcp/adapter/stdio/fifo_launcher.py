"""``--bridge DIR``: server processes start in the pod's mcp-server container, through serve.sh and FIFOs.

Implements the same :class:`~kmcp.adapter.stdio.launcher.Launcher` protocol as ``LocalLauncher``, so sessions, the
warm pool and every transport work unchanged. The wire protocol lives in :mod:`kmcp.fifo_bridge`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import LaunchError, ServerProcess
from kmcp.fifo_bridge import BridgeLost, BridgeProcess, FifoBridge


class _BridgedProcess:
    def __init__(self, process: BridgeProcess) -> None:
        self._process = process

    @property
    def send_stream(self) -> trio.abc.SendStream:
        return self._process.stdin

    @property
    def receive_stream(self) -> trio.abc.ReceiveStream:
        return self._process.stdout

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait(self) -> int:
        return await self._process.wait()


class FifoLauncher:
    """Asks serve.sh in the mcp-server container for one process per session."""

    def __init__(self, bridge: FifoBridge, kill_grace: float) -> None:
        self.bridge = bridge
        self.kill_grace = kill_grace

    @asynccontextmanager
    async def launch(self, session_id: str) -> AsyncIterator[ServerProcess]:
        try:
            process = await self.bridge.start_process()
        except BridgeLost as error:
            raise LaunchError(str(error)) from None
        try:
            yield _BridgedProcess(process)
        finally:
            with trio.CancelScope(shield=True):
                await self.bridge.stop_process(process, grace=self.kill_grace)


@asynccontextmanager
async def open_fifo_launcher(directory: str | Path, settings: AdapterSettings) -> AsyncIterator[FifoLauncher]:
    """Prepare DIR (serve.sh, control and events FIFOs) and keep listening to the script while serving."""
    async with trio.open_nursery() as nursery:
        bridge = FifoBridge(Path(directory))
        await nursery.start(bridge.run)
        try:
            yield FifoLauncher(bridge, settings.kill_grace)
        finally:
            nursery.cancel_scope.cancel()
