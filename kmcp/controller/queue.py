"""A work queue like client-go's: keys coalesce, one key is never processed by two workers at once, failures come
back after a per-key exponential back-off, and a bounded number of workers drain it."""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, *, backoff_base: float = 0.5, backoff_max: float = 300.0) -> None:
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing: requeued by done()
        self._failures: dict[K, int] = {}
        self._timers: list[tuple[float, int, K]] = []
        self._timer_seq = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._timer_lot = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def processing(self, key: K) -> bool:
        """Whether a worker holds ``key`` now."""
        return key in self._processing

    def add(self, key: K) -> None:
        """Queue ``key`` unless it already waits; if a worker holds it, it runs again after that worker is done."""
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        self._lot.unpark()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        self._timer_seq += 1
        heapq.heappush(self._timers, (trio.current_time() + delay, self._timer_seq, key))
        self._timer_lot.unpark_all()

    def backoff(self, key: K) -> float:
        """Delay before retrying ``key`` after its n-th consecutive failure: base * 2**(n-1), capped."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        return min(self.backoff_max, self.backoff_base * math.pow(2, min(failures - 1, 60)))

    def retry(self, key: K) -> float:
        delay = self.backoff(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts from the base delay again."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        while not self._queue:
            await self._lot.park()
        key = self._queue.popleft()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def run_timers(self) -> None:
        """Moves delayed keys into the queue when due; run it in the nursery that owns the queue."""
        while True:
            now = trio.current_time()
            while self._timers and self._timers[0][0] <= now:
                _, _, key = heapq.heappop(self._timers)
                self.add(key)
            if self._timers:
                with trio.move_on_at(self._timers[0][0]):
                    await self._timer_lot.park()
            else:
                await self._timer_lot.park()

    async def run_workers(self, worker: Callable[[K], Awaitable[None]], concurrency: int,
                          *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """``concurrency`` workers, each taking a key, awaiting ``worker(key)`` and marking it done."""
        async def loop() -> None:
            while True:
                key = await self.get()
                try:
                    await worker(key)
                finally:
                    self.done(key)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.run_timers)
            for _ in range(max(1, concurrency)):
                nursery.start_soon(loop)
            task_status.started()
