"""``kmcp install`` / ``kmcp uninstall``: the CRD and the controller's install objects, server-side applied.

Applying is idempotent (field manager ``kmcp``): a second install changes nothing. The CRD goes first and must be
Established before anything can create MCPServers; with ``--wait`` the command then follows the controller
Deployment until it is Available.

Uninstall first deletes every MCPServer (all namespaces) and waits, bounded, while the controller still runs: an
MCPServer with ``auth: kubernetes`` holds kmcp's finalizer until the controller has deleted its cluster-scoped
ClusterRoleBinding, so removing the controller first would leave those MCPServers, and then the CRD, Terminating
forever. Only then are the install objects deleted, in reverse order with foreground propagation. When no
controller is left to do it, ``--remove-finalizers`` does the controller's part: delete the bindings, then remove
kmcp's own finalizer (never anyone else's). ``--keep-crd`` keeps the MCPServers and says in one line how many are
left without a controller, and how to remove them later.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from kmcp import crd, install, kube, render
from kmcp.commands.cluster import CRDS, PODS, Progress, condition, describe, resource_of
from kmcp.commands.watching import Watched, any_changed, watching
from kmcp.errors import CommandFailed

Obj = dict[str, Any]


@dataclass(frozen=True)
class InstallRequest:
    namespace: str = install.DEFAULT_NAMESPACE
    image: str = install.DEFAULT_IMAGE
    wait: bool = True
    timeout: float = 300.0
    include_crd: bool = True
    remove_finalizers: bool = False


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
    async with watching(client, CRDS, None, name) as watched:
        with trio.move_on_after(within):
            while True:
                established = condition(watched.get() or {}, "Established")
                if established and established.get("status") == "True":
                    return
                await watched.changed(within=within)
    raise CommandFailed(f"CustomResourceDefinition {name} not Established after {within:g}s")


async def wait_namespace_usable(client: kube.Kube, name: str, within: float, out: Any = None) -> None:
    """A namespace being deleted refuses new objects (403 NamespaceTerminating): wait until the namespace
    controller has emptied and removed it, saying so, rather than fail on the first apply."""
    try:
        namespace = await client.get(kube.NAMESPACES, name)
    except kube.NotFound:
        return
    if not namespace["metadata"].get("deletionTimestamp"):
        return
    print(f"namespace {name} is being deleted (a kmcp uninstall?): waiting up to {within:g}s for it to be gone",
          file=out or sys.stdout, flush=True)
    async with watching(client, kube.NAMESPACES, None, name) as watched:
        with trio.move_on_after(within):
            while watched.get() is not None:
                await watched.changed(within=within)
            return
        namespace = watched.get() or namespace
    blocking = [f"{c.get('type')}: {c.get('message')}" for c in (namespace.get("status") or {}).get("conditions", [])
                if c.get("status") == "True"]
    raise CommandFailed(f"namespace {name} is still being deleted after {within:g}s"
                        + (f" ({'; '.join(blocking)[:300]})" if blocking else "")
                        + f": see `kubectl get namespace {name} -o yaml`")


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


def _pod_problems(pods: list[Obj]) -> str:
    """Why the Deployment's pods are not running yet (ImagePullBackOff, CrashLoopBackOff, ...), if they say."""
    problems = []
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
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


@contextlib.asynccontextmanager
async def _pods_of(client: kube.Kube, namespace: str, dep: Obj) -> AsyncIterator[Watched | None]:
    """A watch on the Deployment's pods, to say why they do not run; None when they cannot be read (then the wait
    goes on without the reason)."""
    labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    entered = False
    try:
        async with watching(client, PODS, namespace, labels=selector) as pods:
            entered = True
            yield pods
    except kube.ApiUnavailable:
        raise  # the apiserver is gone, not just the pods unreadable: the caller reports that
    except kube.ApiError:
        if entered:
            raise
        yield None


async def wait_deployment_available(client: kube.Kube, namespace: str, name: str, within: float,
                                    progress: Progress) -> None:
    """Follow the Deployment, and once it exists its pods, each with a watch (see :mod:`kmcp.commands.watching`):
    Available is seen as soon as its status says so, and nothing is asked while nothing changes."""
    started = trio.current_time()
    summary = "not found"

    def report(dep: Obj | None, pods: Watched | None) -> bool:
        nonlocal summary
        available, summary = _deployment_progress(dep)
        if available:
            progress.done(f"deployment {namespace}/{name} is Available ({summary})")
            return True
        if dep is not None and pods is not None:
            summary += _pod_problems(list(pods.items.values()))
        elapsed = int(trio.current_time() - started)
        progress.update(f"waiting for deployment {namespace}/{name} to become Available: {summary} [{elapsed}s]",
                        key=summary)
        return False

    async with watching(client, kube.DEPLOYMENTS, namespace, name) as deployment:
        with trio.move_on_after(within):
            while (dep := deployment.get()) is None:
                report(None, None)
                await deployment.changed(within=1.0)
            async with _pods_of(client, namespace, dep) as pods:  # it exists: its pods can be found
                while not report(deployment.get(), pods):
                    await any_changed([deployment, pods] if pods else [deployment], within=1.0)
                return
    progress.done()
    raise CommandFailed(f"timed out after {within:g}s waiting for deployment {namespace}/{name} to become "
                        f"Available: {summary}")


