"""``kmcp get`` (a table of MCPServers) and ``kmcp status NAME`` (conditions and recent Events of one).

Both only read, so they use the blocking :class:`kmcp.kubesync.SyncKube` and start without Trio, httpx, msgspec or
YAML (``-o yaml`` loads what it needs): a short command is mostly its start, and kubectl's is 0.2 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kmcp import kube
from kmcp.commands.cluster import age, condition, event_lines, events_about, newest_events, table
from kmcp.errors import CommandFailed

if TYPE_CHECKING:
    from kmcp.kubesync import SyncKube

Obj = dict[str, Any]


def _ready(obj: Obj) -> str:
    cond = condition(obj, "Ready")
    return str(cond.get("status")) if cond else "Unknown"


def mcpserver_rows(items: list[Obj], all_namespaces: bool) -> list[list[str]]:
    header = ["NAME", "READY", "TRANSPORT", "URL", "AGE"]
    rows = [(["NAMESPACE"] if all_namespaces else []) + header]
    for obj in sorted(items, key=lambda o: ((o.get("metadata") or {}).get("namespace", ""),
                                            (o.get("metadata") or {}).get("name", ""))):
        meta = obj.get("metadata") or {}
        row = [meta.get("name", ""), _ready(obj), (obj.get("spec") or {}).get("transportType", ""),
               (obj.get("status") or {}).get("url", "") or "<none>", age(meta.get("creationTimestamp"))]
        rows.append(([meta.get("namespace", "")] if all_namespaces else []) + row)
    return rows


def run_get(client: SyncKube, namespace: str | None, all_namespaces: bool, output: str,
            name: str | None = None) -> None:
    ns = None if all_namespaces else (namespace or client.config.namespace)
    if name:
        try:
            items = [client.get(kube.MCPSERVERS, name, ns)]
        except kube.NotFound:
            raise CommandFailed(f"mcpserver {ns}/{name} not found") from None
    else:
        try:
            items = client.list(kube.MCPSERVERS, ns).get("items") or []
        except kube.NotFound:
            raise CommandFailed("the cluster does not serve MCPServers: run `kmcp install`") from None
    if output in ("yaml", "json"):
        from kmcp import spec
        from kmcp.commands.deploy import print_objects

        for item in items:
            item.setdefault("apiVersion", spec.API_VERSION)
            item.setdefault("kind", spec.KIND)
        print_objects(items, output)
        return
    if not items:
        where = "any namespace" if all_namespaces else f"namespace {ns}"
        print(f"No MCPServers found in {where}.")
        return
    print(table(mcpserver_rows(items, all_namespaces)), end="")


def run_status(client: SyncKube, name: str, namespace: str | None) -> None:
    from kmcp import spec

    ns = namespace or client.config.namespace
    try:
        obj = client.get(kube.MCPSERVERS, name, ns)
    except kube.NotFound:
        raise CommandFailed(f"mcpserver {ns}/{name} not found") from None
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    dep = (obj.get("spec") or {}).get("deployment") or {}
    print(f"Name:        {name}")
    print(f"Namespace:   {ns}")
    print(f"Transport:   {(obj.get('spec') or {}).get('transportType', '')}")
    print(f"Image:       {dep.get('image', '')}")
    print(f"URL:         {status.get('url') or '<none>'}")
    print(f"Generation:  {meta.get('generation', '?')} (observed: {status.get('observedGeneration', 'never')})")
    print("Conditions:")
    rows = [["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
    for type_ in spec.CONDITION_TYPES:
        cond = condition(obj, type_)
        if cond is None:
            rows.append([type_, "Unknown", "NotReported", "", "the controller has not reported it"])
        else:
            rows.append([type_, str(cond.get("status", "")), str(cond.get("reason", "")),
                         age(cond.get("lastTransitionTime")), str(cond.get("message", ""))])
    print("".join("  " + line + "\n" for line in table(rows).splitlines()), end="")
    events = _recent_events(client, spec.KIND, name, ns, limit=10)
    print("Events:" if events else "Events:      <none>")
    for line in event_lines(events):
        print(line)


def _recent_events(client: SyncKube, kind: str, name: str, namespace: str, limit: int) -> list[Obj]:
    """:func:`kmcp.commands.cluster.recent_events`, blocking."""
    try:
        listed = client.list(kube.CORE_EVENTS, namespace, field_selector=events_about(kind, name))
    except (kube.Forbidden, kube.NotFound):
        return []
    return newest_events(listed.get("items") or [], limit)
