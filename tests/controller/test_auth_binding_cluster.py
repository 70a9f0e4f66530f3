"""`auth: kubernetes` end to end on the real apiserver: the controller (the zipapp, as the install's own
ServiceAccount) binds the MCPServer's ServiceAccount to ClusterRole kmcp-adapter-auth, that token can then review
tokens, and the cluster-scoped binding goes away with the MCPServer or with the auth setting, also when the
controller was down at the time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kmcp import install, render, spec
from kmcp.controller.reconcile import AUTH_BINDING_FINALIZER
from tests.controller.conftest import ControllerProcess, mcpserver, wait_condition
from tests.kubehelpers import Kube, KubeApiError, service_account_token, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MCP = "kagent.dev/v1alpha1"
RBAC = "rbac.authorization.k8s.io/v1"
Obj = dict[str, Any]


def auth_server(name: str, namespace: str, auth: Obj | None) -> Obj:
    obj = mcpserver(name, namespace)
    if auth is not None:
        obj["spec"]["auth"] = auth
    return obj


def binding_name(namespace: str, name: str) -> str:
    return render.auth_binding_name(spec.validated(auth_server(name, namespace, {"type": "kubernetes"})))


def binding(kube: Kube, namespace: str, name: str) -> Obj | None:
    return kube.read(RBAC, "ClusterRoleBinding", binding_name(namespace, name))


def finalizers(kube: Kube, namespace: str, name: str) -> list[str]:
    obj = kube.read(MCP, "MCPServer", name, namespace)
    return list(((obj or {}).get("metadata") or {}).get("finalizers") or [])


def review_status(kube: Kube, namespace: str, service_account: str) -> int:
    """POST a TokenReview as ServiceAccount ``namespace/service_account`` (of its own token): the HTTP status."""
    token = service_account_token(kube, namespace, service_account, expiration_seconds=600)
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    with kube.with_token(token) as as_sa:
        response = as_sa.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", json=review, check=False)
    if response.status_code == 201:
        user = response.json()["status"]["user"]["username"]
        assert user == f"system:serviceaccount:{namespace}:{service_account}"
    return response.status_code


def test_kubernetes_auth_binds_the_pods_service_account_and_unbinds_on_delete(
        kube: Kube, namespace: str, shared_controller: ControllerProcess) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bystander",
                                                                        "namespace": namespace}})
    assert review_status(kube, namespace, "bystander") == 403  # a ServiceAccount may not review tokens by default
    kube.apply(auth_server("guarded", namespace, {"type": "kubernetes", "requireSubjectAccessReview": True}))
    wait_condition(kube, "guarded", namespace, "Programmed", "True")
    found = binding(kube, namespace, "guarded")
    assert found is not None
    assert found["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": install.ADAPTER_AUTH_ROLE}
    assert found["subjects"] == [{"kind": "ServiceAccount", "name": "guarded", "namespace": namespace}]
    assert "ownerReferences" not in found["metadata"]
    assert AUTH_BINDING_FINALIZER in finalizers(kube, namespace, "guarded")
    deployment = kube.read("apps/v1", "Deployment", "guarded", namespace)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "guarded"
    adapter_args = next(c for c in pod["initContainers"] if c["name"] == "kmcp-adapter")["args"]
    assert "kubernetes" in adapter_args

    # The pod's identity may now review tokens and check access; another ServiceAccount still may not.
    assert wait_for(lambda: review_status(kube, namespace, "guarded") == 201, timeout=10,
                    description="the binding to take effect")
    token = service_account_token(kube, namespace, "guarded", expiration_seconds=600)
    access = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": "someone", "resourceAttributes": {"group": "kagent.dev", "resource": "mcpservers",
                                                                "verb": "get", "namespace": namespace}}}
    with kube.with_token(token) as as_sa:
        assert as_sa.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", json=access,
                             check=False).status_code == 201
    assert review_status(kube, namespace, "bystander") == 403

    kube.remove(MCP, "MCPServer", "guarded", namespace)
    kube.wait_deleted(MCP, "MCPServer", "guarded", namespace, timeout=15)
    assert binding(kube, namespace, "guarded") is None  # gone before the finalizer let the MCPServer go
    shared_controller.assert_no_forbidden()


def test_switching_auth_off_removes_the_binding_and_the_finalizer(
        kube: Kube, namespace: str, shared_controller: ControllerProcess) -> None:
    kube.apply(auth_server("toggle", namespace, {"type": "kubernetes"}))
    wait_for(lambda: binding(kube, namespace, "toggle"), timeout=15, description="the auth binding")
    kube.apply(auth_server("toggle", namespace, {"type": "none"}))
    wait_for(lambda: binding(kube, namespace, "toggle") is None, timeout=15,
             description="the auth binding to be deleted")
    wait_for(lambda: AUTH_BINDING_FINALIZER not in finalizers(kube, namespace, "toggle"), timeout=10,
             description="the finalizer to be dropped")
    wait_condition(kube, "toggle", namespace, "Programmed", "True")
    # and on again, then to jwt: the same two steps each way
    kube.apply(auth_server("toggle", namespace, {"type": "kubernetes"}))
    wait_for(lambda: binding(kube, namespace, "toggle"), timeout=15, description="the auth binding again")
    assert AUTH_BINDING_FINALIZER in finalizers(kube, namespace, "toggle")
    kube.apply(auth_server("toggle", namespace, {"type": "jwt", "jwt": {"issuer": "https://issuer.example"}}))
    wait_for(lambda: binding(kube, namespace, "toggle") is None, timeout=15,
             description="the auth binding to be deleted for jwt")
    wait_for(lambda: AUTH_BINDING_FINALIZER not in finalizers(kube, namespace, "toggle"), timeout=10,
             description="the finalizer to be dropped for jwt")
    # A deleted binding is put back while auth stays kubernetes.
    kube.apply(auth_server("toggle", namespace, {"type": "kubernetes"}))
    wait_for(lambda: binding(kube, namespace, "toggle"), timeout=15, description="the auth binding")
    kube.remove(RBAC, "ClusterRoleBinding", binding_name(namespace, "toggle"))
    wait_for(lambda: binding(kube, namespace, "toggle"), timeout=15, description="the auth binding re-created")
    kube.remove(MCP, "MCPServer", "toggle", namespace)
    kube.wait_deleted(MCP, "MCPServer", "toggle", namespace, timeout=15)
    assert binding(kube, namespace, "toggle") is None
    shared_controller.assert_no_forbidden()


def test_nothing_leaks_while_the_controller_is_down(kube: Kube, namespace: str, no_shared_controller: None,
                                                    start_controller: Any) -> None:
    other = f"{namespace}-x"
    ghost_labels = {"app.kubernetes.io/managed-by": "kmcp", "app.kubernetes.io/instance": "ghost",
                    "kmcp.kagent.dev/mcpserver-namespace": namespace}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": install.ADAPTER_AUTH_ROLE}
    ghost = {"apiVersion": RBAC, "kind": "ClusterRoleBinding",
             "metadata": {"name": f"kmcp-auth-{namespace}-ghost", "labels": ghost_labels},
             "roleRef": role_ref, "subjects": [{"kind": "ServiceAccount", "name": "ghost", "namespace": namespace}]}
    # the same, for an MCPServer in a namespace this controller does not watch: not its business
    foreign = json.loads(json.dumps(ghost).replace(namespace, other))
    try:
        proc: ControllerProcess = start_controller(f"--namespace={namespace}", "--resync-period=1s", name="down")
        kube.apply(auth_server("held", namespace, {"type": "kubernetes"}))
        wait_for(lambda: binding(kube, namespace, "held"), timeout=15, description="the auth binding")
        wait_condition(kube, "held", namespace, "Programmed", "True")
        assert proc.stop() == 0

        # While it is down: the MCPServer is deleted (its finalizer holds it), and a binding is orphaned (its
        # MCPServer went while the finalizer had been stripped by hand).
        kube.remove(MCP, "MCPServer", "held", namespace)
        kube.apply([ghost, foreign])
        time.sleep(1)
        held = kube.read(MCP, "MCPServer", "held", namespace)
        assert held is not None and held["metadata"].get("deletionTimestamp")
        assert binding(kube, namespace, "held") is not None

        restarted: ControllerProcess = start_controller(f"--namespace={namespace}", "--resync-period=1s",
                                                        name="down-restarted")
        kube.wait_deleted(MCP, "MCPServer", "held", namespace, timeout=15)
        assert binding(kube, namespace, "held") is None
        # the orphan is named as before the names carried a hash: found by its labels all the same
        wait_for(lambda: kube.read(RBAC, "ClusterRoleBinding", ghost["metadata"]["name"]) is None, timeout=10,
                 description="the orphaned binding to be swept")
        time.sleep(1.5)
        assert kube.read(RBAC, "ClusterRoleBinding", foreign["metadata"]["name"]) is not None
        deleted = {r.get("binding") for r in restarted.log_records() if r.get("msg") == "deleted auth binding"}
        assert deleted == {binding_name(namespace, "held"), f"kmcp-auth-{namespace}-ghost"}
    finally:
        kube.remove(RBAC, "ClusterRoleBinding", foreign["metadata"]["name"])
        kube.remove(RBAC, "ClusterRoleBinding", ghost["metadata"]["name"])


def test_names_that_read_alike_get_their_own_bindings_and_old_names_are_replaced(
        kube: Kube, namespace: str, shared_controller: ControllerProcess) -> None:
    """("NS-b", "c") and ("NS", "b-c") were both bound as kmcp-auth-NS-b-c, the second apply taking over the first's
    binding. And a binding of a live MCPServer under that earlier name gives way to the rendered one."""
    other = f"{namespace}-b"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    old_name = f"kmcp-auth-{namespace}-b-c"
    labels = {"app.kubernetes.io/managed-by": "kmcp", "app.kubernetes.io/instance": "b-c",
              render.SERVER_NAMESPACE_LABEL: namespace}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": install.ADAPTER_AUTH_ROLE}
    kube.apply({"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": old_name, "labels": labels},
                "roleRef": role_ref, "subjects": [{"kind": "ServiceAccount", "name": "b-c", "namespace": namespace}]})
    try:
        kube.apply(auth_server("c", other, {"type": "kubernetes"}))
        kube.apply(auth_server("b-c", namespace, {"type": "kubernetes"}))
        for ns, name in ((other, "c"), (namespace, "b-c")):
            wait_condition(kube, name, ns, "Programmed", "True")
        first, second = binding(kube, other, "c"), binding(kube, namespace, "b-c")
        assert first is not None and second is not None
        assert first["metadata"]["name"] != second["metadata"]["name"]
        assert first["subjects"] == [{"kind": "ServiceAccount", "name": "c", "namespace": other}]
        assert second["subjects"] == [{"kind": "ServiceAccount", "name": "b-c", "namespace": namespace}]
        wait_for(lambda: kube.read(RBAC, "ClusterRoleBinding", old_name) is None, timeout=15,
                 description="the binding under the earlier name to be pruned")
        for ns, name in ((other, "c"), (namespace, "b-c")):
            kube.remove(MCP, "MCPServer", name, ns)
            kube.wait_deleted(MCP, "MCPServer", name, ns, timeout=15)
            assert binding(kube, ns, name) is None
        shared_controller.assert_no_forbidden()
    finally:
        kube.remove(RBAC, "ClusterRoleBinding", old_name)
        kube.remove("v1", "Namespace", other)


def test_a_binding_to_another_role_is_replaced(kube: Kube, namespace: str, no_shared_controller: None,
                                              start_controller: Any) -> None:
    """roleRef is immutable: a binding that an earlier install made to its own adapter-auth role (the release was
    renamed, and so its role, while the controller was being upgraded) cannot be applied over. The controller
    deletes it and binds its own role."""
    name = binding_name(namespace, "moved")
    labels = {"app.kubernetes.io/managed-by": "kmcp", "app.kubernetes.io/instance": "moved",
              render.SERVER_NAMESPACE_LABEL: namespace}
    kube.apply(auth_server("moved", namespace, {"type": "kubernetes"}))
    kube.apply({"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": name, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": install.METRICS_READER_ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": "moved", "namespace": namespace}]})
    try:
        start_controller(f"--namespace={namespace}", name="upgraded")
        wait_for(lambda: (binding(kube, namespace, "moved") or {}).get("roleRef", {}).get("name")
                 == install.ADAPTER_AUTH_ROLE, timeout=15, description="the binding to the install's own role")
        wait_condition(kube, "moved", namespace, "Programmed", "True")
        kube.remove(MCP, "MCPServer", "moved", namespace)
        kube.wait_deleted(MCP, "MCPServer", "moved", namespace, timeout=15)
        assert binding(kube, namespace, "moved") is None
    finally:
        kube.remove(RBAC, "ClusterRoleBinding", name)


@pytest.mark.parametrize("role", ["cluster-admin", "view", install.METRICS_READER_ROLE])
def test_the_controller_may_bind_no_other_role(kube: Kube, installed: list[Obj], controller_kubeconfig: Path,
                                               namespace: str, role: str) -> None:
    """Least privilege: its `bind` names only kmcp-adapter-auth, and it holds none of these roles' permissions."""
    with Kube.from_kubeconfig(controller_kubeconfig) as as_controller:
        name = f"kmcp-auth-{namespace}-escalate"
        body = {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "x", "namespace": namespace}]}
        try:
            as_controller.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body)
        except KubeApiError as error:
            assert error.status == 403, error
        else:
            kube.remove(RBAC, "ClusterRoleBinding", name)
            raise AssertionError(f"the controller could bind {role}")
        body["roleRef"]["name"] = install.ADAPTER_AUTH_ROLE
        as_controller.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body)
        kube.remove(RBAC, "ClusterRoleBinding", name)
