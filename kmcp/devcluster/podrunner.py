"""Run a rendered stdio MCPServer pod as local processes: the kmcp-adapter sidecar and the wrapped mcp-server.

Where no kubelet exists (tests, ``kmcp dev up``), this stands in for one: it starts the containers of the pod
template the controller rendered — the adapter with its own args, the mcp-server container's command
``/bin/sh /kmcp/serve.sh CMD ARGS`` — with ``/kmcp`` replaced by a local directory and ``:PORT`` listens bound
to loopback. Images are not pulled: CMD must exist on this machine. Like a kubelet, it starts the sidecar first,
waits for its startup probe, then the main container, and restarts either one when it exits.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from kmcp.httpprobe import http_status
from kmcp.podcontract import ADAPTER_CONTAINER, BRIDGE_SCRIPT, SERVER_CONTAINER
from kmcp.processes import stop_process

LOCAL_POD_IP = "127.0.0.1"  # what status.podIP means here: the pod's ports are bound to loopback
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class PodSpecError(ValueError):
    """The pod template is not one the local runner can run (e.g. an http MCPServer)."""


@dataclass(frozen=True)
class LocalContainer:
    name: str
    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class LocalPod:
    """The two processes of a stdio MCPServer pod, translated to this machine."""

    adapter: LocalContainer
    server: LocalContainer
    port: int
    bridge_dir: Path

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"


@dataclass
class RunnerState:
    """What the runner has seen, for callers that report availability (e.g. a Deployment's status)."""

    adapter_starts: int = 0
    server_starts: int = 0
    ready: bool = False
    ready_changed: trio.Event = field(default_factory=trio.Event)

    def set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            self.ready_changed.set()
            self.ready_changed = trio.Event()


def _container(pod_spec: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    for container in pod_spec.get(key, []):
        if container.get("name") == name:
            return dict(container)
    raise PodSpecError(f"pod template has no {key[:-1]} named {name!r}: only stdio MCPServers run locally")


def _env(container: Mapping[str, Any], secret_env: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = (source.get("secretRef") or source.get("configMapRef") or {}).get("name")
        if name is not None:
            env.update(secret_env.get(name, {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        source = item.get("valueFrom") or {}
        if (source.get("fieldRef") or {}).get("fieldPath") == "status.podIP":
            env[item["name"]] = LOCAL_POD_IP
        key_ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
        value = secret_env.get(key_ref.get("name", ""), {}).get(key_ref.get("key", ""))
        if value is not None:  # a missing optional key leaves the variable unset, as a kubelet does
            env[item["name"]] = value
    return env


def _expand(value: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` in command and args, like a kubelet: defined variables are substituted, others left as is."""
    return _REFERENCE.sub(lambda match: env.get(match.group(1), match.group(0)), value)


def translate(deployment: Mapping[str, Any], workdir: Path, port: int,
              adapter_command: Sequence[str] | None = None,
              secret_env: Mapping[str, Mapping[str, str]] | None = None) -> LocalPod:
    """Map the pod template onto local paths and a loopback port. Pure apart from computing paths."""
    pod_spec = deployment["spec"]["template"]["spec"]
    adapter = _container(pod_spec, "initContainers", ADAPTER_CONTAINER)
    server = _container(pod_spec, "containers", SERVER_CONTAINER)
    bridge_dir = workdir / "kmcp"
    secrets = secret_env or {}
    adapter_env = _env(adapter, secrets)
    args = [_expand(str(a), adapter_env) for a in adapter.get("args", [])]
    for index, value in enumerate(args[:-1]):
        if value == "--listen":
            args[index + 1] = f"127.0.0.1:{port}"
        elif value == "--bridge":
            args[index + 1] = str(bridge_dir)
    command = list(adapter_command or [sys.executable, "-m", "kmcp"])
    if args[:1] == ["adapter"] and command[-1:] == ["adapter"]:
        args = args[1:]
    server_command = [str(c) for c in server.get("command", [])] + [str(a) for a in server.get("args", [])]
    if server_command[:2] != ["/bin/sh", BRIDGE_SCRIPT]:
        raise PodSpecError("mcp-server does not run through /kmcp/serve.sh: not a kmcp stdio pod")
    server_argv = ["/bin/sh", str(bridge_dir / "serve.sh"), *server_command[2:]]
    return LocalPod(
        adapter=LocalContainer(ADAPTER_CONTAINER, [*command, *args], adapter_env),
        server=LocalContainer(SERVER_CONTAINER, server_argv, _env(server, secrets)),
        port=port,
        bridge_dir=bridge_dir,
    )


async def _healthy(port: int) -> bool:
    """/health answers 200, asked as a kubelet's httpGet probe asks."""
    return await http_status(port, "/health", within=2) == 200


async def _run_container(container: LocalContainer, state: RunnerState, log_prefix: bytes,
                         *, task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED) -> None:
    """Run one container, restarting it with back-off (restartPolicy: Always)."""
    delay = 0.5
    first = True
    while True:
        env = {**os.environ, **container.env}
        process = await trio.lowlevel.open_process(container.argv, env=env, start_new_session=True)
        if container.name == ADAPTER_CONTAINER:
            state.adapter_starts += 1
        else:
            state.server_starts += 1
        if first:
            task_status.started(process)
            first = False
        try:
            await process.wait()
        finally:
            if process.returncode is None:
                with trio.CancelScope(shield=True):
                    await _stop(process)
        sys.stderr.buffer.write(log_prefix + f" exited with {process.returncode}; restarting\n".encode())
        sys.stderr.flush()
        await trio.sleep(delay)
        delay = min(delay * 2, 10.0)


async def _stop(process: trio.Process, grace: float = 5.0) -> None:
    await stop_process(process, grace, group=True)


async def run_pod(pod: LocalPod, state: RunnerState | None = None, startup_timeout: float = 60.0,
                  *, task_status: trio.TaskStatus[RunnerState] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the pod until cancelled; reports started once the adapter is healthy and the server is running.

    trio.TooSlowError (raised outside the nursery, so callers catch it plainly) when the startup probe never passes.
    """
    state = state or RunnerState()
    async with trio.open_nursery() as nursery:
        await nursery.start(_run_container, pod.adapter, state, b"[kmcp-adapter]")
        with trio.move_on_after(startup_timeout) as startup:
            while True:  # startup probe: poll, as a kubelet does
                if await _healthy(pod.port):
                    break
                await trio.sleep(0.1)
        if startup.cancelled_caught:
            nursery.cancel_scope.cancel()
        else:
            await nursery.start(_run_container, pod.server, state, b"[mcp-server]")
            state.set_ready(True)
            task_status.started(state)
            while True:  # readiness probe
                await trio.sleep(1)
                state.set_ready(await _healthy(pod.port))
    raise trio.TooSlowError(f"the adapter did not answer {pod.health_url} within {startup_timeout:g}s")
