"""A bounded one-reader queue that a producer fills without blocking: what a listener, or a request waiting on a
pooled process, receives.

A memory channel's generality (clones, many receivers, blocking sends) is not needed here, and setting one up
was a visible share of every request. ``receive`` waits only when nothing is queued, and then parks the one
reader task directly (no event, no lot).

Bounded by ``limit`` bytes (``size`` of each item) and ``most`` items: ``send_nowait`` raises WouldBlock past
either, except into an empty queue, so one item larger than the bound still reaches a reader that reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Inbox(Generic[T]):
    __slots__ = ("_bytes", "_closed", "_items", "_limit", "_most", "_size", "_waiter", "on_close")

    def __init__(self, size: Callable[[T], int], limit: int = 4 * 1024 * 1024, most: int = 4096) -> None:
        self._items: deque[T] = deque()
        self._size = size
        self._bytes = 0
        self._limit = limit
        self._most = most
        self._closed = False
        self._waiter: trio.lowlevel.Task | None = None
        self.on_close: Callable[[], None] | None = None  # called once when the producer closes the inbox

    @property
    def closed(self) -> bool:
        return self._closed

    def send_nowait(self, item: T) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the listener is gone")
        if self._items and (self._bytes + self._size(item) > self._limit or len(self._items) >= self._most):
            raise trio.WouldBlock()
        self.replay(item)

    def replay(self, item: T) -> None:
        """Queue ``item`` whatever the bound (what a new listener replays is bounded where it was kept)."""
        self._items.append(item)
        self._bytes += self._size(item)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()

    def _wake(self) -> None:
        if self._waiter is not None:
            trio.lowlevel.reschedule(self._waiter)
            self._waiter = None

    def receive_nowait(self) -> T:
        if self._items:
            item = self._items.popleft()
            self._bytes -= self._size(item)
            return item
        if self._closed:
            raise trio.EndOfChannel()
        raise trio.WouldBlock()

    async def receive(self) -> T:
        if not self._items and not self._closed:
            if self._waiter is not None:
                raise trio.BusyResourceError("another task is already receiving")
            self._waiter = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        return self.receive_nowait()

    def __aiter__(self) -> Inbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
