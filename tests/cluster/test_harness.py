"""Self-tests of the real-apiserver harness: every claim here is Kubernetes behaviour observed on the real
kube-apiserver + kube-controller-manager, proving the harness is not a mock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kmcp.devcluster.binaries import KUBERNETES_VERSION
from kmcp.devcluster.control_plane import ControlPlane, ControlPlaneError
from tests.kubehelpers import (
    Kube,
    KubeApiError,
    api_client,
    service_account_kubeconfig,
    service_account_token,
    wait_for,
)
from tests.procs import exists

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
KMCP_CRD = REPO / "manifests" / "crd" / "kagent.dev_mcpservers.yaml"

GROUP = "harness.kmcp.dev"
WIDGET_CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [minReplicas, maxReplicas]
            properties:
              minReplicas: {{type: integer, minimum: 0}}
              maxReplicas: {{type: integer}}
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: minReplicas must not exceed maxReplicas
"""


def widget(name: str, spec: object) -> dict[str, object]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def widget_crd(kube: Kube) -> str:
    kube.apply(WIDGET_CRD)
    kube.wait_for_condition("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{GROUP}",
                            "Established")
    return f"widgets.{GROUP}"


def test_apiserver_is_the_pinned_version_and_ready(kube: Kube, control_plane: ControlPlane) -> None:
    assert kube.get("/version").json()["gitVersion"] == KUBERNETES_VERSION
    assert kube.get("/readyz").text == "ok"
    assert control_plane.server.startswith("https://127.0.0.1:")
    assert all(p.running() for p in control_plane.processes)
    # The admin identity really is a client certificate in system:masters, as the apiserver sees it.
    review = kube.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                       {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).json()
    assert review["status"]["userInfo"]["username"] == "kmcp-test-admin"
    assert "system:masters" in review["status"]["userInfo"]["groups"]


def test_crd_is_established_and_served_in_openapi_v3(kube: Kube, widget_crd: str) -> None:
    crd = kube.read("apiextensions.k8s.io/v1", "CustomResourceDefinition", widget_crd)
    assert crd is not None
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])

    path = f"apis/{GROUP}/v1"
    wait_for(lambda: path in kube.get("/openapi/v3").json()["paths"], timeout=30,
             description=f"{path} in /openapi/v3")
    doc = kube.get(f"/openapi/v3/{path}").json()
    schema = doc["components"]["schemas"]["dev.kmcp.harness.v1.Widget"]
    spec = schema["properties"]["spec"]
    assert spec["x-kubernetes-validations"][0]["rule"] == "self.minReplicas <= self.maxReplicas"
    assert f"/apis/{GROUP}/v1/namespaces/{{namespace}}/widgets/{{name}}" in doc["paths"]


def test_schema_and_cel_validation_reject_with_the_servers_message(kube: Kube, widget_crd: str,
                                                                     namespace: str) -> None:
    with pytest.raises(KubeApiError) as cel:
        kube.create(widget("inverted", {"minReplicas": 3, "maxReplicas": 1}), namespace)
    assert cel.value.status == 422
    assert cel.value.reason == "Invalid"
    assert cel.value.message == (
        'Widget.harness.kmcp.dev "inverted" is invalid: spec: Invalid value: minReplicas must not exceed maxReplicas')

    with pytest.raises(KubeApiError) as typed:
        kube.create(widget("typed", {"minReplicas": "three", "maxReplicas": 1}), namespace)
    assert typed.value.status == 422
    assert "spec.minReplicas: Invalid value: \"string\": spec.minReplicas in body must be of type integer" \
        in typed.value.message

    with pytest.raises(KubeApiError) as minimum:
        kube.create(widget("negative", {"minReplicas": -1, "maxReplicas": 1}), namespace)
    assert "spec.minReplicas in body should be greater than or equal to 0" in minimum.value.message

    ok = kube.create(widget("fine", {"minReplicas": 1, "maxReplicas": 2}), namespace)
    assert ok["metadata"]["uid"]


def test_service_account_token_is_forbidden_without_rbac_then_allowed_by_a_rolebinding(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}, namespace)
    as_sa = kube.with_token(service_account_token(kube, namespace, "reader"))
    pods = f"/api/v1/namespaces/{namespace}/pods"

    denied = as_sa.get(pods, check=False)
    assert denied.status_code == 403
    assert denied.json()["message"] == (
        f'pods is forbidden: User "system:serviceaccount:{namespace}:reader" cannot list resource "pods" '
        f'in API group "" in the namespace "{namespace}"')

    kube.apply(f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-reader}}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader-reads-pods}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}}
