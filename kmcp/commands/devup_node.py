"""``kmcp dev up`` on the real node (see :mod:`kmcp.commands.devmode` for when): what the guide does on kind, here.

A control plane with every controller plus one node (:class:`kmcp.devcluster.node.DevCluster`: containerd, kubelet,
kube-scheduler, kube-proxy, CoreDNS), the kmcp image built from this very kmcp (its zipapp, or one built from the
checkout) and imported into the node's containerd; then what ``kmcp install`` does (CRD, namespace, ServiceAccount,
RBAC and the controller Deployment running that image), and the example MCPServer, whose pod the kubelet runs: the
adapter sidecar and ``mcp-server`` in one pod. Its Service's ClusterIP answers from this machine through
kube-proxy; ``127.0.0.1:--port`` relays to it, so the URL printed in either mode works, and follows the Service when
its pods are replaced.

Each start is a fresh cluster in ``DIR/node-cluster``: the node's containerd (and so every image imported into it)
lives only as long as the node, so kept objects would point at images that are gone. Stopping drains the pods, stops
every process by its pid and puts the machine back as it was (:meth:`kmcp.devcluster.node.Node.stop`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

import kmcp
from kmcp import install, kube, spec
from kmcp.commands.cluster import Progress, api_errors
from kmcp.commands.deploy import wait_ready
from kmcp.commands.devbuild import build_binaries
from kmcp.commands.devmode import ModeChoice
from kmcp.commands.devup import EXAMPLE_NAME, EXAMPLE_NAMESPACE, DevSettings, check_example, say, write_state
from kmcp.commands.install import InstallRequest, apply_install, wait_deployment_available, wait_namespace_usable
from kmcp.commands.run import kmcp_command, kmcp_env
from kmcp.errors import CommandFailed

Obj = dict[str, Any]
CLUSTER_DIR = "node-cluster"


def example_mcpserver(image: str) -> Obj:
    """The bundled echo server (``kmcp dev echo-server``) inside the kmcp image: the same example as the pod runner's,
    with an image the node has."""
    return {
        "apiVersion": spec.API_VERSION, "kind": spec.KIND,
        "metadata": {"name": EXAMPLE_NAME, "namespace": EXAMPLE_NAMESPACE},
        "spec": {"transportType": "stdio", "stdioTransport": {"warmPoolSize": 1},
                 "deployment": {"image": image, "imagePullPolicy": "IfNotPresent", "cmd": "kmcp",
                                "args": ["dev", "echo-server"]}},
    }


# ------------------------------------------------------------------------------------------------------------------
# the image: this kmcp, as a zipapp


def _source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted([*(root / "kmcp").rglob("*"), root / "pyproject.toml"]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def kmcp_zipapp(directory: Path) -> Path:
    """The zipapp this kmcp runs from; from a source checkout, one built with its build.py (cached in ``directory``
    by the sources' digest: the node's controller and adapter must run this code, not some older dist/kmcp)."""
    command = kmcp_command()
    if command[1] != "-m":
        return Path(command[1])
    root = Path(kmcp.__file__).resolve().parent.parent
    builder = root / "build.py"
    if not builder.is_file():
        raise CommandFailed("the real node runs kmcp from an image made from its zipapp: run dist/kmcp "
                            "(python build.py), or use --node local")
    out = directory / "zipapp" / f"kmcp-{_source_digest(root)}.pyz"
    if out.is_file():
        return out
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(out.parent)
    say(f"building the zipapp of this checkout for the kmcp image ({out}, ~40 s)")
    proc = subprocess.run([sys.executable, str(builder), "-o", str(out)], capture_output=True, text=True, cwd=root)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise CommandFailed(f"building the zipapp for the kmcp image failed: {tail}")
    return out


# ------------------------------------------------------------------------------------------------------------------
# 127.0.0.1:PORT -> the Service


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, cancel: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
        await sink.send_eof()  # half-close: the other direction may still be answering
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        cancel.cancel()


async def relay_connection(client: trio.SocketStream, target: tuple[str, int]) -> None:
    """One local connection through one fresh connection to ``target`` (kube-proxy picks the pod per connection)."""
    async with client:
        try:
            upstream = await trio.open_tcp_stream(*target)
        except OSError:
            return  # the client sees its connection closed, as with a Service without endpoints
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, upstream, nursery.cancel_scope)
            nursery.start_soon(_pump, upstream, client, nursery.cancel_scope)


async def serve_relay(listeners: list[trio.SocketListener], target: tuple[str, int]) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        await relay_connection(stream, target)

    await trio.serve_listeners(handle, listeners)


async def _listen(port: int) -> list[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(port, host="127.0.0.1")
    except OSError:
        raise CommandFailed(f"port {port} on 127.0.0.1 is in use: pick another with --port") from None


# ------------------------------------------------------------------------------------------------------------------
# up


async def _service_address(client: kube.Kube) -> tuple[str, int]:
    service = await client.get(kube.Resource("", "v1", "services", kind="Service"), EXAMPLE_NAME, EXAMPLE_NAMESPACE)
    return str(service["spec"]["clusterIP"]), int(service["spec"]["ports"][0]["port"])


async def _wait_service(address: tuple[str, int], within: float) -> None:
    """A Ready pod reaches kube-proxy's rules a moment after Ready (EndpointSlice, then a sync): wait for them."""
    with trio.move_on_after(within):
        while True:
            with contextlib.suppress(OSError):
                stream = await trio.open_tcp_stream(*address)
                await stream.aclose()
                return
            await trio.sleep(0.1)
    raise CommandFailed(f"the example's Service {address[0]}:{address[1]} did not answer within {within:g}s")


