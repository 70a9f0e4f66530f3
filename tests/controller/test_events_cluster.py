"""The Event recorder on the real apiserver: repeats become one Event with a series, a full buffer drops rather
than blocks, and an Event deleted under the recorder is started again."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from kmcp import kube as k8s
from kmcp.controller.events import EventRecorder
from tests.controller.conftest import events_about, mcpserver
from tests.kubehelpers import Kube

pytestmark = pytest.mark.cluster


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _server(client: k8s.Kube, namespace: str, name: str) -> dict[str, object]:
    created: dict[str, object] = await client.create(k8s.MCPSERVERS, mcpserver(name, namespace), namespace)
    return created


async def test_repeats_become_one_event_with_a_series(kube: Kube, kubeconfig: Path, installed: object,
                                                      namespace: str) -> None:
    clock = Clock()
    async with k8s.Kube(await trio.to_thread.run_sync(k8s.load_config, str(kubeconfig))) as client:
        obj = await _server(client, namespace, "flaky")
        recorder = EventRecorder(client, "test", series_interval=30.0, clock=clock)
        for _ in range(5):  # five failed attempts within the interval
            recorder.record(obj, "Warning", "ApplyFailed", "could not apply Service flaky: boom")
        recorder.record(obj, "Normal", "Programmed", "Programmed=True: applied")
        await recorder.drain()
        events = await trio.to_thread.run_sync(events_about, kube, "flaky", namespace)
        failed = [e for e in events if e["reason"] == "ApplyFailed"]
        assert len(failed) == 1, failed
        # The first repeat is written at once; the other three wait for the interval.
        assert failed[0]["series"]["count"] == 2
        assert [e["reason"] for e in events if e["reason"] == "Programmed"] == ["Programmed"]
        assert failed[0]["involvedObject"]["uid"] == obj["metadata"]["uid"]  # type: ignore[index]

        clock.now += 31
        await recorder.flush()
        failed = [e for e in await trio.to_thread.run_sync(events_about, kube, "flaky", namespace)
                  if e["reason"] == "ApplyFailed"]
        assert len(failed) == 1 and failed[0]["series"]["count"] == 5

        # Deleted under the recorder (the apiserver's event TTL does this after an hour): the next repeat
        # starts a new Event instead of being lost.
        await client.delete(k8s.EVENTS, failed[0]["metadata"]["name"], namespace)
        clock.now += 31
        recorder.record(obj, "Warning", "ApplyFailed", "could not apply Service flaky: boom")
        await recorder.drain()
        failed = [e for e in await trio.to_thread.run_sync(events_about, kube, "flaky", namespace)
                  if e["reason"] == "ApplyFailed"]
        assert len(failed) == 1 and not failed[0].get("series")

        # After the similarity window, the same failure is news again: a new Event.
        clock.now += 400
        recorder.record(obj, "Warning", "ApplyFailed", "could not apply Service flaky: boom")
        await recorder.drain()
        failed = [e for e in await trio.to_thread.run_sync(events_about, kube, "flaky", namespace)
                  if e["reason"] == "ApplyFailed"]
        assert len(failed) == 2


async def test_a_full_buffer_drops_instead_of_blocking(kubeconfig: Path, installed: object, namespace: str) -> None:
    async with k8s.Kube(await trio.to_thread.run_sync(k8s.load_config, str(kubeconfig))) as client:
        obj = await _server(client, namespace, "noisy")
        recorder = EventRecorder(client, "test", buffer=3, senders=1)
        for i in range(10):  # no sender runs: record() must neither wait nor grow without bound
            recorder.record(obj, "Warning", "Boom", f"attempt {i}")
        assert recorder.dropped == 7
