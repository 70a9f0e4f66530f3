"""``--auth kubernetes`` against the real test apiserver: TokenReview with audiences, then SubjectAccessReview."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import trio

from kmcp.adapter.settings import AccessReview, AuthSettings
from tests.adapter.rawhttp import request, running_adapter
from tests.kubehelpers import Kube, KubeApiError, service_account_token

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

AUDIENCE = "http://weather.tools.svc.cluster.local:3000/mcp"
CRD = Path(__file__).resolve().parents[2] / "manifests" / "crd" / "kagent.dev_mcpservers.yaml"


@pytest.fixture
def reviewer(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A ServiceAccount allowed to create token and access reviews, as the adapter's own identity: its token file
    and the apiserver's CA file."""
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "adapter"}}, namespace)
    kube.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": f"kmcp-adapter-auth-{namespace}"},
         "rules": [{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                   {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
                    "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"kmcp-auth-{namespace}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": f"kmcp-adapter-auth-{namespace}"},
         "subjects": [{"kind": "ServiceAccount", "name": "adapter", "namespace": namespace}]},
    ])
    token_file, ca_file = tmp_path / "token", tmp_path / "ca.crt"
    token_file.write_text(service_account_token(kube, namespace, "adapter"))
    ca_file.write_bytes(kube.ca_pem)
    yield token_file, ca_file
    kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kmcp-auth-{namespace}", check=False)
    kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/kmcp-adapter-auth-{namespace}", check=False)


async def initialize(port: int, token: str) -> int:
    body = msgspec.json.encode({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    response = await request(port, "POST", "/mcp", body, {
        "content-type": "application/json", "accept": "application/json, text/event-stream",
        "authorization": f"Bearer {token}"})
    return response.status


def kube_auth(kube: Kube, token_file: Path, ca_file: Path, **overrides: object) -> AuthSettings:
    return AuthSettings(mode="kubernetes", audiences=(AUDIENCE,), resource_url=AUDIENCE, kube_api_url=kube.server,
                        kube_token_file=str(token_file), kube_ca_file=str(ca_file), **overrides)  # type: ignore[arg-type]


async def test_token_review_admits_the_audience_and_refuses_others(kube: Kube, namespace: str,
                                                                   reviewer: tuple[Path, Path]) -> None:
    token_file, ca_file = reviewer
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "agent"}}, namespace)
    good = service_account_token(kube, namespace, "agent", audiences=[AUDIENCE])
    other = service_account_token(kube, namespace, "agent", audiences=["https://somewhere.else"])
    apiserver = service_account_token(kube, namespace, "agent")  # the apiserver's default audience
    async with running_adapter(auth=kube_auth(kube, token_file, ca_file)) as adapter:
        assert await initialize(adapter.port, good) == 200
        assert await initialize(adapter.port, good) == 200  # from the cache
        assert await initialize(adapter.port, other) == 401
        assert await initialize(adapter.port, apiserver) == 401
        assert await initialize(adapter.port, "not-a-token") == 401
        metrics = (await adapter.request("GET", "/metrics")).body.decode()
        assert 'reason="token_review_rejected"' in metrics
        assert good not in metrics


async def test_subject_access_review_forbids_until_a_rolebinding_allows(kube: Kube, namespace: str,
                                                                        reviewer: tuple[Path, Path]) -> None:
    token_file, ca_file = reviewer
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "agent"}}, namespace)
    token = service_account_token(kube, namespace, "agent", audiences=[AUDIENCE])
    sar = AccessReview(verb="get", group="kagent.dev", resource="mcpservers", name="weather", namespace=namespace)
    async with running_adapter(auth=kube_auth(kube, token_file, ca_file, sar=sar, cache_ttl=0.0)) as adapter:
        assert await initialize(adapter.port, token) == 403
        forbidden = await request(adapter.port, "GET", "/mcp", headers={"authorization": f"Bearer {token}"})
        assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]
        kube.apply([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "use-weather"},
             "rules": [{"apiGroups": ["kagent.dev"], "resources": ["mcpservers"], "resourceNames": ["weather"],
                        "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "agent"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "use-weather"},
             "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": namespace}]},
        ], namespace)
        with trio.fail_after(30):  # the RBAC authorizer's informers catch up
            for _ in range(150):
                if (status := await initialize(adapter.port, token)) != 403:
                    break
                await trio.sleep(0.2)
        assert status == 200


@pytest.mark.parametrize(("auth", "transport", "message"), [
    ({"type": "jwt"}, "stdio", "jwt auth needs jwt.issuer"),
    ({"type": "kubernetes", "jwt": {"issuer": "https://i.example"}}, "stdio", "jwt is only valid when type is jwt"),
    ({"type": "jwt", "requireSubjectAccessReview": True, "jwt": {"issuer": "https://i.example"}}, "stdio",
     "requireSubjectAccessReview is only valid when type is kubernetes"),
    ({"type": "kubernetes"}, "http", "auth is enforced by the stdio transport adapter"),
    ({"type": "kubernetes", "audience": "x"}, "stdio", ".spec.auth.audience: field not declared in schema"),
])
def test_crd_rejects_inconsistent_auth(kube: Kube, namespace: str, auth: dict[str, object], transport: str,
                                       message: str) -> None:
    kube.apply(CRD)
    kube.wait_for_condition("apiextensions.k8s.io/v1", "CustomResourceDefinition", "mcpservers.kagent.dev",
                            "Established")
    body: dict[str, object] = {"transportType": transport, "deployment": {"image": "img:v1", "cmd": "/srv"},
                               "auth": auth}
    if transport == "http":
        body["httpTransport"] = {"targetPort": 8080}
    with pytest.raises(KubeApiError) as rejected:
        kube.apply({"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer", "metadata": {"name": "weather"},
                    "spec": body}, namespace)
    assert message in rejected.value.message


def test_crd_admits_auth(kube: Kube, namespace: str) -> None:
    kube.apply(CRD)
    kube.wait_for_condition("apiextensions.k8s.io/v1", "CustomResourceDefinition", "mcpservers.kagent.dev",
                            "Established")
    (created,) = kube.apply({"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer", "metadata": {"name": "w"},
                             "spec": {"transportType": "stdio", "deployment": {"image": "img:v1", "cmd": "/srv"},
                                      "auth": {"type": "kubernetes", "requireSubjectAccessReview": True}}},
                            namespace)
    assert created["spec"]["auth"] == {"type": "kubernetes", "requireSubjectAccessReview": True}