async def apply_install(client: kube.Kube, request: InstallRequest, out: Any = None) -> list[Obj]:
    """Server-side apply every install object (CRD first, Established before the rest)."""
    out = out or sys.stdout
    applied = []
    await wait_namespace_usable(client, request.namespace, request.timeout, out)
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


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _finalizers(obj: Obj) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


async def _list_servers(client: kube.Kube) -> list[Obj] | None:
    """Every MCPServer in the cluster, or None when the CRD is not there (nothing to delete)."""
    try:
        return list((await client.list(kube.MCPSERVERS)).get("items") or [])
    except kube.NotFound:
        return None


async def _controller_state(client: kube.Kube, namespace: str) -> tuple[bool, str]:
    """(the controller Deployment exists, a phrase on how it is doing)."""
    try:
        dep = await client.get(kube.DEPLOYMENTS, install.NAME, namespace)
    except kube.NotFound:
        return False, f"deployment {namespace}/{install.NAME} not found"
    return True, f"deployment {namespace}/{install.NAME}: {_deployment_progress(dep)[1]}"


async def release_auth_binding(client: kube.Kube, server: Obj) -> list[str]:
    """What the controller does for a deleted MCPServer, done by hand: delete the ClusterRoleBinding(s) labelled for
    it (whatever their name), then drop kmcp's finalizer, and only kmcp's. Returns what was done, for messages."""
    meta = server["metadata"]
    namespace, name = str(meta.get("namespace") or "default"), str(meta["name"])
    selector = (f"app.kubernetes.io/managed-by={render.MANAGED_BY},app.kubernetes.io/instance={name},"
                f"{render.SERVER_NAMESPACE_LABEL}={namespace}")
    done = []
    bindings = (await client.list(kube.CLUSTER_ROLE_BINDINGS, label_selector=selector)).get("items") or []
    for binding in bindings:
        try:
            await client.delete(kube.CLUSTER_ROLE_BINDINGS, binding["metadata"]["name"])
        except kube.NotFound:
            continue
        done.append(f"deleted ClusterRoleBinding {binding['metadata']['name']}")
    while True:
        finalizers = _finalizers(server)
        if render.AUTH_BINDING_FINALIZER not in finalizers:
            return done
        # Conditional on the resourceVersion read: a finalizer someone else adds meanwhile is never dropped.
        patch = {"metadata": {"finalizers": [f for f in finalizers if f != render.AUTH_BINDING_FINALIZER],
                              "resourceVersion": server["metadata"].get("resourceVersion")}}
        try:
            await client.patch(kube.MCPSERVERS, name, namespace, patch)
        except kube.NotFound:
            return done
        except kube.Conflict:
            try:
                server = await client.get(kube.MCPSERVERS, name, namespace)
            except kube.NotFound:
                return done
            continue
        done.append(f"removed finalizer {render.AUTH_BINDING_FINALIZER}")
        return done


async def _wait_servers_gone(client: kube.Kube, within: float, progress: Progress, why: str) -> list[Obj]:
    """Follow the MCPServers (a watch) until none is left or ``within`` seconds passed; the ones still there."""
    started = trio.current_time()
    async with watching(client, kube.MCPSERVERS) as watched:
        with trio.move_on_after(within):
            while watched.items:
                left = list(watched.items.values())
                elapsed = int(trio.current_time() - started)
                names = ", ".join(_key(s) for s in left[:5]) + (", ..." if len(left) > 5 else "")
                progress.update(f"waiting for {len(left)} MCPServer(s) to be deleted{why}: {names} [{elapsed}s]",
                                key=str(len(left)))
                await watched.changed(within=1.0)
        left = sorted(watched.items.values(), key=_key)
    progress.done()
    return left


