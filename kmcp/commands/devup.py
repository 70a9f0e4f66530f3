"""``kmcp dev up``: a whole kmcp on this machine with one command, no Docker or kubelet needed.

It starts the cached local control plane (etcd + kube-apiserver + kube-controller-manager, state kept in
``--dir``), installs the CRD and the controller's RBAC, runs ``kmcp controller`` as the install's ServiceAccount,
applies an example stdio MCPServer (the bundled :mod:`kmcp.devcluster.examples_server`, run by this same Python),
runs the pod the controller rendered with :mod:`kmcp.devcluster.podrunner` on 127.0.0.1, and writes the Deployment's
status as a kubelet would, so the controller reports the MCPServer Ready. ``--check`` then talks MCP to it and exits.

That is the local pod runner mode. Where this machine can run a real node, the pod runs there instead
(:mod:`kmcp.commands.devup_node`); :mod:`kmcp.commands.devmode` chooses, and says which and why in one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from kmcp import crd, install, kube, spec
from kmcp.commands import CommandFailed
from kmcp.commands.cluster import Progress, api_errors, condition
from kmcp.commands.deploy import wait_ready
from kmcp.commands.devbuild import build_binaries
from kmcp.commands.devpod import LocalKubelet
from kmcp.commands.install import wait_crd_established, wait_namespace_usable
from kmcp.commands.ports import port_free
from kmcp.commands.run import kmcp_command, kmcp_env
from kmcp.errors import plain_errors
from kmcp.processes import stop_process

Obj = dict[str, Any]
EXAMPLE_NAME = "echo"
EXAMPLE_NAMESPACE = "default"
TOKEN_SECONDS = 7 * 24 * 3600


def default_directory() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "kmcp" / "dev"


@dataclass(frozen=True)
class DevSettings:
    directory: Path
    port: int = spec.DEFAULT_PORT
    check: bool = False
    startup_timeout: float = 120.0
    detached: bool = False  # this process is the background half of `kmcp dev up --detach`
    node: str = "auto"  # auto | real | local: where the example's pod runs (kmcp.commands.devmode)

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"


def example_mcpserver() -> Obj:
    """An MCPServer whose command is this Python running the bundled echo server (works from the zipapp too)."""
    command = kmcp_command()
    return {
        "apiVersion": spec.API_VERSION, "kind": spec.KIND,
        "metadata": {"name": EXAMPLE_NAME, "namespace": EXAMPLE_NAMESPACE},
        "spec": {"transportType": "stdio", "stdioTransport": {"warmPoolSize": 1},
                 "deployment": {"image": "kmcp.local/examples:echo", "cmd": command[0],
                                "args": [*command[1:], "dev", "echo-server"]}},
    }


# ------------------------------------------------------------------------------------------------------------------
# --check: the CLI's MCP client (kmcp.commands.mcpcheck), 2026-07-28 first


async def check_example(url: str) -> list[str]:
    """List the example's tools and call echo; the report lines, the era used first."""
    from kmcp.commands.mcpcheck import check_mcp

    seen = await check_mcp(url, ("echo", {"message": "hello from kmcp dev up"}))
    lines = [seen.summary(), f"  server {seen.server.get('name')} {seen.server.get('version', '')}".rstrip()]
    lines += [f"  {tool.get('name', ''):<8} {tool.get('description', '')}" for tool in seen.tools]
    lines.append(f"tools/call echo -> {seen.call_text!r}")
    return lines


# ------------------------------------------------------------------------------------------------------------------
# up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _controller_kubeconfig(client: kube.Kube, server: str, ca_pem: bytes, path: Path) -> Path:
    """A kubeconfig with a TokenRequest token of the install's ServiceAccount: the controller gets only its RBAC."""
    from kmcp.devcluster.control_plane import kubeconfig_yaml

    sa_path = f"/api/v1/namespaces/{install.DEFAULT_NAMESPACE}/serviceaccounts/{install.SERVICE_ACCOUNT}/token"
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_SECONDS}}
    token = (await client.request("POST", sa_path, body=body))["status"]["token"]
    user = f"system:serviceaccount:{install.DEFAULT_NAMESPACE}:{install.SERVICE_ACCOUNT}"
    text = kubeconfig_yaml(server, ca_pem, user, token=token, namespace=install.DEFAULT_NAMESPACE)
    await trio.Path(path).write_text(text)
    await trio.Path(path).chmod(0o600)
    return path


