"""``kmcp install`` / ``kmcp uninstall``: the CRD and the controller's install objects, server-side applied.

Applying is idempotent (field manager ``kmcp``): a second install changes nothing. The CRD goes first and must be
Established before anything can create MCPServers; with ``--wait`` the command then follows the controller
Deployment until it is Available. Uninstall deletes in reverse order with foreground propagation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import trio

from kmcp import crd, install, kube
from kmcp.commands import CommandFailed
from kmcp.commands.cluster import PODS, Progress, condition, describe, resource_of

Obj = dict[str, Any]


@dataclass(frozen=True)
class InstallRequest:
    namespace: str = install.DEFAULT_NAMESPACE
    image: str = install.DEFAULT_IMAGE
    wait: bool = True
    timeout: float = 300.0
    include_crd: bool = True


def image_for(image: str | None, version: str | None) -> str:
    """--image wins; --version picks a tag of the default controller image."""
    if image:
        return image
    if version:
        repository = install.DEFAULT_IMAGE.rsplit(":", 1)[0]
        return f"{repository}:{version}"
    return install.DEFAULT_IMAGE


def objects_for(request: InstallRequest) -> list[Obj]:
    """Everything install applies, in order: the CRD first, the controller Deployment last."""
    objects = install.install_objects(namespace=request.namespace, image=request.image)
    return ([crd.crd()] if request.include_crd else []) + objects


async def wait_crd_established(client: kube.Kube, name: str, within: float) -> None:
    with trio.move_on_after(within):
        while True:
            obj = await client.get(resource_of({"apiVersion": "apiextensions.k8s.io/v1",
                                                "kind": "CustomResourceDefinition"}), name)
            established = condition(obj, "Established")
            if established and established.get("status") == "True":
                return
            await trio.sleep(0.1)
    raise CommandFailed(f"CustomResourceDefinition {name} not Established after {within:g}s")


def _deployment_progress(dep: Obj | None) -> tuple[bool, str]:
    """(available, one-line summary) of a Deployment's status."""
    if dep is None:
        return False, "not found"
    status = dep.get("status") or {}
    wanted = (dep.get("spec") or {}).get("replicas", 1)
    available = condition(dep, "Available")
    summary = f"{status.get('availableReplicas', 0)}/{wanted} replicas available"
    if available and available.get("status") == "True" and \
            status.get("observedGeneration", 0) >= (dep.get("metadata") or {}).get("generation", 0):
        return True, summary
    if not status:
        summary += " (no status yet: the cluster has not scheduled it; is a scheduler and kubelet running?)"
    elif available:
        summary += f" ({available.get('reason', '')}: {available.get('message', '')})"
    return False, summary


async def _pod_problems(client: kube.Kube, namespace: str, dep: Obj) -> str:
    """Why the Deployment's pods are not running yet (ImagePullBackOff, CrashLoopBackOff, ...), if they say."""
    labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    try:
        pods = (await client.list(PODS, namespace, label_selector=selector)).get("items") or []
    except kube.ApiError:
        return ""
    problems = []
    for pod in pods:
        status = pod.get("status") or {}
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                problems.append(f"pod {pod['metadata']['name']}: {container.get('name')} {waiting['reason']}"
                                + (f" ({waiting['message'][:120]})" if waiting.get("message") else ""))
        if not problems and status.get("phase") == "Pending":
            scheduled = condition(pod, "PodScheduled")
            if scheduled and scheduled.get("status") == "False":
                problems.append(f"pod {pod['metadata']['name']} unschedulable: {scheduled.get('message', '')[:120]}")
    return ("; " + "; ".join(problems[:3])) if problems else ""


async def wait_deployment_available(client: kube.Kube, namespace: str, name: str, within: float,
                                    progress: Progress) -> None:
    started = trio.current_time()
    summary = "not found"
    with trio.move_on_after(within):
        while True:
            try:
                dep: Obj | None = await client.get(kube.DEPLOYMENTS, name, namespace)
            except kube.NotFound:
                dep = None
            available, summary = _deployment_progress(dep)
            if not available and dep is not None:
                summary += await _pod_problems(client, namespace, dep)
            if available:
                progress.done(f"deployment {namespace}/{name} is Available ({summary})")
                return
            elapsed = int(trio.current_time() - started)
            progress.update(f"waiting for deployment {namespace}/{name} to become Available: {summary} [{elapsed}s]",
                            key=summary)
            await trio.sleep(0.5)
    progress.done()
    raise CommandFailed(f"timed out after {within:g}s waiting for deployment {namespace}/{name} to become "
                        f"Available: {summary}")


async def apply_install(client: kube.Kube, request: InstallRequest, out: Any = None) -> list[Obj]:
    """Server-side apply every install object (CRD first, Established before the rest)."""
    out = out or sys.stdout
    applied = []
    for obj in objects_for(request):
        live = await client.apply(obj, resource=resource_of(obj))
        applied.append(live)
        print(f"applied {describe(obj)}", file=out, flush=True)
        if obj["kind"] == "CustomResourceDefinition":
            await wait_crd_established(client, obj["metadata"]["name"], min(request.timeout, 60.0))
            print(f"CustomResourceDefinition {obj['metadata']['name']} is Established", file=out, flush=True)
    return applied


async def run_install(client: kube.Kube, request: InstallRequest) -> None:
    await apply_install(client, request)
    if request.wait:
        await wait_deployment_available(client, request.namespace, install.NAME, request.timeout, Progress())
    print(f"kmcp controller installed in namespace {request.namespace} (image {request.image})")


async def run_uninstall(client: kube.Kube, request: InstallRequest) -> None:
    """Delete the install objects (and the CRD unless excluded), newest first, foreground propagation."""
    removed = []
    pending: list[Obj] = []
    for obj in reversed(objects_for(request)):
        meta = obj["metadata"]
        try:
            await client.delete(resource_of(obj), meta["name"], meta.get("namespace"), propagation="Foreground")
        except kube.NotFound:
            continue
        removed.append(describe(obj))
        pending.append(obj)
        print(f"deleted {describe(obj)}", flush=True)
    if not removed:
        print("nothing to remove: kmcp is not installed" + (f" in namespace {request.namespace}"
                                                              if request.namespace else ""))
        return
    if request.wait:
        progress = Progress()
        waiting_for = ""
        with trio.move_on_after(request.timeout) as scope:
            for obj in pending:
                meta = obj["metadata"]
                waiting_for = describe(obj)
                while True:
                    try:
                        await client.get(resource_of(obj), meta["name"], meta.get("namespace"))
                    except kube.NotFound:
                        break
                    progress.update(f"waiting for {waiting_for} to be gone")
                    await trio.sleep(0.2)
        progress.done()
        if scope.cancelled_caught:
            raise CommandFailed(f"timed out after {request.timeout:g}s waiting for {waiting_for} to be deleted")
    print(f"kmcp uninstalled: removed {len(removed)} objects")