async def delete_servers(client: kube.Kube, request: InstallRequest, out: Any = None) -> None:
    """Delete every MCPServer and wait until they are gone, before the controller that finalizes them goes.

    Raises CommandFailed (having removed nothing else) when some stay: with a running controller after
    ``request.timeout``, without one at once, unless ``request.remove_finalizers`` lets this do the controller's
    part for kmcp's finalizer."""
    out = out or sys.stdout
    servers = await _list_servers(client)
    if not servers:
        return
    for server in servers:
        meta = server["metadata"]
        if not meta.get("deletionTimestamp"):
            try:
                await client.delete(kube.MCPSERVERS, meta["name"], meta.get("namespace"))
            except kube.NotFound:
                continue
        print(f"deleted MCPServer {_key(server)}", file=out, flush=True)
    progress = Progress()
    controller_exists, controller = await _controller_state(client, request.namespace)
    # Without a controller Deployment nobody will finalize them: no point in waiting more than a moment.
    within = request.timeout if controller_exists else min(request.timeout, 2.0)
    left = await _wait_servers_gone(client, within, progress,
                                    " (the controller removes their auth bindings first)" if controller_exists
                                    else "")
    if not left:
        return
    ours = [s for s in left if render.AUTH_BINDING_FINALIZER in _finalizers(s)]
    if ours and request.remove_finalizers:
        print(f"the controller did not finalize {len(ours)} MCPServer(s) ({controller}): doing its part",
              file=out, flush=True)
        for server in ours:
            for action in await release_auth_binding(client, server):
                print(f"MCPServer {_key(server)}: {action}", file=out, flush=True)
        left = await _wait_servers_gone(client, min(request.timeout, 10.0), progress, "")
        if not left:
            return
        ours = [s for s in left if render.AUTH_BINDING_FINALIZER in _finalizers(s)]
    stuck = "; ".join(f"{_key(s)} (finalizers: {', '.join(_finalizers(s)) or 'none'})" for s in left[:5])
    if len(left) > 5:
        stuck += f"; and {len(left) - 5} more"
    waited = f"after {within:g}s" if controller_exists else "and no controller is running"
    message = f"{len(left)} MCPServer(s) are still being deleted {waited}: {stuck}. Nothing else was removed."
    if ours:
        message += (f" The kmcp controller ({controller}) removes finalizer {render.AUTH_BINDING_FINALIZER} once it "
                    f"has deleted the MCPServer's auth ClusterRoleBinding; if it cannot run any more, re-run with "
                    f"--remove-finalizers to delete those bindings and remove kmcp's finalizer (only kmcp's).")
    foreign = sorted({f for s in left for f in _finalizers(s) if f != render.AUTH_BINDING_FINALIZER})
    if foreign:
        message += f" Finalizers kmcp does not own ({', '.join(foreign)}) are for their controllers to remove."
    raise CommandFailed(message)


async def run_uninstall(client: kube.Kube, request: InstallRequest) -> None:
    """Delete every MCPServer (waiting for the controller to finalize them) when the CRD goes, then the install
    objects (and the CRD unless excluded), newest first, foreground propagation."""
    if request.include_crd:
        await delete_servers(client, request)
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
                async with watching(client, resource_of(obj), meta.get("namespace"), meta["name"]) as watched:
                    while watched.get() is not None:
                        progress.update(f"waiting for {waiting_for} to be gone")
                        await watched.changed(within=1.0)
        progress.done()
        if scope.cancelled_caught:
            raise CommandFailed(f"timed out after {request.timeout:g}s waiting for {waiting_for} to be deleted")
    print(f"kmcp uninstalled: removed {len(removed)} objects")
    if not request.include_crd:
        warning = left_behind_warning(await _list_servers(client) or [], request.namespace)
        if warning:
            print(warning, file=sys.stderr, flush=True)


def left_behind_warning(servers: list[Obj], namespace: str) -> str | None:
    """One line about the MCPServers ``--keep-crd`` leaves without a controller, or None when there are none: one
    holding kmcp's finalizer can no longer be deleted (its delete waits for a controller to remove the auth
    binding first), so the line says how many, which, and the two ways out."""
    if not servers:
        return None
    names = ", ".join(_key(s) for s in servers[:5]) + (", ..." if len(servers) > 5 else "")
    line = f"kmcp: warning: {len(servers)} MCPServer(s) remain with no controller to reconcile them ({names})"
    held = sum(render.AUTH_BINDING_FINALIZER in _finalizers(s) for s in servers)
    flag = "" if namespace == install.DEFAULT_NAMESPACE else f" --namespace {namespace}"
    if not held:
        return line + "; reinstall with `kmcp install`, or delete them with `kubectl delete mcpservers --all -A`"
    verb, them = ("holds", "it") if held == 1 else ("hold", "them")
    return (line + f"; {held} {verb} finalizer {render.AUTH_BINDING_FINALIZER}, so deleting {them} would wait for a "
            f"controller: reinstall with `kmcp install{flag}`, or delete them all (the CRD too) with "
            f"`kmcp uninstall{flag} --remove-finalizers`")