async def _run_controller(settings: DevSettings, kubeconfig: Path, probe_port: int) -> None:
    log_path = settings.log_dir / "controller.log"
    argv = [*kmcp_command(), "controller", f"--kubeconfig={kubeconfig}",
            f"--health-probe-bind-address=127.0.0.1:{probe_port}", "--metrics-bind-address=0"]
    with open(log_path, "ab") as log:  # noqa: ASYNC230 (opening a log file for a child does not block)
        process = await trio.lowlevel.open_process(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                   env=kmcp_env(), start_new_session=True)
    try:
        code = await process.wait()
    finally:
        await stop_process(process, 10, group=True)
    raise CommandFailed(f"the controller exited with code {code}; see {log_path}")


async def _wait_http_ok(url: str, within: float, what: str) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        with trio.move_on_after(within):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                await trio.sleep(0.1)
    raise CommandFailed(f"{what} did not become ready within {within:g}s")


async def _programmed_deployment(client: kube.Kube, within: float) -> Obj:
    """The Deployment the controller rendered for the current generation of the example."""
    with trio.move_on_after(within):
        while True:
            server = await client.get(kube.MCPSERVERS, EXAMPLE_NAME, EXAMPLE_NAMESPACE)
            programmed = condition(server, "Programmed")
            generation = server["metadata"].get("generation", 0)
            if programmed and programmed.get("status") == "True" and \
                    (server.get("status") or {}).get("observedGeneration", 0) >= generation:
                return await client.get(kube.DEPLOYMENTS, EXAMPLE_NAME, EXAMPLE_NAMESPACE)
            await trio.sleep(0.1)
    raise CommandFailed(f"the controller did not program mcpserver {EXAMPLE_NAMESPACE}/{EXAMPLE_NAME} "
                        f"within {within:g}s")


def say(text: str) -> None:
    print(text, flush=True)


async def dev_up(settings: DevSettings) -> int:
    from kmcp.devcluster.control_plane import ControlPlane, ControlPlaneError

    directory = settings.directory
    if not port_free(settings.port):
        raise CommandFailed(f"port {settings.port} on 127.0.0.1 is in use: pick another with --port")
    await trio.Path(settings.log_dir).mkdir(parents=True, exist_ok=True)
    pod_dir = directory / "pod"
    await trio.to_thread.run_sync(lambda: shutil.rmtree(pod_dir, ignore_errors=True))
    os.environ.update(kmcp_env())  # the pod's processes (podrunner) start `kmcp adapter` and the example from here

    started = time.monotonic()
    from kmcp.devcluster.binaries import Toolchain, default_cache_root

    if not Toolchain(default_cache_root()).complete():
        say("first run: building etcd, kube-apiserver and kube-controller-manager from Go source "
            f"(about 9 minutes, once; cached in {default_cache_root()})")
        await trio.to_thread.run_sync(write_state, settings, {"phase": "building"})
        await build_binaries([*kmcp_command(), "dev", "build"], kmcp_env(), say)
    await trio.to_thread.run_sync(write_state, settings, {"phase": "starting"})
    say(f"starting the local control plane (state in {directory / 'cluster'})")
    control_plane = ControlPlane(workdir=directory / "cluster")
    try:
        await trio.to_thread.run_sync(control_plane.start)
    except (ControlPlaneError, RuntimeError, OSError, subprocess.CalledProcessError) as error:
        raise CommandFailed(f"the local control plane did not start: {error}") from None
    try:
        say(f"control plane ready in {control_plane.startup_seconds:.1f}s: {control_plane.server}")
        config = await trio.to_thread.run_sync(kube.load_config, str(control_plane.kubeconfig))
        with api_errors(config.server):
            async with kube.Kube(config) as client, trio.open_nursery() as nursery:
                await _up(settings, control_plane.server, control_plane.ca_pem, control_plane.kubeconfig, client,
                          nursery, started)
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            say("stopping the local control plane")
            await trio.to_thread.run_sync(control_plane.stop)
    return 0


def write_state(settings: DevSettings, fields: dict[str, Any]) -> None:
    """state.json: this process and how far it got, so `kmcp dev down` finds it from the first moment on (a start
    still building can be stopped) and `--detach` knows when it is Ready. Replaced whole, never seen half-written."""
    partial = settings.state_file.with_suffix(".tmp")
    partial.write_text(json.dumps({"pid": os.getpid(), **fields}))
    partial.replace(settings.state_file)


def _forget_state(settings: DevSettings) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(settings.state_file.read_text()).get("pid") == os.getpid():
            settings.state_file.unlink()


