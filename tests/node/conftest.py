"""The session's real node (see DESIGN.md, "Tests against a real Kubernetes API"): a control plane with every
controller plus containerd, kubelet, kube-scheduler and kube-proxy, the kmcp image built locally and imported.

Every test here gets the ``node`` marker. Where the machine cannot run a node (not root, no containerd) they are
skipped with the one-line reason; under CI (``CI=true``) as root a missing prerequisite fails instead, so CI never
passes by skipping what it is meant to prove.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kmcp import install
from kmcp.devcluster import hoststate
from kmcp.devcluster.images import ImageArchive, kmcp_image
from kmcp.devcluster.node import DevCluster, NodeError, unsupported_reason
from tests.controller.conftest import CRD, ControllerProcess
from tests.kubehelpers import Kube, service_account_kubeconfig, wait_for

Obj = dict[str, Any]
PROTOCOL = "2025-06-18"


def node_skip_reason() -> str | None:
    reason = unsupported_reason()
    if reason and os.environ.get("CI") == "true" and os.geteuid() == 0:
        pytest.fail(f"CI runs as root here and must run the node tests, but: {reason}", pytrace=False)
    return reason


@pytest.fixture(scope="session")
def kmcp_node_image(zipapp: Path) -> ImageArchive:
    """The kmcp image (Debian python3 + this checkout's zipapp), cached by the zipapp's digest."""
    return kmcp_image(zipapp)


@pytest.fixture(scope="session")
def dev_cluster(zipapp: Path) -> Iterator[DevCluster]:
    """One control plane + node for the session. At the end, the machine must be as it was before."""
    reason = node_skip_reason()
    if reason:
        pytest.skip(reason)
    image = kmcp_image(zipapp)
    # A fixed state directory: a crashed or killed earlier session left its journal there, and this start
    # finishes that session's teardown before recording the host (fresh: a new cluster all the same).
    cluster = DevCluster(images=[image], workdir=SESSION_NODE_DIR, fresh=True)
    try:
        if cluster.node.recover():
            NODE_NOTICES.append(f"kmcp node: {cluster.node.recovered}")
    except NodeError as err:
        cluster.stop()
        pytest.fail(f"the dev node did not start: {err}", pytrace=False)
    before = hoststate.HostState.record()
    try:
        cluster.start()
    except NodeError as err:
        pytest.fail(f"the dev node did not start: {err}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
    assert cluster.node.restore_problems == []
    assert_host_restored(before, hoststate.HostState.record())
    shutil.rmtree(SESSION_NODE_DIR, ignore_errors=True)


SESSION_NODE_DIR = Path(tempfile.gettempdir()) / "kmcp-test-node"
NODE_NOTICES: list[str] = []  # printed in the session summary


def assert_host_restored(before: hoststate.HostState, after: hoststate.HostState) -> None:
    """What a node changes machine-wide is back as it was: sysctls, nft tables, interfaces, mounts, cgroups."""
    assert after.sysctls == before.sysctls
    assert set(after.nft) == set(before.nft)
    assert after.links == before.links
    assert after.mounts == before.mounts
    assert after.cgroups == before.cgroups


@pytest.fixture(scope="session")
def node_kube(dev_cluster: DevCluster) -> Iterator[Kube]:
    with Kube.from_kubeconfig(dev_cluster.kubeconfig) as client:
        yield client


class McpClient:
    """Streamable HTTP, synchronously: enough to initialize a session and call tools on a real pod."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.http = httpx.Client(timeout=timeout, trust_env=False)
        self.session: str | None = None
        self.server_info: Obj = {}
        self._id = 0

    def __enter__(self) -> McpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def post(self, message: Obj) -> httpx.Response:
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": PROTOCOL}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        return self.http.post(self.url, json=message, headers=headers)

    def request(self, method: str, params: Obj) -> Obj:
        self._id += 1
        resp = self.post({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        resp.raise_for_status()
        self.session = resp.headers.get("mcp-session-id", self.session)
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            data = [line[5:].strip() for line in resp.text.splitlines() if line.startswith("data:")]
            return dict(httpx.Response(200, content=data[-1]).json())
        return dict(resp.json())

    def initialize(self) -> Obj:
        answer = self.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                             "clientInfo": {"name": "kmcp-node-tests", "version": "1"}})
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}).raise_for_status()
        self.server_info = dict(answer.get("result", {}).get("serverInfo", {}))
        return answer

    def call_tool(self, name: str, arguments: Obj) -> Obj:
        return self.request("tools/call", {"name": name, "arguments": arguments})