subjects:
- {{kind: ServiceAccount, name: reader, namespace: {namespace}}}
""", namespace)
    wait_for(lambda: as_sa.get(pods, check=False).status_code == 200, timeout=10,
             description="the RoleBinding to take effect")
    assert as_sa.get(f"/api/v1/namespaces/{namespace}/secrets", check=False).status_code == 403
    as_sa.close()

    # The same identity through a kubeconfig file and the official client.
    from kubernetes import client as k8s

    path = service_account_kubeconfig(kube, namespace, "reader", tmp_path / "reader.kubeconfig")
    with api_client(path) as official:
        assert k8s.CoreV1Api(official).list_namespaced_pod(namespace).items == []


def test_deleting_the_owner_garbage_collects_its_dependent(kube: Kube, namespace: str) -> None:
    (owner,) = kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace)
    kube.apply({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "dependent", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True,
        }]},
    }, namespace)
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bystander"}}, namespace)

    assert kube.remove("v1", "ConfigMap", "owner", namespace)
    kube.wait_deleted("v1", "ConfigMap", "dependent", namespace, timeout=30)
    assert kube.read("v1", "ConfigMap", "bystander", namespace) is not None


def test_new_namespaces_get_the_default_service_account_and_root_ca(kube: Kube, namespace: str) -> None:
    wait_for(lambda: kube.read("v1", "ServiceAccount", "default", namespace), timeout=10,
             description="the default ServiceAccount")
    root_ca = wait_for(lambda: kube.read("v1", "ConfigMap", "kube-root-ca.crt", namespace), timeout=10,
                       description="kube-root-ca.crt")
    assert root_ca["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")


def test_deleting_a_namespace_empties_it(kube: Kube) -> None:
    name = f"doomed-{os.getpid()}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    kube.apply("""
apiVersion: v1
kind: ConfigMap
metadata: {name: contents}
data: {k: v}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: worker}
""", name)
    assert kube.remove("v1", "Namespace", name)
    kube.wait_deleted("v1", "Namespace", name, timeout=60)
    assert kube.items("v1", "ConfigMap", name) == []
    assert kube.items("v1", "ServiceAccount", name) == []


def test_the_kmcp_crd_rejects_an_mcpserver_without_an_image(kube: Kube, namespace: str) -> None:
    kube.apply(KMCP_CRD)
    kube.wait_for_condition("apiextensions.k8s.io/v1", "CustomResourceDefinition", "mcpservers.kagent.dev",
                            "Established")

    def mcpserver(name: str, spec: object) -> dict[str, object]:
        return {"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer", "metadata": {"name": name}, "spec": spec}

    with pytest.raises(KubeApiError) as missing:
        kube.create(mcpserver("no-image", {"transportType": "stdio", "deployment": {"cmd": "/bin/server"}}),
                    namespace)
    assert missing.value.status == 422
    assert "spec.deployment.image: Required value" in missing.value.message

    with pytest.raises(KubeApiError) as cel:
        kube.create(mcpserver("http-no-port", {"transportType": "http", "deployment": {"image": "x:1"}}),
                    namespace)
    assert "httpTransport is required when transportType is http" in cel.value.message

    created = kube.create(mcpserver("echo", {"transportType": "stdio",
                                             "deployment": {"image": "registry.example/echo:v1",
                                                            "cmd": "/bin/echo-server"}}), namespace)
    assert created["spec"]["deployment"]["image"] == "registry.example/echo:v1"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_processes_are_gone_after_exit(control_plane: ControlPlane) -> None:
    # A second, independent control plane: also proves two can run side by side on free ports.
    with ControlPlane(toolchain=control_plane.toolchain) as cp:
        pids, directory = cp.pids, cp.directory
        assert len(pids) == 3 and all(exists(pid) for pid in pids)
        assert cp.server != control_plane.server
        with Kube.from_kubeconfig(cp.kubeconfig) as other:
            assert other.get("/readyz").text == "ok"
    assert not any(exists(pid) for pid in pids)
    assert _processes_mentioning(str(directory)) == []
    assert not directory.exists()


def test_startup_failure_raises_with_the_log_tail(control_plane: ControlPlane) -> None:
    cp = ControlPlane(toolchain=control_plane.toolchain,
                      extra_args={"kube-apiserver": ["--no-such-flag=1"]})
    with pytest.raises(ControlPlaneError) as failed:
        cp.start()
    message = str(failed.value)
    assert message.startswith("kube-apiserver exited while waiting for kube-apiserver /readyz")
    assert "unknown flag: --no-such-flag" in message
    assert not any(exists(pid) for pid in cp.pids)


def test_a_port_taken_meanwhile_is_retried_on_fresh_ports(control_plane: ControlPlane,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from kmcp.devcluster import control_plane as module

    real_free_port = module.free_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        picks = iter([busy])
        monkeypatch.setattr(module, "free_port", lambda: next(picks, None) or real_free_port())
        with ControlPlane(toolchain=control_plane.toolchain, wait_for_default_service_account=False) as cp:
            assert cp.etcd_url != f"http://127.0.0.1:{busy}"
            assert "address already in use" in (cp.log_dir / "etcd.log").read_text()
