"""Fixtures for controller tests against the real apiserver: the CRD and the install RBAC applied once, a
kubeconfig holding a token of the install's own ServiceAccount (no admin rights), the zipapp built once, and a
helper that runs `kmcp controller` from the zipapp as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kmcp import install
from kmcp.devcluster.control_plane import free_port
from tests.kubehelpers import Kube, KubeApiError, service_account_kubeconfig, wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests" / "crd" / "kagent.dev_mcpservers.yaml"
SYSTEM_NAMESPACE = "kmcp-system"
Obj = dict[str, Any]


@pytest.fixture(scope="session")
def installed(kube: Kube) -> list[Obj]:
    """The CRD and every install object except the controller Deployment (there is no kubelet to run it)."""
    kube.apply(CRD)
    kube.resource_info("kagent.dev/v1alpha1", "MCPServer", discovery_timeout=30)
    objects = [o for o in install.install_objects() if o["kind"] != "Deployment"]
    kube.apply(objects)
    return objects


@pytest.fixture(scope="session")
def controller_kubeconfig(kube: Kube, installed: list[Obj], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig that authenticates as ServiceAccount kmcp-system/kmcp-controller-manager."""
    path = tmp_path_factory.mktemp("sa") / "controller.kubeconfig"
    wait_for(lambda: kube.read("v1", "ServiceAccount", install.SERVICE_ACCOUNT, SYSTEM_NAMESPACE),
             description="the controller's ServiceAccount")
    return service_account_kubeconfig(kube, SYSTEM_NAMESPACE, install.SERVICE_ACCOUNT, path,
                                      expiration_seconds=7200)


class ControllerProcess:
    """`kmcp controller` from the zipapp, with its JSON log in a file."""

    def __init__(self, zipapp: Path, kubeconfig: Path, workdir: Path, *args: str, name: str = "controller") -> None:
        self.probe_port = free_port()
        self.metrics_port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.argv = [
            os.path.realpath(sys.executable), "-I", str(zipapp), "controller",
            f"--kubeconfig={kubeconfig}",
            f"--health-probe-bind-address=127.0.0.1:{self.probe_port}",
            f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
            "--log-level=debug",
            *args,
        ]
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "SHIV_ROOT": str(workdir.parent / "shiv"),
                    "KMCP_ADAPTER_IMAGE": "example.test/kmcp:dev"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> ControllerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, env=self.env, cwd=self.log_path.parent)
        log.close()
        if wait_ready:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.proc.kill()  # a controller that missed its deadline must not go on reconciling others' tests
                self.proc.wait(5)
                raise
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{self.probe_port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"controller not ready:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    @property
    def metrics_url(self) -> str:
        return f"127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def log_records(self) -> list[Obj]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line})
        return out

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)

    def assert_no_forbidden(self) -> None:
        lines = [line for line in self.log().splitlines() if "forbidden" in line.lower()]
        assert not lines, f"{self.log_path}:\n" + "\n".join(lines)[:3000]


@pytest.fixture(scope="session")
def unpacked_zipapp(zipapp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zipapp, already unpacked into the SHIV_ROOT every ControllerProcess of the session uses: the first start
    extracts and byte-compiles the bundled packages (30 s and more on a loaded machine), which must not count
    against a controller's readiness wait."""
    shiv_root = tmp_path_factory.getbasetemp() / "shiv"
    subprocess.run([os.path.realpath(sys.executable), "-I", str(zipapp), "--version"], check=True,
                   capture_output=True, timeout=600,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(shiv_root.parent), "SHIV_ROOT": str(shiv_root)})
    return zipapp


@pytest.fixture
def start_controller(unpacked_zipapp: Path, controller_kubeconfig: Path,
                     tmp_path: Path) -> Iterator[Any]:
    """Start controllers (args are extra flags); all are stopped afterwards and their logs checked for 403s."""
    started: list[ControllerProcess] = []

    def start(*args: str, name: str = "controller", wait_ready: bool = True) -> ControllerProcess:
        proc = ControllerProcess(unpacked_zipapp, controller_kubeconfig, tmp_path, *args,
                                 name=f"{name}-{len(started)}")
        started.append(proc)
        return proc.start(wait_ready=wait_ready)

    yield start
    for proc in started:
        if proc.proc is not None:
            proc.stop()
    for proc in started:
        proc.assert_no_forbidden()


