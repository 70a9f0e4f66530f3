"""``kmcp deploy``: kmcp.yaml (or an npx/uvx package) -> an MCPServer, server-side applied, followed until Ready.

The MCPServer is stdio: ``deployment.cmd``/``args`` come from kmcp.yaml ``command``/``args`` (or the framework's
default, matching the scaffold's Dockerfile), because the controller cannot read an image's ENTRYPOINT and must
know the command to wrap. ``--dry-run`` prints the MCPServer and exactly what the controller will apply for it
(:func:`kmcp.render.render`, the controller's own function).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import trio
import yaml

from kmcp import kube, render, spec
from kmcp.commands.cluster import Progress, condition, event_lines, recent_events
from kmcp.commands.podchain import find_stuck_link, stuck_report
from kmcp.commands.watching import watching
from kmcp.errors import BadInput, CommandFailed

Obj = dict[str, Any]
# What the scaffold's Dockerfiles run, for a kmcp.yaml without `command`.
IMAGE_COMMANDS: dict[str, tuple[str, list[str]]] = {"python": ("python", ["src/main.py"]), "go": ("/app/server", [])}
PACKAGE_IMAGES = {"npx": "node:22-slim", "uvx": "ghcr.io/astral-sh/uv:python3.12-bookworm-slim"}
INSPECTOR_URL = "http://127.0.0.1:3000/mcp"
DIAGNOSE_AFTER = 5.0  # seconds Programmed and not Ready before the cluster's pod chain is read for a missing link


def load_project(path: Path) -> spec.ProjectFile:
    """Read and validate kmcp.yaml; every problem is BadInput naming the file."""
    try:
        text = path.read_text()
    except OSError as error:
        raise BadInput(f"{path}: {error.strerror or error}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise BadInput(f"{path}: invalid YAML: {error}") from None
    try:
        return spec.decode_project(doc)
    except spec.SpecError as error:
        raise BadInput(f"{path}: {error}") from None


@dataclass(frozen=True)
class DeployRequest:
    name: str
    image: str
    namespace: str = "default"
    cmd: str = ""
    args: list[str] = field(default_factory=list)
    secret_refs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    port: int = spec.DEFAULT_PORT


def secret_source(project: spec.ProjectFile, environment: str) -> spec.SecretSource:
    source = project.secrets.get(environment)
    if source is None:
        known = ", ".join(sorted(project.secrets)) or "none"
        raise BadInput(f"kmcp.yaml has no secrets.{environment} (environments: {known})")
    return source


def request_from_project(project: spec.ProjectFile, image: str, namespace: str,
                         environment: str | None = None) -> DeployRequest:
    if project.command:
        cmd, args = project.command, list(project.args)
    else:
        cmd, args = IMAGE_COMMANDS[project.framework]
        args = list(project.args) or list(args)
    secret_refs: list[str] = []
    if environment:
        source = secret_source(project, environment)
        if source.enabled and source.provider == "kubernetes":
            if not source.secret_name:
                raise BadInput(f"kmcp.yaml secrets.{environment}.secretName is required for provider kubernetes")
            secret_refs.append(source.secret_name)
    labels = {"app.kubernetes.io/version": project.version} if project.version else {}
    return DeployRequest(name=project.name, image=image, namespace=namespace, cmd=cmd, args=args,
                         secret_refs=secret_refs, labels=labels)


def request_for_package(name: str, manager: str, package_args: list[str], namespace: str,
                        image: str | None = None, env: dict[str, str] | None = None,
                        secret_refs: list[str] | None = None) -> DeployRequest:
    """`npx -y <pkg> ARGS` or `uvx <pkg> ARGS` in a node / uv image."""
    if not package_args:
        raise BadInput("--args needs the package to run, e.g. --args @modelcontextprotocol/server-everything")
    if manager == "npx":
        cmd, args = "npx", ["-y", *package_args]
    elif manager == "uvx":
        cmd, args = "uvx", list(package_args)
    else:
        raise BadInput(f"--manager must be npx or uvx, not {manager!r}")
    return DeployRequest(name=name, image=image or PACKAGE_IMAGES[manager], namespace=namespace, cmd=cmd,
                         args=args, env=dict(env or {}), secret_refs=list(secret_refs or []))


def mcpserver_object(request: DeployRequest) -> Obj:
    deployment: Obj = {"image": request.image, "cmd": request.cmd, "args": list(request.args),
                       "port": request.port}
    if request.env:
        deployment["env"] = dict(request.env)
    if request.secret_refs:
        deployment["secretRefs"] = [{"name": name} for name in request.secret_refs]
    metadata: Obj = {"name": request.name, "namespace": request.namespace}
    if request.labels:
        metadata["labels"] = dict(request.labels)
    return {"apiVersion": spec.API_VERSION, "kind": spec.KIND, "metadata": metadata,
            "spec": {"transportType": "stdio", "stdioTransport": {}, "deployment": deployment}}


def validated_mcpserver(request: DeployRequest) -> tuple[Obj, spec.MCPServer]:
    obj = mcpserver_object(request)
    try:
        return obj, spec.validated(obj)
    except spec.SpecError as error:
        raise BadInput(f"the MCPServer built from the project is invalid: {error}") from None


def dry_run_objects(request: DeployRequest, adapter_image: str | None = None) -> list[Obj]:
    """The MCPServer plus what the controller will apply for it."""
    obj, server = validated_mcpserver(request)
    settings = render.RenderSettings(adapter_image=adapter_image) if adapter_image else render.RenderSettings()
    return [obj, *render.render(server, settings)]


# ------------------------------------------------------------------------------------------------------------------
# apply and wait


def conditions_summary(obj: Obj) -> str:
    parts = []
    for type_ in spec.CONDITION_TYPES:
        cond = condition(obj, type_)
        if cond is None:
            parts.append(f"{type_}=?")
        else:
            parts.append(f"{type_}={cond.get('status')}"
                         + (f" ({cond.get('reason')})" if cond.get("status") != "True" else ""))
    return ", ".join(parts)


def failing_condition(obj: Obj) -> Obj | None:
    """The first condition (in Accepted, ResolvedRefs, Programmed, Ready order) that is not True."""
    for type_ in spec.CONDITION_TYPES:
        cond = condition(obj, type_)
        if cond is None or cond.get("status") != "True":
            return cond or {"type": type_, "status": "Unknown", "reason": "NotReported",
                            "message": "the controller has not reported it yet: is the kmcp controller running "
                                       "(kmcp install)?"}
    return None


async def failure_report(client: kube.Kube, obj: Obj, headline: str) -> str:
    meta = obj.get("metadata") or {}
    lines = [headline]
    cond = failing_condition(obj)
    if cond is not None:
        lines.append(f"  {cond.get('type')}={cond.get('status')} {cond.get('reason', '')}: {cond.get('message', '')}")
    events = await recent_events(client, spec.KIND, meta.get("name", ""), meta.get("namespace", ""))
    if events:
        lines.append("  recent events:")
        lines += event_lines(events)
    lines.append(f"  more: kmcp status {meta.get('name')} -n {meta.get('namespace')}")
    return "\n".join(lines)


def ready(obj: Obj) -> bool:
    cond = condition(obj, "Ready")
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation", 0)
    return bool(cond and cond.get("status") == "True" and status.get("observedGeneration", 0) >= generation)


async def apply_mcpserver(client: kube.Kube, obj: Obj) -> Obj:
    try:
        return await client.apply(obj, resource=kube.MCPSERVERS)
    except kube.NotFound:
        raise CommandFailed("the cluster does not serve MCPServers (kagent.dev/v1alpha1): install the CRD and the "
                            "controller first with `kmcp install`") from None
    except kube.Invalid as error:
        raise CommandFailed(f"the apiserver rejected the MCPServer: {error.message}") from None


async def wait_ready(client: kube.Kube, name: str, namespace: str, within: float, progress: Progress, *,
                     diagnose_after: float | None = None) -> Obj:
    """Follow the MCPServer (a watch: each change as it happens) until Ready; Accepted=False fails at once (the spec
    will not change by itself). With ``diagnose_after``, once Programmed that long without being Ready, a missing
    link in the cluster (no node, no scheduler, an image that cannot be pulled: :mod:`kmcp.commands.podchain`)
    fails it too, naming where to look."""
    started = trio.current_time()
    programmed_at: float | None = None
    checked_at = -math.inf
    obj: Obj = {}
    async with watching(client, kube.MCPSERVERS, namespace, name) as watched:
        with trio.move_on_after(within):
            while True:
                found = watched.get()
                if found is None:
                    progress.done()
                    raise CommandFailed(f"mcpserver {namespace}/{name} was deleted while waiting for it to be Ready")
                obj = found
                if ready(obj):
                    progress.done(f"mcpserver {namespace}/{name} is Ready")
                    return obj
                now = trio.current_time()
                if (condition(obj, "Programmed") or {}).get("status") == "True" and diagnose_after is not None:
                    programmed_at = now if programmed_at is None else programmed_at
                    if now - programmed_at >= diagnose_after and now - checked_at >= 2:
                        checked_at = now
                        link = await find_stuck_link(client, name, namespace)
                        if link is not None:
                            progress.done()
                            raise CommandFailed(stuck_report(f"mcpserver {namespace}/{name}", name, namespace,
                                                             link))
                accepted = condition(obj, "Accepted")
                generation = (obj.get("metadata") or {}).get("generation", 0)
                if accepted and accepted.get("status") == "False" and \
                        accepted.get("observedGeneration", generation) >= generation:
                    progress.done()
                    raise CommandFailed(await failure_report(client, obj,
                                                             f"mcpserver {namespace}/{name} was not accepted"))
                summary = conditions_summary(obj)
                elapsed = int(trio.current_time() - started)
                progress.update(f"waiting for mcpserver {namespace}/{name} to be Ready: {summary} [{elapsed}s]",
                                key=summary)
                await watched.changed(within=1.0)  # a change, or a second on the clock
    progress.done()
    raise CommandFailed(await failure_report(
        client, obj, f"timed out after {within:g}s waiting for mcpserver {namespace}/{name} to be Ready"))


def inspector_settings(name: str, namespace: str, port: int = spec.DEFAULT_PORT) -> str:
    return (f"MCP Inspector settings (after `kmcp port-forward {name} -n {namespace}`):\n"
            f"  Transport Type: Streamable HTTP\n"
            f"  URL: http://127.0.0.1:{port}/mcp\n")


async def deploy(client: kube.Kube, obj: Obj, *, wait: bool, within: float) -> Obj:
    meta = obj["metadata"]
    live = await apply_mcpserver(client, obj)
    print(f"mcpserver {meta['namespace']}/{meta['name']} applied (generation "
          f"{(live.get('metadata') or {}).get('generation', '?')})", flush=True)
    if not wait:
        return live
    return await wait_ready(client, meta["name"], meta["namespace"], within, Progress(),
                            diagnose_after=DIAGNOSE_AFTER)


def print_objects(objects: list[Obj], output: str) -> None:
    if output == "json":
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(
            {"apiVersion": "v1", "kind": "List", "items": objects}), indent=2).decode() + "\n")
    else:
        sys.stdout.write(render.to_yaml(objects))
