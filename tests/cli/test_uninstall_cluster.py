"""`kmcp uninstall` with MCPServers left in the cluster, on a real kube-apiserver of its own (uninstall deletes the
CRD). An `auth: kubernetes` MCPServer holds kmcp's finalizer until the controller has deleted its cluster-scoped
ClusterRoleBinding: uninstall must delete the MCPServers while the controller still runs, and, with no controller
left, can do the controller's part when asked to."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kmcp import install, render
from kmcp.devcluster.binaries import ensure_binaries
from kmcp.devcluster.control_plane import ControlPlane
from tests.cli.helpers import ROOT, kmcp
from tests.controller.conftest import ControllerProcess, mcpserver
from tests.kubehelpers import Kube, service_account_kubeconfig, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MCP = "kagent.dev/v1alpha1"
RBAC = "rbac.authorization.k8s.io/v1"
CRD_NAME = "mcpservers.kagent.dev"
HOLD = "example.test/hold"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[tuple[Path, Kube]]:
    with ControlPlane(toolchain=ensure_binaries()) as cp, Kube.from_kubeconfig(cp.kubeconfig) as client:
        yield cp.kubeconfig, client


def start_controller(client: Kube, system_namespace: str, tmp_path: Path) -> ControllerProcess:
    """`kmcp controller` from this checkout, for all namespaces, as the install's own ServiceAccount."""
    wait_for(lambda: client.read("v1", "ServiceAccount", install.SERVICE_ACCOUNT, system_namespace),
             description="the controller's ServiceAccount")
    kubeconfig = service_account_kubeconfig(client, system_namespace, install.SERVICE_ACCOUNT,
                                            tmp_path / f"{system_namespace}.kubeconfig", expiration_seconds=3600)
    proc = ControllerProcess(ROOT, kubeconfig, tmp_path, "--metrics-bind-address=0", name=system_namespace)
    proc.argv = [sys.executable, "-m", "kmcp", *proc.argv[3:]]
    proc.env = {**proc.env, "PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return proc.start()


def auth_server(client: Kube, name: str, namespace: str, *finalizers: str) -> None:
    if client.read("v1", "Namespace", namespace) is None:
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    obj = mcpserver(name, namespace)
    obj["spec"]["auth"] = {"type": "kubernetes"}
    if finalizers:
        obj["metadata"]["finalizers"] = list(finalizers)
    client.create(obj)


def bindings(client: Kube, namespace: str, name: str) -> list[Obj]:
    selector = f"app.kubernetes.io/managed-by=kmcp,app.kubernetes.io/instance={name}," \
               f"{render.SERVER_NAMESPACE_LABEL}={namespace}"
    return client.items(RBAC, "ClusterRoleBinding", labelSelector=selector)


def finalizers(client: Kube, namespace: str, name: str) -> list[str] | None:
    obj = client.read(MCP, "MCPServer", name, namespace)
    return None if obj is None else list(obj["metadata"].get("finalizers") or [])


def wait_bound(client: Kube, namespace: str, name: str) -> None:
    wait_for(lambda: bindings(client, namespace, name)
             and render.AUTH_BINDING_FINALIZER in (finalizers(client, namespace, name) or []),
             timeout=60, description=f"the auth binding of {namespace}/{name} and kmcp's finalizer")


def test_uninstall_deletes_mcpservers_while_the_controller_still_finalizes_them(
        private_cluster: tuple[Path, Kube], tmp_path: Path) -> None:
    kubeconfig, client = private_cluster
    installed = kmcp("install", "--kubeconfig", kubeconfig, "--no-wait", "--image", "example.test/kmcp:dev")
    assert installed.returncode == 0, installed.stderr
    controller = start_controller(client, install.DEFAULT_NAMESPACE, tmp_path)
    try:
        auth_server(client, "c", "team-a")
        auth_server(client, "guarded", "team-b")
        plain = mcpserver("plain", "team-b")
        client.create(plain)
        wait_bound(client, "team-a", "c")
        wait_bound(client, "team-b", "guarded")

        removed = kmcp("uninstall", "--kubeconfig", kubeconfig, "--timeout", "60s", timeout=150)
        assert removed.returncode == 0, removed.stderr
    finally:
        controller.stop()
    lines = removed.stdout.splitlines()
    for key in ("team-a/c", "team-b/guarded", "team-b/plain"):
        assert f"deleted MCPServer {key}" in lines
    # Every MCPServer was gone before the controller was deleted.
    last_server = max(i for i, line in enumerate(lines) if line.startswith("deleted MCPServer"))
    assert last_server < lines.index(f"deleted Deployment {install.DEFAULT_NAMESPACE}/{install.NAME}")
    assert f"deleted CustomResourceDefinition {CRD_NAME}" in lines
    assert bindings(client, "team-a", "c") == [] and bindings(client, "team-b", "guarded") == []
    assert client.read("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME) is None
    # Once uninstall deleted its RBAC, the still running controller's watches are refused; nothing it wrote was.
    refused = [line for line in controller.log().splitlines() if "forbidden" in line.lower()
               and "list/watch failed" not in line]
    assert not refused, "\n".join(refused)[:3000]


def test_without_a_controller_uninstall_stops_then_removes_only_kmcps_finalizer_when_asked(
        private_cluster: tuple[Path, Kube], tmp_path: Path) -> None:
    kubeconfig, client = private_cluster
    system = "kmcp-stuck"
    installed = kmcp("install", "--kubeconfig", kubeconfig, "--namespace", system, "--no-wait",
                     "--image", "example.test/kmcp:dev")
    assert installed.returncode == 0, installed.stderr
    controller = start_controller(client, system, tmp_path)
    try:
        auth_server(client, "guarded", "team-c")
        auth_server(client, "held", "team-c", HOLD)  # someone else's finalizer too
        wait_bound(client, "team-c", "guarded")
        wait_bound(client, "team-c", "held")
    finally:
        controller.stop()

    # The controller Deployment is there but nothing runs it: bounded wait, then a clear refusal.
    started = time.monotonic()
    waited = kmcp("uninstall", "--kubeconfig", kubeconfig, "--namespace", system, "--timeout", "3s", timeout=60)
    assert waited.returncode == 1
    assert 3 <= time.monotonic() - started < 30
    error = waited.stderr.strip().splitlines()[-1]
    assert error.startswith("kmcp: error: 2 MCPServer(s) are still being deleted after 3s: team-c/guarded")
    assert f"deployment {system}/{install.NAME}: 0/1 replicas available" in error
    assert "--remove-finalizers" in error and "Traceback" not in waited.stderr
    assert client.read("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME) is not None
    assert client.read("apps/v1", "Deployment", install.NAME, system) is not None  # nothing else was removed

    # The controller is gone for good: no waiting, the same advice.
    client.remove("apps/v1", "Deployment", install.NAME, system)
    wait_for(lambda: client.read("apps/v1", "Deployment", install.NAME, system) is None, timeout=30)
    started = time.monotonic()
    gone = kmcp("uninstall", "--kubeconfig", kubeconfig, "--namespace", system, timeout=60)
    assert gone.returncode == 1 and time.monotonic() - started < 20
    assert "no controller is running" in gone.stderr and "--remove-finalizers" in gone.stderr
    assert f"deployment {system}/{install.NAME} not found" in gone.stderr
    assert bindings(client, "team-c", "guarded") and bindings(client, "team-c", "held")

    # The escape: bindings deleted, kmcp's finalizer removed, the other finalizer left to its owner.
    forced = kmcp("uninstall", "--kubeconfig", kubeconfig, "--namespace", system, "--remove-finalizers", timeout=60)
    assert forced.returncode == 1
    for name in ("guarded", "held"):
        assert f"MCPServer team-c/{name}: deleted ClusterRoleBinding" in forced.stdout
        assert f"MCPServer team-c/{name}: removed finalizer {render.AUTH_BINDING_FINALIZER}" in forced.stdout
        assert bindings(client, "team-c", name) == []
    assert finalizers(client, "team-c", "guarded") is None  # gone
    assert finalizers(client, "team-c", "held") == [HOLD]
    assert f"Finalizers kmcp does not own ({HOLD})" in forced.stderr
    assert "--remove-finalizers" not in forced.stderr.strip().splitlines()[-1]
    assert client.read("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME) is not None

    held = client.read(MCP, "MCPServer", "held", "team-c")
    assert held is not None
    client.request("PATCH", client.path(MCP, "MCPServer", "held", "team-c"),
                   json={"metadata": {"finalizers": None}},
                   headers={"Content-Type": "application/merge-patch+json"})
    done = kmcp("uninstall", "--kubeconfig", kubeconfig, "--namespace", system, "--timeout", "60s", timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"deleted CustomResourceDefinition {CRD_NAME}" in done.stdout
    assert client.read("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME) is None


def test_keep_crd_warns_in_one_line_that_the_left_mcpservers_have_no_controller(
        private_cluster: tuple[Path, Kube], tmp_path: Path) -> None:
    """--keep-crd leaves the MCPServers; one with kmcp's finalizer can no longer be deleted once the controller is
    gone. The user hears it once, with the count and the way out, and the way out works."""
    kubeconfig, client = private_cluster
    installed = kmcp("install", "--kubeconfig", kubeconfig, "--no-wait", "--image", "example.test/kmcp:dev")
    assert installed.returncode == 0, installed.stderr
    controller = start_controller(client, install.DEFAULT_NAMESPACE, tmp_path)
    try:
        auth_server(client, "kept", "team-d")
        client.create(mcpserver("plain", "team-d"))
        wait_bound(client, "team-d", "kept")
        kept = kmcp("uninstall", "--kubeconfig", kubeconfig, "--keep-crd", timeout=150)
    finally:
        controller.stop()
    assert kept.returncode == 0, kept.stderr
    assert "Traceback" not in kept.stderr
    (warning,) = [line for line in kept.stderr.splitlines() if "MCPServer" in line]
    assert warning.startswith("kmcp: warning: 2 MCPServer(s) remain with no controller to reconcile them "
                              "(team-d/kept, team-d/plain); 1 holds finalizer kmcp.kagent.dev/auth-binding"), warning
    assert "kmcp uninstall --remove-finalizers" in warning and "kmcp install" in warning
    assert client.read(MCP, "MCPServer", "kept", "team-d") is not None
    assert client.read("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME) is not None

    # The way out the warning names: every MCPServer deleted, kmcp's part done for the finalizer, the CRD gone.
    out = kmcp("uninstall", "--kubeconfig", kubeconfig, "--remove-finalizers", timeout=60)
    assert out.returncode == 0, out.stderr
    assert "MCPServer team-d/kept: removed finalizer kmcp.kagent.dev/auth-binding" in out.stdout
    assert bindings(client, "team-d", "kept") == []
    assert client.read("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME) is None

    # Nothing left: --keep-crd says nothing about MCPServers.
    kmcp("install", "--kubeconfig", kubeconfig, "--no-wait", "--image", "example.test/kmcp:dev")
    quiet = kmcp("uninstall", "--kubeconfig", kubeconfig, "--keep-crd", timeout=150)
    assert quiet.returncode == 0 and "MCPServer" not in quiet.stderr, quiet.stderr