async def _up(settings: DevSettings, server: str, ca_pem: bytes, admin_kubeconfig: Path, client: kube.Kube,
              nursery: trio.Nursery, started: float) -> None:
    crd_obj = crd.crd()
    await client.apply(crd_obj, resource=kube.Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                                       namespaced=False, kind="CustomResourceDefinition"))
    await wait_crd_established(client, crd_obj["metadata"]["name"], 60)
    from kmcp.commands.cluster import resource_of

    await wait_namespace_usable(client, install.DEFAULT_NAMESPACE, settings.startup_timeout)
    for obj in install.install_objects():
        if obj["kind"] != "Deployment":  # no kubelet to run the controller's container: it runs here instead
            await client.apply(obj, resource=resource_of(obj))
    say("installed the MCPServer CRD and the controller's namespace, ServiceAccount and RBAC")

    kubeconfig = await _controller_kubeconfig(client, server, ca_pem, settings.directory / "controller.kubeconfig")
    probe_port = _free_port()
    nursery.start_soon(_run_controller, settings, kubeconfig, probe_port)
    await _wait_http_ok(f"http://127.0.0.1:{probe_port}/readyz", settings.startup_timeout, "kmcp controller")
    say(f"kmcp controller running as ServiceAccount {install.DEFAULT_NAMESPACE}/{install.SERVICE_ACCOUNT} "
        f"(log: {settings.log_dir / 'controller.log'})")

    example = example_mcpserver()
    await client.apply(example, resource=kube.MCPSERVERS)
    deployment = await _programmed_deployment(client, settings.startup_timeout)
    kubelet = LocalKubelet(client, EXAMPLE_NAME, EXAMPLE_NAMESPACE, settings.directory / "pod", settings.port,
                           adapter_command=[*kmcp_command(), "adapter"], startup_timeout=settings.startup_timeout,
                           log=say)
    try:
        await nursery.start(kubelet.run, deployment)
    except trio.TooSlowError:
        raise CommandFailed(f"the example pod did not become healthy on 127.0.0.1:{settings.port}") from None
    await wait_ready(client, EXAMPLE_NAME, EXAMPLE_NAMESPACE, settings.startup_timeout, Progress())

    url = f"http://127.0.0.1:{settings.port}/mcp"
    say(f"\nkmcp dev is up in {time.monotonic() - started:.1f}s: mcpserver {EXAMPLE_NAMESPACE}/{EXAMPLE_NAME} "
        f"is Ready")
    say(f"  Streamable HTTP: {url}")
    say(f"  SSE:             http://127.0.0.1:{settings.port}/sse")
    say(f"  export KUBECONFIG={admin_kubeconfig}")
    say("  then: kmcp get -A   |   kmcp status echo   |   MCP Inspector: Transport Type Streamable HTTP, URL " + url)
    ready = {"phase": "ready", "url": url, "kubeconfig": str(admin_kubeconfig), "port": settings.port}
    if settings.check:
        await trio.to_thread.run_sync(write_state, settings, ready)
        for line in await check_example(url):
            say(line)
        return
    say("kmcp dev down stops everything." if settings.detached else "Ctrl-C (or kmcp dev down) stops everything.")
    await trio.to_thread.run_sync(write_state, settings, ready)  # after the last line: --detach shows them all
    await trio.sleep_forever()


def run_dev_up(settings: DevSettings) -> int:
    from kmcp.commands import devmode

    existing = running_state(settings)
    if existing is not None:
        raise CommandFailed(f"kmcp dev is already running from {settings.directory} (pid {existing['pid']}, "
                            f"{describe_state(existing)}): stop it with `kmcp dev down`")
    from kmcp.commands.devup_node import CLUSTER_DIR
    from kmcp.devcluster.hoststate import JOURNAL_NAME

    choice = devmode.choose_mode(settings.node, devmode.node_facts(settings.directory / CLUSTER_DIR / JOURNAL_NAME))
    say(choice.line())

    async def main() -> int:
        try:
            return await run_until_signalled()
        finally:
            _forget_state(settings)

    async def run_until_signalled() -> int:
        async with trio.open_nursery() as nursery:
            result: list[int] = []

            async def up() -> None:
                if choice.mode is devmode.Mode.REAL:
                    from kmcp.commands.devup_node import node_dev_up

                    result.append(await node_dev_up(settings, choice))
                else:
                    result.append(await dev_up(settings))
                nursery.cancel_scope.cancel()

            async def stop_on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        say("\nstopping kmcp dev")
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(stop_on_signal)
            nursery.start_soon(up)
        return result[0] if result else 0

    with plain_errors():
        return trio.run(main)


# ------------------------------------------------------------------------------------------------------------------
# the state file (kmcp dev down and --detach read it: kmcp.commands.devdetach)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_state(settings: DevSettings) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(settings.state_file.read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    return state if isinstance(pid, int) and pid_alive(pid) else None


def describe_state(state: dict[str, Any]) -> str:
    return str(state.get("url") or f"{state.get('phase', 'starting')}, not Ready yet")
