"""The pure parts of the `auth: kubernetes` wiring: how a binding names its MCPServer, and the install RBAC that
lets the controller create it (bind one role, nothing else)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from kmcp import install, kube, render, spec
from kmcp.controller.reconcile import binding_owner


def server(name: str, namespace: str, auth: dict[str, Any] | None) -> spec.MCPServer:
    body: dict[str, Any] = {"transportType": "stdio", "deployment": {"image": "i", "cmd": "c"}}
    if auth is not None:
        body["auth"] = auth
    return spec.validated({"apiVersion": spec.API_VERSION, "kind": spec.KIND,
                           "metadata": {"name": name, "namespace": namespace}, "spec": body})


def test_a_rendered_binding_names_its_mcpserver() -> None:
    binding = render.render_auth_binding(server("a-b", "team-1", {"type": "kubernetes"}))
    assert binding is not None
    assert binding_owner(binding) == ("team-1", "a-b")
    assert kube.resource_for(binding) == kube.CLUSTER_ROLE_BINDINGS
    assert kube.CLUSTER_ROLE_BINDINGS.path(None, binding["metadata"]["name"]) == \
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kmcp-auth-team-1-a-b-" + \
        hashlib.sha256(b"team-1/a-b").hexdigest()[:8]


def test_the_binding_refers_to_the_installs_own_adapter_auth_role() -> None:
    """A Helm release other than "kmcp" has its own <fullname>-adapter-auth; its controller binds that one."""
    kubernetes = server("a", "n", {"type": "kubernetes"})
    settings = render.RenderSettings(adapter_auth_cluster_role="team-b-kmcp-adapter-auth")
    (binding,) = [o for o in render.render(kubernetes, settings) if o["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == "team-b-kmcp-adapter-auth"
    assert render.render_auth_binding(kubernetes)["roleRef"]["name"] == "kmcp-adapter-auth"  # type: ignore[index]


def test_binding_names_that_read_alike_differ() -> None:
    """("a-b", "c") and ("a", "b-c") read the same in kmcp-auth-<namespace>-<name>: the hash of "ns/name" tells
    them apart, so applying one can never take over the other's binding."""
    kubernetes = {"type": "kubernetes"}
    first = render.auth_binding_name(server("c", "a-b", kubernetes))
    second = render.auth_binding_name(server("b-c", "a", kubernetes))
    assert first.startswith("kmcp-auth-a-b-c-") and second.startswith("kmcp-auth-a-b-c-")
    assert first != second
    assert render.auth_binding_name(server("c", "a-b", kubernetes)) == first  # stable: the same name every time


def test_binding_names_stay_valid_object_names() -> None:
    kubernetes = {"type": "kubernetes"}
    longest = render.auth_binding_name(server("s" * 63, "n" * 63, kubernetes))
    assert len(longest) <= 253 and longest.startswith(f"kmcp-auth-{'n' * 63}-{'s' * 63}-")
    pattern = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
    assert pattern.fullmatch(longest)
    # Still distinct when only the cut-off part differs (a name longer than the object-name limit allows).
    base = server("a", "n", kubernetes)
    long_a = msgspec.structs.replace(base, metadata=spec.ObjectMeta(name="x" * 250 + "a", namespace="n"))
    long_b = msgspec.structs.replace(base, metadata=spec.ObjectMeta(name="x" * 250 + "b", namespace="n"))
    names = {render.auth_binding_name(long_a), render.auth_binding_name(long_b)}
    assert len(names) == 2 and all(len(n) <= 253 and pattern.fullmatch(n) for n in names)


def test_only_kubernetes_auth_on_stdio_renders_a_binding() -> None:
    assert render.render_auth_binding(server("a", "n", None)) is None
    assert render.render_auth_binding(server("a", "n", {"type": "none"})) is None
    assert render.render_auth_binding(server("a", "n", {"type": "jwt",
                                                        "jwt": {"issuer": "https://issuer.example"}})) is None


def test_bindings_not_made_by_kmcp_have_no_owner() -> None:
    labels = {"app.kubernetes.io/instance": "a", "kmcp.kagent.dev/mcpserver-namespace": "n"}
    assert binding_owner({"metadata": {"name": "x", "labels": labels}}) is None
    assert binding_owner({"metadata": {"name": "x", "labels": {**labels, "app.kubernetes.io/managed-by": "kmcp",
                                                               "app.kubernetes.io/instance": ""}}}) is None
    assert binding_owner({"metadata": {"name": "x"}}) is None


def test_the_controller_may_bind_only_the_adapter_auth_role() -> None:
    rules = install.manager_rules()
    binds = [r for r in rules if "bind" in r["verbs"] or "escalate" in r["verbs"] or "*" in r["verbs"]]
    assert binds == [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                      "resourceNames": [render.ADAPTER_AUTH_CLUSTER_ROLE], "verbs": ["bind"]}]
    assert not [r for r in rules if "roles" in r.get("resources", []) or "rolebindings" in r.get("resources", [])]
    objects = {(o["kind"], o["metadata"]["name"]): o for o in install.install_objects()}
    role = objects[("ClusterRole", render.ADAPTER_AUTH_CLUSTER_ROLE)]
    assert {(g, res, v) for r in role["rules"] for g in r["apiGroups"] for res in r["resources"]
            for v in r["verbs"]} == {("authentication.k8s.io", "tokenreviews", "create"),
                                     ("authorization.k8s.io", "subjectaccessreviews", "create")}
