"""Events about MCPServers, recorded without slowing reconciles and without flooding the apiserver.

Like client-go's events.k8s.io recorder: ``record`` never waits (a bounded buffer; when it is full the Event is
dropped and counted, since an Event is advice and a reconcile must not stall on it), and sender tasks write them:
a few, sharded by the object the Event is about, so one object's Events stay in order and a mass creation's burst
(one Event per new MCPServer) drains in parallel.
A repeat of an Event seen in the last few minutes (same object, type, reason, action and note) is not a new object:
the first repeat patches ``series`` on the existing Event at once, later ones are counted and patched at most once per
``series_interval``. A failing MCPServer retried with back-off therefore costs one Event and a patch now and then,
not one Event per attempt.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from kmcp import kube, spec

Obj = dict[str, Any]
REPORTING_CONTROLLER = "kmcp"
log = logging.getLogger("kmcp.controller.events")


@dataclass
class _Series:
    name: str
    namespace: str
    count: int  # occurrences seen
    written: int  # occurrences the apiserver knows of
    last_seen: float  # monotonic
    last_written: float  # monotonic
    last_observed: str  # MicroTime of the latest occurrence


EventKey = tuple[str, str, str, str, str, str]


class EventRecorder:
    def __init__(self, client: kube.Kube, identity: str, *, buffer: int = 4096, senders: int = 4,
                 series_interval: float = 30.0, similar_window: float = 360.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.identity = identity[:128]
        self.series_interval = series_interval
        self.similar_window = similar_window
        self.clock = clock
        self.dropped = 0
        self._shards = [trio.open_memory_channel[Obj](max(1, buffer // senders)) for _ in range(senders)]
        self._series: OrderedDict[EventKey, _Series] = OrderedDict()

    def record(self, obj: Obj, type_: str, reason: str, note: str, action: str = "Reconcile") -> None:
        """Queue an events.k8s.io/v1 Event about ``obj`` (listed by involvedObject.name on core/v1 too)."""
        meta = obj["metadata"]
        event: Obj = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta.get("namespace")},
            "eventTime": kube.micro_time(),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.identity,
            "action": action,
            "reason": reason[:128],
            "note": note[:1024],
            "type": type_,
            "regarding": {
                "apiVersion": obj.get("apiVersion", spec.API_VERSION),
                "kind": obj.get("kind", spec.KIND),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
        }
        send, _ = self._shards[hash(meta.get("uid") or meta["name"]) % len(self._shards)]
        try:
            send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("event buffer full, dropping events", extra={"kv": {"dropped": self.dropped}})

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write queued Events, and flush pending series counts every ``series_interval``, until cancelled."""
        async with trio.open_nursery() as nursery:
            for _, receive in self._shards:
                nursery.start_soon(self._send_from, receive)
            task_status.started()
            while True:
                await trio.sleep(self.series_interval)
                await self.flush()

    async def _send_from(self, receive: trio.MemoryReceiveChannel[Obj]) -> None:
        async for event in receive:
            await self._write(event)

    async def drain(self) -> None:
        """Write every Event queued so far (the senders' loop body, callable directly, e.g. in tests)."""
        for _, receive in self._shards:
            while True:
                try:
                    event = receive.receive_nowait()
                except trio.WouldBlock:
                    break
                await self._write(event)

    @staticmethod
    def _key(event: Obj) -> EventKey:
        regarding = event["regarding"]
        return (str(regarding.get("namespace")), str(regarding.get("uid") or regarding.get("name")), event["type"],
                event["reason"], event["action"], event["note"])

    async def _write(self, event: Obj) -> None:
        now = self.clock()
        self._forget_older_than(now - self.similar_window)
        key = self._key(event)
        series = self._series.get(key)
        if series is None:
            created = await self._create(event)
            if created is not None:
                self._series[key] = _Series(str(created["metadata"]["name"]), str(event["metadata"]["namespace"]),
                                            1, 1, now, now, str(event["eventTime"]))
            return
        series.count += 1
        series.last_seen = now
        series.last_observed = str(event["eventTime"])
        self._series.move_to_end(key)
        if series.written == 1 or now - series.last_written >= self.series_interval:
            await self._patch_series(key, series, event)

    async def flush(self) -> None:
        """Patch every series whose count the apiserver has not seen and whose interval has passed."""
        now = self.clock()
        for key, series in list(self._series.items()):
            if series.count > series.written and now - series.last_written >= self.series_interval:
                await self._patch_series(key, series, None)

    async def _patch_series(self, key: EventKey, series: _Series, event: Obj | None) -> None:
        patch = {"series": {"count": series.count, "lastObservedTime": series.last_observed}}
        try:
            await self.client.patch(kube.EVENTS, series.name, series.namespace, patch)
        except kube.NotFound:
            # The Event expired (the apiserver's event TTL) or was deleted: the next occurrence starts a new one.
            self._series.pop(key, None)
            if event is not None:
                await self._write(event)
            return
        except kube.ApiError as exc:
            self._failed(event, exc)
            return
        series.written = series.count
        series.last_written = self.clock()

    async def _create(self, event: Obj) -> Obj | None:
        try:
            created: Obj = await self.client.create_event(str(event["metadata"]["namespace"]), event)
            return created
        except kube.ApiError as exc:
            self._failed(event, exc)
            return None

    @staticmethod
    def _failed(event: Obj | None, exc: Exception) -> None:
        if isinstance(exc, kube.ApiError) and kube.namespace_terminating(exc):
            return
        log.warning("could not record event", extra={"kv": {"reason": event["reason"] if event else "",
                                                             "error": str(exc)}})

    def _forget_older_than(self, horizon: float) -> None:
        while self._series:
            key, series = next(iter(self._series.items()))
            if series.last_seen >= horizon:
                return
            del self._series[key]
