"""What the cluster commands (install, deploy, get, status, secrets, port-forward, dev) share: connecting with a
kubeconfig, running a Trio operation from argparse code, turning API errors into one-line messages, the REST
resources of the install objects, progress lines and ages.

Every command talks to the apiserver through :mod:`kmcp.kube` (no kubectl).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from kmcp import kube
from kmcp.errors import BadInput, CommandFailed, leaf, plain_errors

if TYPE_CHECKING:
    from kmcp.kubesync import SyncKube

T = TypeVar("T")
Obj = dict[str, Any]

CRDS = kube.Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False,
                     kind="CustomResourceDefinition")
CLUSTER_ROLES = kube.Resource("rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False, kind="ClusterRole")
CLUSTER_ROLE_BINDINGS = kube.Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False,
                                      kind="ClusterRoleBinding")
ROLES = kube.Resource("rbac.authorization.k8s.io", "v1", "roles", kind="Role")
ROLE_BINDINGS = kube.Resource("rbac.authorization.k8s.io", "v1", "rolebindings", kind="RoleBinding")
PODS = kube.Resource("", "v1", "pods", kind="Pod")
_EXTRA = {(r.api_version, r.kind): r for r in (CRDS, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, ROLES, ROLE_BINDINGS, PODS)}


def resource_of(obj: Mapping[str, Any]) -> kube.Resource:
    """The REST resource of any kind kmcp installs or reads."""
    found = _EXTRA.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    return found if found is not None else kube.resource_for(obj)


def describe(obj: Mapping[str, Any]) -> str:
    """``Deployment kmcp-system/kmcp-controller-manager`` for messages."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def kubeconfig_paths(kubeconfig: str | None, environ: Mapping[str, str]) -> list[str]:
    """The files a kubeconfig is read from, as kubectl picks them: --kubeconfig, else $KUBECONFIG's list, else
    ~/.kube/config."""
    if kubeconfig:
        return [kubeconfig]
    listed = [path for path in environ.get("KUBECONFIG", "").split(os.pathsep) if path]
    return listed or [str(Path.home() / ".kube" / "config")]


def load_kube_config(kubeconfig: str | None) -> kube.KubeConfig:
    """kube.load_config with its many failure modes turned into one line naming the file(s) it tried."""
    paths = kubeconfig_paths(kubeconfig, os.environ)
    in_cluster = kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if not in_cluster and not any(Path(path).exists() for path in paths):
        source = "--kubeconfig" if kubeconfig else "$KUBECONFIG" if os.environ.get("KUBECONFIG") else "default"
        raise BadInput(f"kubeconfig not found: {', '.join(paths)} ({source}; pass --kubeconfig FILE or set "
                       "$KUBECONFIG, e.g. to the one `kmcp dev up` prints)")
    try:
        return kube.load_config(kubeconfig)
    except FileNotFoundError as error:
        raise BadInput(f"kubeconfig not found: {error.filename or ', '.join(paths)}") from None
    except Exception as error:  # the kubernetes package raises ConfigException and friends
        raise BadInput(f"cannot load kubeconfig {', '.join(paths)}: {' '.join(str(error).split())}") from None


def api_error_message(error: kube.ApiError) -> str:
    message = error.message or error.reason or f"HTTP {error.status}"
    if isinstance(error, kube.Unauthorized):
        return f"the apiserver refused the credentials ({message})"
    if isinstance(error, kube.Forbidden):
        return f"forbidden: {message}"
    return message


def unavailable_message(server: str, error: kube.ApiUnavailable) -> str:
    if isinstance(error, kube.ApiUnreachable):
        return f"cannot reach the apiserver at {server}: {error}"
    if isinstance(error, kube.ApiTimeout):
        return f"the apiserver at {server} did not answer in time"
    return f"talking to the apiserver at {server}: {error}"