async def _up(settings: DevSettings, choice: ModeChoice, image: str, admin_kubeconfig: Path, client: kube.Kube,
              listeners: list[trio.SocketListener], nursery: trio.Nursery, started: float) -> None:
    request = InstallRequest(image=image, timeout=settings.startup_timeout)
    installing = time.monotonic()
    await wait_namespace_usable(client, request.namespace, settings.startup_timeout)
    await apply_install(client, request, out=io.StringIO())
    say(f"kmcp install: the CRD, namespace {request.namespace}, ServiceAccount, RBAC and Deployment "
        f"{install.NAME} (image {image})")
    await wait_deployment_available(client, request.namespace, install.NAME, settings.startup_timeout, Progress())

    applied = time.monotonic()
    await client.apply(example_mcpserver(image), resource=kube.MCPSERVERS)
    await wait_ready(client, EXAMPLE_NAME, EXAMPLE_NAMESPACE, settings.startup_timeout, Progress())
    ready_at = time.monotonic()
    address = await _service_address(client)
    await _wait_service(address, 30)
    nursery.start_soon(serve_relay, listeners, address)

    service_url = f"http://{address[0]}:{address[1]}/mcp"
    url = f"http://127.0.0.1:{settings.port}/mcp"
    say(f"\nkmcp dev is up in {time.monotonic() - started:.1f}s on the real node: mcpserver "
        f"{EXAMPLE_NAMESPACE}/{EXAMPLE_NAME} is Ready (controller installed and Available in "
        f"{applied - installing:.1f}s, MCPServer apply -> Ready {ready_at - applied:.1f}s)")
    say(f"  Service:         {service_url}   (ClusterIP, through kube-proxy; in pods: "
        f"http://{EXAMPLE_NAME}.{EXAMPLE_NAMESPACE}.svc.cluster.local:{address[1]}/mcp)")
    say(f"  Streamable HTTP: {url}   (relayed to the Service)")
    say(f"  SSE:             http://127.0.0.1:{settings.port}/sse")
    say(f"  export KUBECONFIG={admin_kubeconfig}")
    say(f"  then: kubectl get pods -n {install.DEFAULT_NAMESPACE}   |   kubectl logs deployment/{EXAMPLE_NAME} "
        f"-c mcp-server   |   kmcp status {EXAMPLE_NAME}")
    ready = {"phase": "ready", "url": url, "service_url": service_url, "kubeconfig": str(admin_kubeconfig),
             "port": settings.port, "mode": choice.mode.value}
    if settings.check:
        await trio.to_thread.run_sync(write_state, settings, ready)
        for line in await check_example(service_url):
            say(line)
        say(f"Ready -> tools/list and tools/call answered in {time.monotonic() - ready_at:.1f}s")
        return
    say(("kmcp dev down" if settings.detached else "Ctrl-C (or kmcp dev down)")
        + " stops everything and puts the machine back as it was.")
    await trio.to_thread.run_sync(write_state, settings, ready)  # after the last line: --detach shows them all
    await trio.sleep_forever()


