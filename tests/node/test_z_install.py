"""The guide's install on the real node: `kmcp install` puts the controller in as its real Deployment (its own image,
ServiceAccount and RBAC, reaching the apiserver in-cluster at kubernetes.default), it reconciles an MCPServer to a
Ready pod, two replicas fail over when the leader's pod is deleted, and `kmcp uninstall` leaves nothing behind.

Named to run last among the node tests (pytest takes files in name order): the others share a controller run on
the host, which is stopped here first so only the installed one reconciles; after `kmcp uninstall` deleted the CRD
a host controller started again did not become ready within a minute (not yet understood).

"Nothing behind" is checked in the API (every install object, every object the controller made for an MCPServer,
any kagent.dev CRD, kmcp's cluster RBAC) and on the node (no pod and no containerd container of either namespace,
no controller process in a pod)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kmcp import install
from kmcp.controller.settings import LEASE_NAME
from kmcp.devcluster.images import ImageArchive
from kmcp.devcluster.node import DevCluster
from tests.controller.conftest import wait_condition
from tests.kubehelpers import Kube, wait_for
from tests.node.conftest import RUNNING_NODE_CONTROLLERS, echo_mcpserver, first_session, service_url
from tests.node.test_node import TIMINGS

pytestmark = [pytest.mark.node, pytest.mark.slow]
SYSTEM = install.DEFAULT_NAMESPACE
Obj = dict[str, Any]


def kmcp_cli(zipapp: Path, home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.path.realpath(sys.executable), "-I", str(zipapp), *args], capture_output=True,
                          text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home), "SHIV_ROOT": str(home / "shiv")})


def lease_holder(kube: Kube) -> str:
    lease = kube.read("coordination.k8s.io/v1", "Lease", LEASE_NAME, SYSTEM) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def controller_pods(kube: Kube, ready: bool = False) -> list[Obj]:
    selector = ",".join(f"{k}={v}" for k, v in install.SELECTOR.items())
    pods = [p for p in kube.items("v1", "Pod", SYSTEM, labelSelector=selector)
            if not p["metadata"].get("deletionTimestamp")]
    return [p for p in pods if not ready or any(
        c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])]


def test_kmcp_install_runs_the_controller_as_a_real_deployment_that_fails_over_and_uninstalls_cleanly(
        node_kube: Kube, dev_cluster: DevCluster, kmcp_node_image: ImageArchive, zipapp: Path,
        tmp_path: Path) -> None:
    for controller in RUNNING_NODE_CONTROLLERS:
        controller.stop()
    started = time.monotonic()
    done = kmcp_cli(zipapp, tmp_path, "install", "--image", kmcp_node_image.name,
                    "--kubeconfig", str(dev_cluster.kubeconfig), "--timeout", "120s")
    assert done.returncode == 0, done.stdout + done.stderr
    TIMINGS["kmcp install -> controller Deployment Available"] = time.monotonic() - started
    assert controller_processes(), "the installed controller runs in no pod of the node"

    namespace = "install-e2e"
    node_kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    wait_for(lambda: node_kube.read("v1", "ServiceAccount", "default", namespace), description="default SA")
    node_kube.apply(echo_mcpserver("echo", namespace, kmcp_node_image.name))
    wait_condition(node_kube, "echo", namespace, "Ready", "True", timeout=90)
    with first_session(service_url(node_kube, "echo", namespace)) as client:
        assert client.call_tool("echo", {"message": "in-cluster"})["result"]["content"][0]["text"] == "in-cluster"

    # Two replicas: one leads, the other waits; deleting the leader's pod hands the Lease over.
    node_kube.request("PATCH", f"/apis/apps/v1/namespaces/{SYSTEM}/deployments/{install.NAME}",
                      content='{"spec": {"replicas": 2}}', headers={"Content-Type": "application/merge-patch+json"})
    wait_for(lambda: len(controller_pods(node_kube, ready=True)) == 2 or None, timeout=90,
             description="two Ready controller pods")
    leader = wait_for(lambda: lease_holder(node_kube) or None, timeout=30, description="a leader")
    (leader_pod,) = [p for p in controller_pods(node_kube) if leader.startswith(p["metadata"]["name"])]
    deleted = time.monotonic()
    node_kube.delete(f"/api/v1/namespaces/{SYSTEM}/pods/{leader_pod['metadata']['name']}")
    new_leader = wait_for(lambda: (lambda h: h if h and h != leader else None)(lease_holder(node_kube)),
                          timeout=60, description="the other replica leading")
    failover = time.monotonic() - deleted
    TIMINGS["controller leader pod deleted -> other replica holds the Lease"] = failover
    node_kube.apply(echo_mcpserver("after-failover", namespace, kmcp_node_image.name))
    wait_condition(node_kube, "after-failover", namespace, "Ready", "True", timeout=90)
    assert new_leader != leader

    done = kmcp_cli(zipapp, tmp_path, "uninstall", "--kubeconfig", str(dev_cluster.kubeconfig))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    uninstalled = time.monotonic()
    # The MCPServers went first, and with them (ownerReferences) everything the controller made for them: checked
    # before their namespace is deleted, which would hide a leftover.
    managed = "app.kubernetes.io/managed-by=kmcp"
    wait_for(lambda: not any(node_kube.items(v, k, namespace, labelSelector=managed) for v, k in MANAGED_KINDS)
             or None, timeout=90, description=f"the MCPServers' objects in {namespace} gone")
    node_kube.delete(f"/api/v1/namespaces/{namespace}", check=False)
    wait_for(lambda: node_kube.read("v1", "Namespace", SYSTEM) is None or None, timeout=90,
             description=f"namespace {SYSTEM} gone")
    assert node_kube.read("apiextensions.k8s.io/v1", "CustomResourceDefinition", "mcpservers.kagent.dev") is None
    assert not [c for c in node_kube.items("apiextensions.k8s.io/v1", "CustomResourceDefinition")
                if c["spec"]["group"] == "kagent.dev"]
    left = [f"{o['kind']} {o['metadata']['name']}" for o in install.install_objects()
            if node_kube.read(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))]
    assert left == [], f"kmcp uninstall left {left}"
    leftovers = [r["metadata"]["name"] for kind in ("ClusterRole", "ClusterRoleBinding")
                 for r in node_kube.items("rbac.authorization.k8s.io/v1", kind)
                 if r["metadata"]["name"].startswith("kmcp")]
    assert leftovers == []
    # On the node itself: no pod of either namespace left, no container of them in containerd, no controller
    # process on the machine.
    wait_for(lambda: not node_kube.items("v1", "Pod", namespace) or None, timeout=90,
             description=f"the pods of {namespace} gone")
    assert node_kube.items("v1", "Pod", SYSTEM) == []
    wait_for(lambda: not node_containers(dev_cluster, SYSTEM, namespace) or None, timeout=60,
             description="their containers gone from containerd")
    assert controller_processes() == []
    TIMINGS["kmcp uninstall done -> nothing of kmcp left on the node"] = time.monotonic() - uninstalled


MANAGED_KINDS = (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ServiceAccount"), ("v1", "Secret"),
                 ("v1", "ConfigMap"), ("v1", "Pod"))


def node_containers(cluster: DevCluster, *namespaces: str) -> list[str]:
    """containerd's containers (sandboxes too) whose pod is in one of ``namespaces``."""
    found = []
    for namespace in namespaces:
        found += cluster.node.ctr("containers", "ls", "-q",
                                  f'labels."io.kubernetes.pod.namespace"=={namespace}').split()
    return found


def controller_processes() -> list[str]:
    """Processes in the node's pods (their cgroup is under the kubelet's kubepods) running `kmcp controller`;
    other processes of the machine, such as other test runs' controllers, are not the node's."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if "/kubepods" not in (entry / "cgroup").read_text():
                    continue
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            words = [a.decode(errors="replace") for a in args]
            if "controller" in words and any(w.endswith("kmcp") or w.endswith(".pyz") for w in words):
                found.append(f"{entry.name}: {' '.join(words)[:120]}")
    return found