@pytest.fixture
def node_namespace(node_kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the node's cluster, named after the test; deleted (not awaited) afterwards."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-") or "test"
    name = f"{stem}-{secrets.token_hex(3)}"
    node_kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_for(lambda: node_kube.read("v1", "ServiceAccount", "default", name), description="default ServiceAccount")
    try:
        yield name
    finally:
        node_kube.delete(f"/api/v1/namespaces/{name}", check=False)


def echo_mcpserver(name: str, namespace: str, image: str, **deployment: Any) -> Obj:
    """A stdio MCPServer whose server is the bundled example (``kmcp dev echo-server``) in the kmcp image."""
    return {"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"transportType": "stdio", "stdioTransport": {},
                     "deployment": {"image": image, "imagePullPolicy": "IfNotPresent", "cmd": "kmcp",
                                    "args": ["dev", "echo-server"], "port": 3000, **deployment}}}


def deployment_available(kube: Kube, name: str, namespace: str) -> Obj | None:
    dep = kube.read("apps/v1", "Deployment", name, namespace)
    for cond in ((dep or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == "Available" and cond["status"] == "True":
            return dep
    return None


def ready_pods(kube: Kube, name: str, namespace: str) -> list[Obj]:
    pods = kube.items("v1", "Pod", namespace, labelSelector=f"app.kubernetes.io/instance={name}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures the node tests measured (bench/RESULTS.md quotes them), one line each."""
    from tests.node.test_node import TIMINGS

    for line in NODE_NOTICES:
        terminalreporter.write_line(line)
    if TIMINGS:
        terminalreporter.section("kmcp node timings")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {seconds:.2f} s")


@pytest.fixture(scope="session")
def node_controller(node_kube: Kube, kmcp_node_image: ImageArchive, zipapp: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """`kmcp controller` for every namespace of the node's cluster, as the install's own ServiceAccount (the CRD
    and the install RBAC applied), with the locally built image as the adapter image."""
    node_kube.apply(CRD)
    # The CRD may have just been deleted and created again (tests/node/test_install.py uninstalls): wait until
    # it is Established and served, not only listed in discovery.
    node_kube.wait_for_condition("apiextensions.k8s.io/v1", "CustomResourceDefinition", "mcpservers.kagent.dev",
                                 "Established")
    wait_for(lambda: node_kube.get("/apis/kagent.dev/v1alpha1/mcpservers", check=False).status_code == 200 or None,
             timeout=60, description="MCPServers served")
    node_kube.apply([o for o in install.install_objects() if o["kind"] != "Deployment"])
    wait_for(lambda: node_kube.read("v1", "ServiceAccount", install.SERVICE_ACCOUNT, "kmcp-system"),
             description="the controller's ServiceAccount")
    workdir = tmp_path_factory.mktemp("node-controller")
    kubeconfig = service_account_kubeconfig(node_kube, "kmcp-system", install.SERVICE_ACCOUNT,
                                            workdir / "controller.kubeconfig", expiration_seconds=7200)
    controller = ControllerProcess(zipapp, kubeconfig, workdir, "--resync-period=5s", "--metrics-secure=false",
                                   name="node-controller")
    controller.env["KMCP_ADAPTER_IMAGE"] = kmcp_node_image.name
    # Its first start unpacks the zipapp (shiv): over a minute when the shared VM is loaded (load 8-17 seen).
    controller.start(timeout=180)
    RUNNING_NODE_CONTROLLERS.append(controller)
    try:
        yield controller
    finally:
        RUNNING_NODE_CONTROLLERS.remove(controller)
        controller.stop()
        controller.assert_no_forbidden()


RUNNING_NODE_CONTROLLERS: list[ControllerProcess] = []  # the host-run controller, while it exists


def container_log(kube: Kube, pod: Obj, container: str) -> str:
    meta = pod["metadata"]
    return kube.get(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/log",
                    params={"container": container}).text


def service_url(kube: Kube, name: str, namespace: str) -> str:
    svc = kube.read("v1", "Service", name, namespace)
    assert svc is not None
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/mcp"


def first_session(url: str, timeout: float = 15.0) -> McpClient:
    """An initialized session at ``url`` once the Service answers. A Ready pod's endpoint reaches kube-proxy's
    rules a moment later (EndpointSlice controller, then a kube-proxy sync); until then the Service refuses."""
    deadline = time.monotonic() + timeout
    while True:
        client = McpClient(url)
        try:
            client.initialize()
            return client
        except httpx.ConnectError:
            client.http.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
