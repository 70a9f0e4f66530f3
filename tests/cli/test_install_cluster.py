"""`kmcp install` / `kmcp uninstall` against a real kube-apiserver of their own: uninstall deletes the CRD and the
cluster-wide RBAC, which the session's shared control plane must keep for the controller tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kmcp import install
from kmcp.devcluster.binaries import ensure_binaries
from kmcp.devcluster.control_plane import ControlPlane
from tests.cli.helpers import kmcp
from tests.kubehelpers import Kube

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

GUIDE_OBJECTS = [
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition", "mcpservers.kagent.dev", None),
    ("v1", "Namespace", "kmcp-system", None),
    ("apps/v1", "Deployment", "kmcp-controller-manager", "kmcp-system"),
    ("v1", "ServiceAccount", "kmcp-controller-manager", "kmcp-system"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "kmcp-manager-role", None),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "kmcp-manager-rolebinding", None),
    ("rbac.authorization.k8s.io/v1", "Role", "kmcp-leader-election-role", "kmcp-system"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "kmcp-leader-election-rolebinding", "kmcp-system"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "kmcp-metrics-reader", None),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "kmcp-metrics-auth-role", None),
    ("v1", "Service", "kmcp-controller-manager-metrics-service", "kmcp-system"),
]


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[tuple[Path, Kube]]:
    with ControlPlane(toolchain=ensure_binaries()) as cp, Kube.from_kubeconfig(cp.kubeconfig) as client:
        yield cp.kubeconfig, client


def test_dry_run_prints_the_crd_and_every_install_object() -> None:
    result = kmcp("install", "--dry-run", "-o", "yaml", "--version", "9.9.9")
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert (docs[0]["kind"], docs[0]["metadata"]["name"]) == ("CustomResourceDefinition", "mcpservers.kagent.dev")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {(kind, name) for _, kind, name, _ in GUIDE_OBJECTS} <= names
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":9.9.9")
    as_json = json.loads(kmcp("install", "--dry-run", "-o", "json").stdout)
    assert len(as_json["items"]) == len(docs)


def test_install_twice_then_uninstall(private_cluster: tuple[Path, Kube]) -> None:
    kubeconfig, client = private_cluster
    first = kmcp("install", "--kubeconfig", kubeconfig, "--no-wait", "--image", "example.test/kmcp:dev")
    assert first.returncode == 0, first.stderr
    assert "CustomResourceDefinition mcpservers.kagent.dev is Established" in first.stdout
    for api_version, kind, name, namespace in GUIDE_OBJECTS:
        assert client.read(api_version, kind, name, namespace) is not None, (kind, name)
    deployment = client.read("apps/v1", "Deployment", install.NAME, "kmcp-system")
    assert deployment is not None
    generation = deployment["metadata"]["generation"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "kmcp"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["name"] == "manager"
    assert any(m["manager"] == "kmcp" and m["operation"] == "Apply" for m in deployment["metadata"]["managedFields"])

    second = kmcp("install", "--kubeconfig", kubeconfig, "--no-wait", "--image", "example.test/kmcp:dev")
    assert second.returncode == 0, second.stderr
    again = client.read("apps/v1", "Deployment", install.NAME, "kmcp-system")
    assert again is not None
    assert again["metadata"]["generation"] == generation  # idempotent: nothing changed
    assert again["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]

    removed = kmcp("uninstall", "--kubeconfig", kubeconfig, "--timeout", "60s", timeout=120)
    assert removed.returncode == 0, removed.stderr
    assert "deleted CustomResourceDefinition mcpservers.kagent.dev" in removed.stdout
    assert "deleted Deployment kmcp-system/kmcp-controller-manager" in removed.stdout
    for api_version, kind, name, namespace in GUIDE_OBJECTS:
        if kind == "Namespace" or namespace is not None:
            continue  # the namespace (and what is in it) is gone with it; the API no longer lists its objects
        assert client.read(api_version, kind, name, namespace) is None, (kind, name)
    assert client.read("v1", "Namespace", "kmcp-system") is None
    nothing = kmcp("uninstall", "--kubeconfig", kubeconfig)
    assert nothing.returncode == 0 and "nothing to remove" in nothing.stdout


def test_wait_reports_progress_then_times_out_without_a_kubelet(private_cluster: tuple[Path, Kube]) -> None:
    kubeconfig, client = private_cluster
    started = time.monotonic()
    result = kmcp("install", "--kubeconfig", kubeconfig, "--namespace", "kmcp-wait", "--timeout", "2s")
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert "waiting for deployment kmcp-wait/kmcp-controller-manager to become Available" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("kmcp: error: timed out after 2s waiting for deployment kmcp-wait/kmcp-controller-manager")
    assert "Traceback" not in result.stderr

    # A pod that cannot pull its image (as a kubelet would report it): the wait says why.
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "kmcp-controller-manager-abc", "namespace": "kmcp-wait",
                        "labels": {"app.kubernetes.io/name": "kmcp"}},
           "spec": {"containers": [{"name": "manager", "image": "example.test/kmcp:missing"}]}}
    client.create(pod)
    status = {"status": {"phase": "Pending", "containerStatuses": [{
        "name": "manager", "image": "example.test/kmcp:missing", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}}
    client.request("PATCH", "/api/v1/namespaces/kmcp-wait/pods/kmcp-controller-manager-abc/status",
                   content=json.dumps(status), headers={"Content-Type": "application/merge-patch+json"})
    again = kmcp("install", "--kubeconfig", kubeconfig, "--namespace", "kmcp-wait", "--timeout", "2s")
    assert again.returncode == 1
    assert "pod kmcp-controller-manager-abc: manager ImagePullBackOff (Back-off pulling image)" in \
        again.stderr.strip().splitlines()[-1]


def test_wait_succeeds_once_the_deployment_is_available(private_cluster: tuple[Path, Kube]) -> None:
    """Play the deployment controller and kubelet: write the status the wait is looking for."""
    import subprocess
    import sys

    kubeconfig, client = private_cluster
    proc = subprocess.Popen([sys.executable, "-m", "kmcp", "install", "--kubeconfig", str(kubeconfig),
                             "--namespace", "kmcp-avail", "--timeout", "60s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=kmcp_env(), cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 30
        while client.read("apps/v1", "Deployment", install.NAME, "kmcp-avail") is None:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        dep = client.read("apps/v1", "Deployment", install.NAME, "kmcp-avail")
        assert dep is not None
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {"status": {"observedGeneration": dep["metadata"]["generation"], "replicas": 1,
                             "availableReplicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                             "conditions": [{"type": "Available", "status": "True",
                                             "reason": "MinimumReplicasAvailable", "message": "ok",
                                             "lastUpdateTime": now, "lastTransitionTime": now}]}}
        client.request("PATCH", f"/apis/apps/v1/namespaces/kmcp-avail/deployments/{install.NAME}/status",
                       content=json.dumps(status), headers={"Content-Type": "application/merge-patch+json"})
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "deployment kmcp-avail/kmcp-controller-manager is Available (1/1 replicas available)" in err
    assert "kmcp controller installed in namespace kmcp-avail" in out


def kmcp_env() -> dict[str, str]:
    import os

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def test_errors_are_one_line(tmp_path: Path) -> None:
    missing = kmcp("install", "--kubeconfig", tmp_path / "nope")
    assert missing.returncode == 2
    assert missing.stderr.startswith("kmcp: error: ") and "Traceback" not in missing.stderr
    bad = kmcp("install", "--timeout", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    help_text = kmcp("install", "--help")
    assert help_text.returncode == 0 and "example:" in help_text.stdout


def test_install_into_a_namespace_still_being_deleted_says_so_in_one_line(
        private_cluster: tuple[Path, Kube]) -> None:
    kubeconfig, client = private_cluster
    client.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "held"}})
    client.create({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "held", "namespace": "held", "finalizers": ["kmcp.test/held"]}})
    client.remove("v1", "Namespace", "held")
    try:
        result = kmcp("install", "--kubeconfig", kubeconfig, "-n", "held", "--no-wait", "--timeout", "3s")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "namespace held is being deleted" in result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kmcp: error: namespace held is still being deleted after 3s"), \
            result.stderr
        assert "kubectl get namespace held -o yaml" in lines[0]
        assert "applied" not in result.stdout  # nothing applied before the namespace could take objects
    finally:
        client.request("PATCH", "/api/v1/namespaces/held/configmaps/held",
                       content=json.dumps({"metadata": {"finalizers": None}}),
                       headers={"Content-Type": "application/merge-patch+json"})
