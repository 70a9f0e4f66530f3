"""The two ends of a stdio server's pipes, written once for every user (sessions, the shared server, the pool).

Writing: hand the bytes to the pipe at once when nobody is mid-write (one message almost always fits the pipe
buffer), so a request costs one ``os.write`` and no scheduler round trip; a partial write, or a writer already
waiting, falls back to a lock and the stream's ``send_all``, which keeps messages whole and in order.

Reading: one readiness wait and one ``read`` per chunk on a pipe, lines split without copying the buffered part
again, and a line longer than ``limit`` dropped whole (reported through ``on_oversized``), so a server printing
without newlines cannot grow the adapter's memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio


class StdinWriter:
    def __init__(self, stream: trio.abc.SendStream) -> None:
        self._stream = stream
        self._fd = stream.fileno() if isinstance(stream, trio.lowlevel.FdStream) else -1
        self._lock = trio.Lock()

    async def write(self, data: bytes) -> None:
        """Write ``data`` whole; raises what the stream raises (OSError, trio.BrokenResourceError, …)."""
        if self._fd >= 0 and not self._lock.locked():
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                written = 0
            if written == len(data):
                return
            data = data[written:]
        async with self._lock:
            await self._stream.send_all(data)


async def read_lines(stream: trio.abc.ReceiveStream, limit: int, on_line: Callable[[bytes], None], *,
                     on_chunk: Callable[[], None] | None = None,
                     on_oversized: Callable[[], None] | None = None) -> None:
    """Call ``on_line`` for every non-empty line the stream carries (without its newline) until EOF or a broken
    stream; ``on_chunk`` after each chunk's lines."""
    fd = stream.fileno() if isinstance(stream, trio.lowlevel.FdStream) else -1
    buffer = bytearray()
    skipping = False
    chunk: bytes | bytearray
    while True:
        try:
            if fd >= 0:
                await trio.lowlevel.wait_readable(fd)
                chunk = os.read(fd, 1 << 16)
            else:
                chunk = await stream.receive_some(1 << 16)
        except (BlockingIOError, InterruptedError):
            continue
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        if not chunk:
            return
        start = 0
        if buffer:
            scan = len(buffer)  # the buffered part holds no newline: search only the new bytes
            buffer += chunk
            data: bytes | bytearray = buffer
        else:
            scan = 0
            data = chunk
        while (newline := data.find(b"\n", scan)) >= 0:
            if skipping:
                skipping = False
            elif newline - start > limit:
                if on_oversized is not None:
                    on_oversized()
            elif newline > start:
                line = bytes(data[start:newline])
                if not line.isspace():  # blank lines between messages are allowed and carry nothing
                    on_line(line)
            start = scan = newline + 1
        rest = data[start:]
        if len(rest) > limit:
            if on_oversized is not None:
                on_oversized()
            skipping = True
            rest = b""
        buffer = bytearray(rest)
        if on_chunk is not None:
            on_chunk()
