"""The CLI's waits follow a watch, not a 0.5 s poll: `deploy` sees Ready as soon as the status says so and asks
nothing while nothing changes; `uninstall`'s waits for deletions likewise. Against the real apiserver, with the
client's own request counter as the witness."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

from kmcp import kube as k8s
from kmcp.commands import watching
from kmcp.commands.cluster import Progress
from kmcp.commands.deploy import wait_ready
from kmcp.commands.install import _wait_servers_gone
from tests.controller.conftest import mcpserver

Obj = dict[str, Any]
READY = [{"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
         for t in ("Accepted", "ResolvedRefs", "Programmed", "Ready")]


def requests(client: k8s.Kube, plural: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for (verb, resource, _), count in client.counter.counts.items():
        if resource == plural:
            out[verb] = out.get(verb, 0) + count
    return out


async def test_deploy_waits_on_a_watch_and_sees_ready_at_once(kubeconfig: Path, installed: object,
                                                               namespace: str) -> None:
    async with k8s.Kube(await trio.to_thread.run_sync(k8s.load_config, str(kubeconfig))) as client, \
            k8s.Kube(client.config) as writer:
        created = await writer.create(k8s.MCPSERVERS, mcpserver("watched", namespace), namespace)
        generation = created["metadata"]["generation"]
        written_at: list[float] = []

        async def become_ready() -> None:
            await trio.sleep(3)
            await writer.patch_status(k8s.MCPSERVERS, "watched", namespace,
                                      {"observedGeneration": generation, "conditions": READY})
            written_at.append(time.monotonic())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(become_ready)
            obj = await wait_ready(client, "watched", namespace, 30, Progress())
        seen_after = time.monotonic() - written_at[0]
    assert obj["status"]["conditions"][-1]["type"] == "Ready"
    assert seen_after < 0.5, seen_after  # told by the watch, not found on the next poll
    made = requests(client, "mcpservers")
    assert made.get("watch", 0) >= 1 and made.get("get", 0) + made.get("list", 0) <= 2, made


async def test_uninstall_waits_on_a_watch_for_the_mcpservers_to_go(kubeconfig: Path, installed: object,
                                                                  namespace: str) -> None:
    async with k8s.Kube(await trio.to_thread.run_sync(k8s.load_config, str(kubeconfig))) as client, \
            k8s.Kube(client.config) as writer:
        held = mcpserver("held", namespace)
        held["metadata"]["finalizers"] = ["example.test/hold"]
        await writer.create(k8s.MCPSERVERS, held, namespace)
        await writer.delete(k8s.MCPSERVERS, "held", namespace)

        async def release() -> None:
            await trio.sleep(3)
            await writer.patch(k8s.MCPSERVERS, "held", namespace, {"metadata": {"finalizers": None}})

        before = requests(client, "mcpservers")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(release)
            left = await _wait_servers_gone(client, 30, Progress(), "")
        made = {verb: n - before.get(verb, 0) for verb, n in requests(client, "mcpservers").items()}
    assert not [s for s in left if s["metadata"]["namespace"] == namespace]
    assert made.get("watch", 0) >= 1 and made.get("list", 0) <= 2, made


async def test_a_watch_the_apiserver_refuses_falls_back_to_polling(kubeconfig: Path, installed: object,
                                                                   namespace: str) -> None:
    """A user who may get but not watch still gets the wait (by polling)."""
    async with k8s.Kube(await trio.to_thread.run_sync(k8s.load_config, str(kubeconfig))) as client:
        await client.create(k8s.MCPSERVERS, mcpserver("polled", namespace), namespace)
        denied = k8s.Resource("kagent.dev", "v1alpha1", "mcpservers", kind="MCPServer")

        async def refuse(*_args: object, **_kwargs: object) -> Any:
            raise k8s.Forbidden(403, "Forbidden", "watch is not allowed")
            yield  # an async generator, like Kube.watch

        client.watch = refuse  # type: ignore[method-assign]
        async with watching.watching(client, denied, namespace, "polled") as watched:
            assert watched.get() is not None
            await client.delete(k8s.MCPSERVERS, "polled", namespace)
            with trio.fail_after(10):
                while watched.get() is not None:
                    await watched.changed(1.0)
