"""The charts through a real helm: lint, and `helm template` with the default, HA and the guide's custom values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.charts.conftest import CHARTS, Render, by_kind_name, manager, run_helm

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the first test may build helm (about a minute)

IMAGE = "ghcr.io/kagent-dev/kmcp/controller:0.1.0"
GUIDE_ARGS = ["controller", "--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8443",
              "--metrics-secure"]
RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
ALL_RULE_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def test_both_charts_lint(helm: Path) -> None:
    for chart in ("kmcp", "kmcp-crds"):
        result = run_helm(helm, "lint", "--strict", CHARTS / chart)
        assert result.returncode == 0, result.stdout + result.stderr
    result = run_helm(helm, "lint", "--strict", CHARTS / "kmcp", "-f", CHARTS / "kmcp" / "values-ha.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_crd_chart_renders_the_crd(render: Render) -> None:
    (crd,) = render("kmcp-crds", release="kmcp-crds")
    assert crd["kind"] == "CustomResourceDefinition" and crd["metadata"]["name"] == "mcpservers.kagent.dev"
    assert crd["spec"]["names"]["categories"] == ["kagent"] and crd["spec"]["scope"] == "Namespaced"


def test_default_values_render_the_guides_install_objects(render: Render) -> None:
    objects = by_kind_name(render("kmcp"))
    assert set(objects) == {
        ("ServiceAccount", "kmcp-controller-manager"),
        ("ClusterRole", "kmcp-manager-role"), ("ClusterRoleBinding", "kmcp-manager-rolebinding"),
        ("Role", "kmcp-leader-election-role"), ("RoleBinding", "kmcp-leader-election-rolebinding"),
        ("ClusterRole", "kmcp-metrics-reader"),
        ("ClusterRole", "kmcp-metrics-auth-role"), ("ClusterRoleBinding", "kmcp-metrics-auth-rolebinding"),
        ("ClusterRole", "kmcp-adapter-auth"),
        ("Service", "kmcp-controller-manager-metrics-service"),
        ("Deployment", "kmcp-controller-manager"),
    }
    for (kind, _), obj in objects.items():
        if kind not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "kmcp-system"

    manager_rules = objects["ClusterRole", "kmcp-manager-role"]["rules"]
    granted = {(group, resource): set(rule["verbs"]) for rule in manager_rules
               for group in rule["apiGroups"] for resource in rule["resources"]}
    # The children the controller owns: full control. What MCPServers reference: read only (Secrets: plus
    # creating each stdio MCPServer's session-key Secret, never updating or deleting one).
    for child in (("", "services"), ("", "serviceaccounts"), ("apps", "deployments")):
        assert granted[child] == set(ALL_RULE_VERBS)
    assert granted["", "configmaps"] == {"get", "list", "watch"}
    assert granted["", "secrets"] == {"create", "get", "list", "watch"}  # + the replicas' session keys, once
    assert granted["kagent.dev", "mcpservers"] >= {"get", "list", "watch", "patch"}
    assert granted["kagent.dev", "mcpservers/status"] >= {"get", "patch", "update"}
    assert granted["events.k8s.io", "events"] == {"create", "patch"}
    # auth: kubernetes: its bindings in full, and `bind` on the one role they refer to
    assert granted["rbac.authorization.k8s.io", "clusterrolebindings"] == set(ALL_RULE_VERBS)
    assert [r for r in manager_rules if "bind" in r["verbs"]] == [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
         "resourceNames": ["kmcp-adapter-auth"], "verbs": ["bind"]}]
    assert objects["ClusterRole", "kmcp-metrics-reader"]["rules"] == [{"nonResourceURLs": ["/metrics"],
                                                                       "verbs": ["get"]}]
    leader = {r["resources"][0]: r["verbs"] for r in objects["Role", "kmcp-leader-election-role"]["rules"]}
    assert set(leader["leases"]) >= {"get", "create", "update"} and set(leader["events"]) == {"create", "patch"}
    for binding in ("ClusterRoleBinding", "kmcp-manager-rolebinding"), ("RoleBinding",
                                                                        "kmcp-leader-election-rolebinding"):
        assert objects[binding]["subjects"] == [{"kind": "ServiceAccount", "name": "kmcp-controller-manager",
                                                 "namespace": "kmcp-system"}]

    service = objects["Service", "kmcp-controller-manager-metrics-service"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [{"name": "https", "port": 8443, "targetPort": 8443, "protocol": "TCP"}]
    assert service["selector"] == {"app.kubernetes.io/name": "kmcp"}

    deployment = objects["Deployment", "kmcp-controller-manager"]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 1
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "kmcp"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["serviceAccountName"] == "kmcp-controller-manager"
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                              "seccompProfile": {"type": "RuntimeDefault"}}
    container = manager(list(objects.values()))
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["kmcp"] and container["args"] == GUIDE_ARGS
    env = {e["name"]: e for e in container["env"]}
    assert env["KMCP_ADAPTER_IMAGE"]["value"] == IMAGE
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert {p["containerPort"] for p in container["ports"]} == {8081, 8443}
    assert container["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": 8081},
                                          "initialDelaySeconds": 15, "periodSeconds": 20}
    assert container["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": 8081},
                                           "initialDelaySeconds": 5, "periodSeconds": 10}
    assert container["resources"] == {"limits": {"cpu": "500m", "memory": "128Mi"},
                                      "requests": {"cpu": "10m", "memory": "64Mi"}}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}


def test_values_ha(render: Render) -> None:
    objects = render("kmcp", "-f", CHARTS / "kmcp" / "values-ha.yaml")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]
    term = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    # The anti-affinity selector really selects the controller's own pods.
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    container = manager(objects)
    assert "--leader-elect" in container["args"]
    assert container["resources"]["limits"] == {"cpu": "1000m", "memory": "256Mi"}


def test_metrics_without_tls(render: Render) -> None:
    objects = render("kmcp", "--set", "controller.metrics.secureServing=false")
    container = manager(objects)
    assert "--metrics-secure=false" in container["args"] and "--metrics-secure" not in container["args"]
    (service,) = [o for o in objects if o["kind"] == "Service"]
    assert service["spec"]["ports"][0]["name"] == "http"


def test_metrics_disabled(render: Render) -> None:
    objects = render("kmcp", "--set", "controller.metrics.enabled=false")
    assert not [o for o in objects if o["kind"] == "Service"]
    container = manager(objects)
    assert "--metrics-bind-address=0" in container["args"]
    assert {p["containerPort"] for p in container["ports"]} == {8081}


def test_rbac_and_service_account_owned_by_someone_else(render: Render) -> None:
    objects = render("kmcp", "--set", "rbac.create=false", "--set", "serviceAccount.create=false",
                     "--set", "serviceAccount.name=platform-kmcp")
    assert {o["kind"] for o in objects} == {"Service", "Deployment"}
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "platform-kmcp"
    without_name = render("kmcp", "--set", "serviceAccount.create=false")
    (deployment,) = [o for o in without_name if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "default"
    assert not [o for o in without_name if o["kind"] == "ServiceAccount"]


def test_leader_election_off_for_a_single_replica(render: Render) -> None:
    container = manager(render("kmcp", "--set", "controller.leaderElection.enabled=false"))
    assert "--leader-elect" not in container["args"]


def test_every_other_value_reaches_the_objects(render: Render, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("""\
fullnameOverride: acme-kmcp
nameOverride: mcp-operator
namespaceOverride: platform
image: {repository: registry.local/kmcp, tag: "1.2.3", pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
controller:
  replicaCount: 2
  healthProbe:
    bindAddress: ":9440"
    livenessProbe: {initialDelaySeconds: 30, periodSeconds: 40, failureThreshold: 5}
  metrics: {bindAddress: ":9443"}
  env: [{name: LOG_LEVEL, value: debug}]
podAnnotations: {prometheus.io/scrape: "true"}
podSecurityContext: {runAsNonRoot: true, runAsUser: 1001}
securityContext: {readOnlyRootFilesystem: false}
resources: {limits: {memory: 512Mi}}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]
serviceAccount: {annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::1:role/kmcp"}}
service: {type: NodePort, port: 9443, targetPort: 9443}
""")
    objects = by_kind_name(render("kmcp", "-f", values, release="whatever", namespace="ignored"))
    assert ("Deployment", "acme-kmcp-controller-manager") in objects
    assert ("ClusterRole", "acme-kmcp-manager-role") in objects
    assert ("Service", "acme-kmcp-controller-manager-metrics-service") in objects
    namespaced = [o for (kind, _), o in objects.items() if kind not in ("ClusterRole", "ClusterRoleBinding")]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"platform"}
    sa = objects["ServiceAccount", "acme-kmcp-controller-manager"]
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/kmcp"}
    binding = objects["ClusterRoleBinding", "acme-kmcp-manager-rolebinding"]
    assert binding["subjects"][0] == {"kind": "ServiceAccount", "name": "acme-kmcp-controller-manager",
                                      "namespace": "platform"}

    deployment = objects["Deployment", "acme-kmcp-controller-manager"]
    spec: dict[str, Any] = deployment["spec"]
    pod = spec["template"]
    assert spec["replicas"] == 2
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "mcp-operator"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    # helm merges maps from -f files into the defaults (set a key to null to drop it).
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 65532,
                                              "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    container = manager(list(objects.values()))
    assert container["image"] == "registry.local/kmcp:1.2.3" and container["imagePullPolicy"] == "Always"
    assert container["args"] == ["controller", "--leader-elect", "--health-probe-bind-address=:9440",
                                 "--metrics-bind-address=:9443", "--metrics-secure"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LOG_LEVEL"] == "debug" and env["KMCP_ADAPTER_IMAGE"] == "registry.local/kmcp:1.2.3"
    assert {p["containerPort"] for p in container["ports"]} == {9440, 9443}
    assert container["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": 9440}, "initialDelaySeconds": 30,
                                          "periodSeconds": 40, "failureThreshold": 5}
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    service = objects["Service", "acme-kmcp-controller-manager-metrics-service"]["spec"]
    assert service["type"] == "NodePort" and service["ports"][0]["port"] == 9443
    assert service["selector"] == {"app.kubernetes.io/name": "mcp-operator"}


def test_release_name_prefixes_objects_unless_it_holds_the_chart_name(render: Render) -> None:
    names = {o["metadata"]["name"] for o in render("kmcp", release="prod")}
    assert "prod-kmcp-controller-manager" in names and "prod-kmcp-manager-role" in names
    names = {o["metadata"]["name"] for o in render("kmcp", release="kmcp-prod")}
    assert "kmcp-prod-controller-manager" in names



CLUSTER_SCOPED_KINDS = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace",
                        "PriorityClass", "StorageClass", "MutatingWebhookConfiguration",
                        "ValidatingWebhookConfiguration", "APIService"}


def test_two_releases_in_one_cluster_share_no_cluster_scoped_name(render: Render) -> None:
    """Each release's ClusterRoles and ClusterRoleBindings carry its fullname, the one the controller binds for
    `auth: kubernetes` included, and that release's controller is told which one is its own."""
    releases = {"kmcp": render("kmcp"), "team-b": render("kmcp", release="team-b", namespace="team-b")}
    names: dict[str, set[tuple[str, str]]] = {}
    for release, objects in releases.items():
        names[release] = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in CLUSTER_SCOPED_KINDS}
        assert all("namespace" in o["metadata"] for o in objects if o["kind"] not in CLUSTER_SCOPED_KINDS)
        auth_roles = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith(
            "adapter-auth")]
        (role,) = auth_roles
        env = {e["name"]: e.get("value") for e in manager(objects)["env"]}
        assert env["KMCP_ADAPTER_AUTH_CLUSTER_ROLE"] == role["metadata"]["name"]
        manager_role = next(o for o in objects if o["kind"] == "ClusterRole"
                            and o["metadata"]["name"].endswith("-manager-role"))
        assert [r["resourceNames"] for r in manager_role["rules"] if "bind" in r["verbs"]] == [
            [role["metadata"]["name"]]]
    assert names["kmcp"] and names["team-b"]
    assert names["kmcp"].isdisjoint(names["team-b"]), names["kmcp"] & names["team-b"]
    assert ("ClusterRole", "kmcp-adapter-auth") in names["kmcp"]  # the default release keeps the guide's name
    assert ("ClusterRole", "team-b-kmcp-adapter-auth") in names["team-b"]


def test_adapter_otlp_endpoint_value_reaches_the_controller(render: Render, helm: Path) -> None:
    url = "http://otel-collector.observability:4318"
    container = manager(render("kmcp", "--set", f"controller.adapterOtlpEndpoint={url}"))
    assert f"--adapter-otlp-endpoint={url}" in container["args"]
    assert not [a for a in manager(render("kmcp"))["args"] if a.startswith("--adapter-otlp-endpoint")]
    refused = run_helm(helm, "template", "kmcp", CHARTS / "kmcp", "--set",
                       "controller.adapterOtlpEndpoint=otel-collector:4318")
    assert refused.returncode != 0 and "adapterOtlpEndpoint" in refused.stderr, refused.stderr