@pytest.fixture(scope="session")
def shared_controller(unpacked_zipapp: Path, controller_kubeconfig: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """One controller for all namespaces, for the tests that only watch what it does (resync every 5 s)."""
    workdir = tmp_path_factory.mktemp("shared-controller")
    proc = ControllerProcess(unpacked_zipapp, controller_kubeconfig, workdir, "--resync-period=5s",
                             "--metrics-secure=false", "--event-series-interval=1s", name="shared").start()
    _SHARED.append(proc)
    try:
        yield proc
    finally:
        _SHARED.remove(proc)
        proc.stop()
        proc.assert_no_forbidden()


_SHARED: list[ControllerProcess] = []  # the session's shared controller while it exists


@pytest.fixture
def no_shared_controller() -> Iterator[None]:
    """For tests about what happens while no controller runs: the session's all-namespace controller, if a test
    started it, is stopped for this test and started again afterwards."""
    paused = [proc for proc in _SHARED if proc.running()]
    for proc in paused:
        assert proc.stop() == 0
    try:
        yield
    finally:
        for proc in paused:
            proc.start()


# ------------------------------------------------------------------------------------------------------------------
# helpers


def mcpserver(name: str, namespace: str, **deployment: Any) -> Obj:
    dep = {"image": "example.test/server:1", "cmd": "/bin/server", **deployment}
    return {"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"transportType": "stdio", "stdioTransport": {}, "deployment": dep}}


def condition(obj: Obj | None, type_: str) -> Obj | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def wait_condition(kube: Kube, name: str, namespace: str, type_: str, status: str, *, reason: str | None = None,
                   timeout: float = 30.0) -> Obj:
    def check() -> Obj | None:
        obj = kube.read("kagent.dev/v1alpha1", "MCPServer", name, namespace)
        cond = condition(obj, type_)
        if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
            return obj
        return None

    return wait_for(check, timeout=timeout, interval=0.05,
                    description=f"MCPServer {namespace}/{name} {type_}={status} {reason or ''}")


def set_deployment_available(kube: Kube, name: str, namespace: str, available: bool) -> None:
    """Play the deployment controller (there is none): write the status subresource."""
    dep = kube.read("apps/v1", "Deployment", name, namespace)
    assert dep is not None
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = "True" if available else "False"
    replicas = 1 if available else 0
    body = {"status": {
        "observedGeneration": dep["metadata"]["generation"],
        "replicas": 1, "updatedReplicas": 1, "readyReplicas": replicas, "availableReplicas": replicas,
        "unavailableReplicas": 1 - replicas,
        "conditions": [{"type": "Available", "status": status,
                        "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                        "message": "Deployment has minimum availability." if available
                        else "Deployment does not have minimum availability.",
                        "lastUpdateTime": now, "lastTransitionTime": now}],
    }}
    kube.request("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status", content=json.dumps(body),
                 headers={"Content-Type": "application/merge-patch+json"})


def ensure_namespace(kube: Kube, name: str) -> None:
    try:
        kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except KubeApiError as error:
        if error.status != 409:
            raise


def events_about(kube: Kube, name: str, namespace: str) -> list[Obj]:
    response = kube.get(f"/api/v1/namespaces/{namespace}/events",
                        params={"fieldSelector": f"involvedObject.name={name}"})
    return list(response.json()["items"])


def compact_etcd(etcd_url: str) -> int:
    """Compact etcd's history up to its current revision (what kube-apiserver does every 5 minutes), so watches
    from older resourceVersions get 410 Gone. Returns the revision."""
    import base64

    head = httpx.post(f"{etcd_url}/v3/kv/range", json={"key": base64.b64encode(b"/").decode()}, timeout=10)
    head.raise_for_status()
    revision = int(head.json()["header"]["revision"])
    response = httpx.post(f"{etcd_url}/v3/kv/compaction", json={"revision": str(revision), "physical": True},
                          timeout=30)
    if response.status_code != 200 and "compacted" not in response.text:
        response.raise_for_status()
    return revision


@pytest.fixture
def kube_admin(kube: Kube) -> Kube:
    """The admin client under a name that does not shadow the ``kmcp.kube`` module in async tests."""
    return kube
