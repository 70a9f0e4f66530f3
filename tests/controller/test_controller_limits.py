"""What the controller reports instead of half-applying: auth.type kubernetes is not wired in the controller."""

from __future__ import annotations

from typing import Any

from kmcp import spec
from kmcp.controller.reconcile import controller_limits


def server(auth: dict[str, Any] | None) -> spec.MCPServer:
    doc: dict[str, Any] = {"apiVersion": spec.API_VERSION, "kind": spec.KIND, "metadata": {"name": "a"},
                           "spec": {"transportType": "stdio", "deployment": {"image": "i", "cmd": "c"}}}
    if auth is not None:
        doc["spec"]["auth"] = auth
    return spec.validated(doc)


def test_kubernetes_auth_is_reported_unsupported() -> None:
    (problem,) = controller_limits(server({"type": "kubernetes", "audiences": ["x"]}))
    assert problem.reason == "UnsupportedAuth"
    assert problem.path == "spec.auth.type"


def test_jwt_and_no_auth_are_accepted() -> None:
    assert controller_limits(server(None)) == []
    assert controller_limits(server({"type": "jwt", "jwt": {"issuer": "https://issuer.example"}})) == []
