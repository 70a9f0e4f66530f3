"""The CLI's waits follow a watch, not a 0.5 s poll: `deploy` sees Ready as soon as the status says so and asks
nothing while nothing changes; `install`'s waits (Deployment and pods, a namespace being deleted) and
`uninstall`'s waits for deletions likewise. Against the real apiserver, with the
client's own request counter as the witness."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import trio

from kmcp import kube as k8s
from kmcp.commands import watching
from kmcp.commands.cluster import PODS, Progress
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


class Recorded(Progress):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def update(self, text: str, key: str | None = None) -> None:
        self.lines.append(text)


async def witness(client: k8s.Kube, resource: k8s.Resource, namespace: str | None, name: str, seen: Any,
                  at: list[float], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The time the apiserver reported ``seen(event)`` for the object, from a watch of its own."""
    listed = await client.list(resource, namespace, field_selector=f"metadata.name={name}")
    task_status.started()
    async for event in client.watch(resource, namespace, resource_version=listed["metadata"]["resourceVersion"],
                                    field_selector=f"metadata.name={name}", timeout_seconds=120):
        if seen(event):
            at.append(time.monotonic())
            return


def available(event: Any) -> bool:
    return any(c["type"] == "Available" and c["status"] == "True"
               for c in (event.object.get("status") or {}).get("conditions") or [])


async def test_install_waits_on_a_watch_for_the_deployment_and_its_pods(kubeconfig: Path, namespace: str) -> None:
    """Playing the deployment controller and a kubelet (this apiserver runs neither): a Deployment whose pod cannot
    pull its image, then Available. The wait says why meanwhile, sees Available as the apiserver reports it, and
    neither gets nor lists in a loop."""
    from kmcp.commands.install import wait_deployment_available

    config = await trio.to_thread.run_sync(k8s.load_config, str(kubeconfig))
    async with k8s.Kube(config) as client, k8s.Kube(config) as writer:
        progress = Recorded()
        seen_at: list[float] = []

        async def play_the_cluster() -> None:
            await trio.sleep(1)
            created = await writer.create(k8s.DEPLOYMENTS, {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "watched", "namespace": namespace},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "watched"}},
                         "template": {"metadata": {"labels": {"app": "watched"}},
                                      "spec": {"containers": [{"name": "c", "image": "example.test/c:missing"}]}}}},
                namespace)
            await trio.sleep(1)
            await writer.create(PODS, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "watched-abc", "namespace": namespace, "labels": {"app": "watched"}},
                "spec": {"containers": [{"name": "c", "image": "example.test/c:missing"}]}}, namespace)
            await writer.patch_status(PODS, "watched-abc", namespace, {
                "phase": "Pending", "containerStatuses": [{
                    "name": "c", "image": "example.test/c:missing", "imageID": "", "ready": False, "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]})
            await trio.sleep(3)
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            await writer.patch_status(k8s.DEPLOYMENTS, "watched", namespace, {
                "observedGeneration": created["metadata"]["generation"], "replicas": 1, "availableReplicas": 1,
                "readyReplicas": 1, "updatedReplicas": 1,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                "message": "ok", "lastUpdateTime": now, "lastTransitionTime": now}]})

        async with trio.open_nursery() as nursery:
            await nursery.start(witness, writer, k8s.DEPLOYMENTS, namespace, "watched", available, seen_at)
            nursery.start_soon(play_the_cluster)
            await wait_deployment_available(client, namespace, "watched", 60, progress)
            told_at = time.monotonic()
        assert seen_at, "the witness saw no Available"
        assert told_at - seen_at[0] < 0.5, told_at - seen_at[0]
    assert any("pod watched-abc: c ImagePullBackOff (Back-off pulling image)" in line for line in progress.lines), \
        progress.lines
    deployments, pods = requests(client, "deployments"), requests(client, "pods")
    assert deployments.get("watch", 0) >= 1 and deployments.get("get", 0) + deployments.get("list", 0) <= 2, deployments
    assert pods.get("watch", 0) >= 1 and pods.get("get", 0) + pods.get("list", 0) <= 2, pods


async def test_install_waits_on_a_watch_for_a_namespace_being_deleted(kubeconfig: Path, kube: Any) -> None:
    """The real namespace controller removes a namespace once the finalizer holding its last object goes."""
    from kmcp.commands.install import wait_namespace_usable

    name = f"held-{time.monotonic_ns() % 10**8}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "held", "namespace": name, "finalizers": ["kmcp.test/held"]}})
    kube.remove("v1", "Namespace", name)
    config = await trio.to_thread.run_sync(k8s.load_config, str(kubeconfig))
    async with k8s.Kube(config) as client, k8s.Kube(config) as writer:
        gone_at: list[float] = []

        async def release() -> None:
            await trio.sleep(3)
            await writer.patch(k8s.CONFIG_MAPS, "held", name, {"metadata": {"finalizers": None}})

        async with trio.open_nursery() as nursery:
            await nursery.start(witness, writer, k8s.NAMESPACES, None, name, lambda e: e.type == "DELETED", gone_at)
            nursery.start_soon(release)
            await wait_namespace_usable(client, name, 60, out=io.StringIO())
            told_at = time.monotonic()
        assert gone_at and told_at - gone_at[0] < 0.5, (told_at, gone_at)
    made = requests(client, "namespaces")
    assert made.get("watch", 0) >= 1 and made.get("get", 0) + made.get("list", 0) <= 3, made
