"""The MCPServer ``auth`` block: decoded strictly, rendered into adapter flags the adapter itself accepts, and a
ClusterRoleBinding for the review APIs when auth is kubernetes. No auth: nothing changes (the goldens pin that)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from kmcp import render, spec
from kmcp.adapter.cli import parse_settings
from kmcp.adapter.settings import AccessReview

SETTINGS = render.RenderSettings(adapter_image="img:test")
URL = "http://weather.tools.svc.cluster.local:3000/mcp"


def server(auth: dict[str, Any] | None, transport: str = "stdio") -> spec.MCPServer:
    body: dict[str, Any] = {"transportType": transport, "deployment": {"image": "img:v1", "cmd": "/srv"}}
    if transport == "http":
        body["httpTransport"] = {"targetPort": 8080}
    if auth is not None:
        body["auth"] = auth
    return spec.validated({"apiVersion": spec.API_VERSION, "kind": spec.KIND,
                           "metadata": {"name": "weather", "namespace": "tools"}, "spec": body})


def adapter_args(mcp: spec.MCPServer) -> list[str]:
    objects = render.render(mcp, SETTINGS)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    (adapter,) = deployment["spec"]["template"]["spec"]["initContainers"]
    args = adapter["args"]
    assert isinstance(args, list)
    # The kubelet expands $(VAR) from the container's env: the downward API's pod IP here.
    return [arg.replace(f"$({render.POD_IP_ENV})", "10.0.0.7") for arg in args]


def test_kubernetes_auth_defaults_the_audience_to_the_service_url(monkeypatch: pytest.MonkeyPatch) -> None:
    mcp = server({"type": "kubernetes", "requireSubjectAccessReview": True})
    args = adapter_args(mcp)
    assert args[args.index("--auth") + 1] == "kubernetes"
    assert args[args.index("--auth-audience") + 1] == URL
    assert args[args.index("--resource-url") + 1] == URL
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    settings, _ = parse_settings(args[1:])  # what the pod runs is what the adapter accepts
    assert settings.auth.mode == "kubernetes" and settings.auth.audiences == (URL,)
    assert settings.auth.kube_api_url == "https://10.0.0.1:443"
    assert settings.auth.sar == AccessReview(verb="get", group="kagent.dev", resource="mcpservers", name="weather",
                                             namespace="tools")


def test_kubernetes_auth_binds_the_service_account_to_the_review_role() -> None:
    objects = render.render(server({"type": "kubernetes"}), SETTINGS)
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ServiceAccount", "ClusterRoleBinding", "Service", "Deployment"]
    binding = objects[1]
    assert binding["metadata"]["name"] == "kmcp-auth-tools-weather-c17c613b"  # hash of "tools/weather"
    assert "ownerReferences" not in binding["metadata"]  # a namespaced owner cannot own a cluster-scoped object
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "kmcp-adapter-auth"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "weather", "namespace": "tools"}]


def test_jwt_auth_renders_issuer_keys_and_audiences() -> None:
    mcp = server({"type": "jwt", "audiences": ["api://weather"],
                  "jwt": {"issuer": "https://login.example.com", "jwksUrl": "https://login.example.com/keys"}})
    args = adapter_args(mcp)
    settings, _ = parse_settings(args[1:])
    assert settings.auth.mode == "jwt"
    assert settings.auth.audiences == ("api://weather",)
    assert settings.auth.jwt_issuer == "https://login.example.com"
    assert settings.auth.jwt_jwks_url == "https://login.example.com/keys"
    assert settings.auth.authorization_servers == ("https://login.example.com",)
    assert [o["kind"] for o in render.render(mcp, SETTINGS)] == ["ServiceAccount", "Service", "Deployment"]


def test_no_auth_and_auth_none_render_the_same() -> None:
    assert render.render(server(None), SETTINGS) == render.render(server({"type": "none"}), SETTINGS)
    assert "--auth" not in adapter_args(server(None))


def test_unknown_auth_fields_are_rejected() -> None:
    with pytest.raises((msgspec.ValidationError, ValueError)):
        server({"type": "kubernetes", "audience": "x"})