async def node_dev_up(settings: DevSettings, choice: ModeChoice) -> int:
    listeners = await _listen(settings.port)  # held from now on, so the node's minute is not spent in vain
    try:
        await _build_and_run(settings, choice, listeners)
    finally:
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await listener.aclose()
    return 0


async def _build_and_run(settings: DevSettings, choice: ModeChoice, listeners: list[trio.SocketListener]) -> None:
    from kmcp.devcluster.binaries import Toolchain, default_cache_root
    from kmcp.devcluster.images import ImageBuildError, kmcp_image
    from kmcp.devcluster.node import DevCluster, NodeError

    started = time.monotonic()
    await trio.Path(settings.directory).mkdir(parents=True, exist_ok=True)
    # Building is a stoppable child process (kmcp dev down stops it); the phase lifts --detach's deadline.
    await trio.to_thread.run_sync(write_state, settings, {"phase": "building"})
    if choice.builds or not Toolchain(default_cache_root()).complete():
        await build_binaries([*kmcp_command(), "dev", "build", "--node"], kmcp_env(), say,
                             what="the control plane's and the node's binaries and the image root filesystem")
    try:
        zipapp = await trio.to_thread.run_sync(kmcp_zipapp, settings.directory)
        image = await trio.to_thread.run_sync(kmcp_image, zipapp)
    except ImageBuildError as error:
        raise CommandFailed(f"the kmcp image for the node: {error}") from None
    await trio.to_thread.run_sync(write_state, settings, {"phase": "starting"})
    workdir = settings.directory / CLUSTER_DIR
    # fresh: a new cluster each start; a previous run of this directory that was killed is first cleaned up.
    cluster = DevCluster(workdir=workdir, images=[image], fresh=True)
    try:
        await trio.to_thread.run_sync(cluster.node.recover)
    except NodeError as error:
        await trio.to_thread.run_sync(cluster.stop)  # only its empty temp dir to remove
        raise CommandFailed(f"the dev node did not start: {error}") from None
    if cluster.node.recovered:
        say(f"kmcp dev node: {cluster.node.recovered}")
    say(f"starting the control plane and the node: containerd, kubelet, kube-scheduler, kube-proxy, CoreDNS "
        f"(state in {workdir})")
    try:
        try:
            await trio.to_thread.run_sync(cluster.start)
        except (NodeError, RuntimeError, OSError, subprocess.CalledProcessError) as error:
            raise CommandFailed(f"the dev node did not start ({error}); `kmcp dev up --node local` runs the pod "
                                "runner instead") from None
        steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in cluster.node.timings.items())
        say(f"node Ready in {cluster.startup_seconds:.1f}s (control plane "
            f"{cluster.control_plane.startup_seconds:.1f}s; {steps})")
        config = await trio.to_thread.run_sync(kube.load_config, str(cluster.kubeconfig))
        with api_errors(config.server):
            async with kube.Kube(config) as client, trio.open_nursery() as nursery:
                await _up(settings, choice, image.name, cluster.kubeconfig, client, listeners, nursery, started)
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            say("stopping the node and the control plane")
            await trio.to_thread.run_sync(cluster.stop)