@contextlib.contextmanager
def api_errors(server: str) -> Iterator[None]:
    """ApiError and connection failures -> CommandFailed with a readable message."""
    try:
        yield
    except kube.ApiUnavailable as error:
        raise CommandFailed(unavailable_message(server, error)) from None
    except kube.ApiError as error:
        raise CommandFailed(api_error_message(error)) from None
    except BaseExceptionGroup as group:  # raised in a nursery inside the block: the same one line
        found = leaf(group, (kube.ApiError,))
        if not isinstance(found, kube.ApiError):
            raise
        message = unavailable_message(server, found) if isinstance(found, kube.ApiUnavailable) else \
            api_error_message(found)
        raise CommandFailed(message) from None


def run_with_kube(kubeconfig: str | None, operation: Callable[[kube.Kube], Awaitable[T]]) -> T:
    """Load the kubeconfig, then run ``operation(client)`` under Trio with API errors made readable."""
    config = load_kube_config(kubeconfig)

    async def main() -> T:
        with api_errors(config.server):
            async with kube.Kube(config) as client:
                return await operation(client)

    import trio  # here: `kmcp get` and `status` (run_reads) never load it

    with plain_errors():
        return trio.run(main)


def run_reads(kubeconfig: str | None, operation: Callable[[SyncKube], T]) -> T:
    """Load the kubeconfig, then run ``operation(client)`` with a blocking client (:mod:`kmcp.kubesync`), API
    errors made readable: for commands that only read, a start without Trio and httpx."""
    from kmcp.kubesync import SyncKube

    config = load_kube_config(kubeconfig)
    with api_errors(config.server), SyncKube(config) as client:
        return operation(client)


class Progress:
    """One status line that rewrites itself on a terminal and prints only changes elsewhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = ""
        self.last_key = ""

    def update(self, text: str, key: str | None = None) -> None:
        """Show ``text``; off a terminal only when ``key`` (default: the text) changed."""
        changed = (key if key is not None else text) != self.last_key
        if text == self.last or not (changed or self.tty):
            return
        self.last = text
        self.last_key = key if key is not None else text
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, text: str | None = None) -> None:
        if self.tty and self.last:
            self.stream.write("\r\033[K")
        if text:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last = self.last_key = ""


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """kubectl's short age: 45s, 3m, 5h, 2d."""
    then = parse_time(timestamp)
    if then is None:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by three spaces, as kubectl prints them."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows) + "\n"


def condition(obj: Mapping[str, Any] | None, type_: str) -> Obj | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


async def recent_events(client: kube.Kube, kind: str, name: str, namespace: str, limit: int = 5) -> list[Obj]:
    """The newest Events about one object (core/v1 view, which also shows events.k8s.io/v1 Events)."""
    try:
        listed = await client.list(kube.CORE_EVENTS, namespace, field_selector=events_about(kind, name))
    except (kube.Forbidden, kube.NotFound):
        return []
    return newest_events(listed.get("items") or [], limit)


def events_about(kind: str, name: str) -> str:
    """The field selector of the core/v1 Events about one object."""
    return f"involvedObject.kind={kind},involvedObject.name={name}"


def newest_events(items: list[Obj], limit: int) -> list[Obj]:
    """The ``limit`` newest of ``items``, oldest first."""
    def when(event: Obj) -> str:
        series = event.get("series") or {}
        return str(series.get("lastObservedTime") or event.get("lastTimestamp") or event.get("eventTime")
                   or (event.get("metadata") or {}).get("creationTimestamp") or "")

    return sorted(items, key=when)[-limit:]


def event_lines(events: list[Obj]) -> list[str]:
    out = []
    for event in events:
        when = (event.get("series") or {}).get("lastObservedTime") or event.get("lastTimestamp") \
            or event.get("eventTime") or (event.get("metadata") or {}).get("creationTimestamp")
        out.append(f"  {age(when):>6}  {event.get('type', ''):<8} {event.get('reason', ''):<22} "
                   f"{event.get('message', '')}")
    return out
