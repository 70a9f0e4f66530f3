"""Golden-file tests: the guide's six examples and edge cases render to exactly the checked-in YAML.

Refresh the goldens after an intended change with `KMCP_UPDATE_GOLDEN=1 pytest tests/test_render.py` and read
the diff before committing it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmcp import render, spec

ROOT = Path(__file__).resolve().parent.parent
INPUTS = sorted((ROOT / "examples" / "mcpservers").glob("*.yaml")) + sorted((ROOT / "tests" / "specs").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden"
SETTINGS = render.RenderSettings(adapter_image="ghcr.io/kagent-dev/kmcp/controller:test")


def load_server(path: Path) -> spec.MCPServer:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "MCPServer"]
    assert len(docs) == 1, path
    return spec.validated(docs[0])


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


@pytest.mark.parametrize("path", INPUTS, ids=[p.stem for p in INPUTS])
def test_render_matches_golden(path: Path) -> None:
    rendered = render.to_yaml(render.render(load_server(path), SETTINGS))
    golden = GOLDEN / f"{path.stem}.yaml"
    if os.environ.get("KMCP_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered)
    assert golden.exists(), f"missing golden {golden}; run with KMCP_UPDATE_GOLDEN=1"
    assert rendered == golden.read_text()


def test_guide_examples_are_all_covered() -> None:
    assert [p.stem for p in INPUTS if "examples" in p.parts] == [
        "01-filesystem", "02-aws-irsa", "03-secrets", "04-configmap", "05-http-native", "06-custom-volumes",
    ]


@pytest.mark.parametrize("path", INPUTS, ids=[p.stem for p in INPUTS])
def test_render_is_deterministic_and_pure(path: Path) -> None:
    server = load_server(path)
    before = copy.deepcopy(spec.msgspec.to_builtins(server))
    first = render.to_yaml(render.render(server, SETTINGS))
    assert render.to_yaml(render.render(load_server(path), SETTINGS)) == first
    assert spec.msgspec.to_builtins(server) == before  # rendering never mutates its input


def test_stdio_pod_is_adapter_sidecar_plus_wrapped_server() -> None:
    server = load_server(ROOT / "examples/mcpservers/01-filesystem.yaml")
    pod = by_kind(render.render(server, SETTINGS))["Deployment"]["spec"]["template"]["spec"]
    (adapter,) = pod["initContainers"]
    assert adapter["name"] == "kmcp-adapter"
    assert adapter["restartPolicy"] == "Always"  # native sidecar
    assert adapter["image"] == SETTINGS.adapter_image
    assert adapter["securityContext"]["runAsNonRoot"] is True
    assert adapter["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "kmcp", "mountPath": "/kmcp"} in adapter["volumeMounts"]
    assert adapter["startupProbe"]["httpGet"]["path"] == "/health"
    (server_c,) = pod["containers"]
    assert server_c["name"] == "mcp-server"
    assert server_c["command"] == ["/bin/sh", "/kmcp/serve.sh"]
    assert server_c["args"] == ["/usr/local/bin/mcp-server-filesystem", "/data"]
    assert {"name": "data", "mountPath": "/data"} in server_c["volumeMounts"]
    assert {"name": "kmcp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}} in pod["volumes"]


def test_http_pod_has_no_adapter_and_exposes_target_port() -> None:
    server = load_server(ROOT / "examples/mcpservers/05-http-native.yaml")
    objects = by_kind(render.render(server, SETTINGS))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["containers"][0]["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert render.server_url(server) == "http://http-native-mcp.mcp-servers.svc.cluster.local:8080/v1/mcp"


def test_secret_refs_become_env_from_and_read_only_mounts() -> None:
    server = load_server(ROOT / "examples/mcpservers/03-secrets.yaml")
    pod = by_kind(render.render(server, SETTINGS))["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "api-credentials"}}]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/secrets/api-credentials")
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"] == {"secretName": "api-credentials"}


def test_config_map_refs_are_projected_at_config() -> None:
    server = load_server(ROOT / "tests/specs/edge-all-extras.yaml")
    pod = by_kind(render.render(server, SETTINGS))["Deployment"]["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/config")
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["projected"]["sources"] == [{"configMap": {"name": "cfg-a"}}, {"configMap": {"name": "cfg-b"}}]


def test_service_account_carries_workload_identity_annotations() -> None:
    server = load_server(ROOT / "examples/mcpservers/02-aws-irsa.yaml")
    sa = by_kind(render.render(server, SETTINGS))["ServiceAccount"]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/mcp-s3-role"
    assert sa["metadata"]["labels"]["team"] == "data-platform"
    assert sa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kmcp"


def test_existing_service_account_is_used_not_created() -> None:
    server = load_server(ROOT / "tests/specs/edge-all-extras.yaml")
    objects = by_kind(render.render(server, SETTINGS))
    assert "ServiceAccount" not in objects
    assert objects["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "shared-identity"


def test_every_child_is_labelled_and_controlled_by_the_mcpserver() -> None:
    server = load_server(ROOT / "tests/specs/edge-all-extras.yaml")
    for obj in render.render(server, SETTINGS):
        meta = obj["metadata"]
        assert meta["name"] == "everything" and meta["namespace"] == "team-a"
        assert meta["labels"]["app.kubernetes.io/instance"] == "everything"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "kmcp"
        (owner,) = meta["ownerReferences"]
        assert owner == {"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer", "name": "everything",
                         "uid": server.metadata.uid, "controller": True, "blockOwnerDeletion": True}


def test_replicas_are_left_to_others_unless_set() -> None:
    unset = load_server(ROOT / "examples/mcpservers/01-filesystem.yaml")
    assert "replicas" not in by_kind(render.render(unset, SETTINGS))["Deployment"]["spec"]
    explicit = load_server(ROOT / "tests/specs/edge-all-extras.yaml")
    assert by_kind(render.render(explicit, SETTINGS))["Deployment"]["spec"]["replicas"] == 3


def test_config_hash_changes_with_pod_inputs_and_referenced_data() -> None:
    server = load_server(ROOT / "examples/mcpservers/03-secrets.yaml")

    def config_hash(s: spec.MCPServer, digest: str = "") -> str:
        template = render.render_pod_template(s, SETTINGS, digest)
        return str(template["metadata"]["annotations"][render.CONFIG_HASH_ANNOTATION])

    base = config_hash(server)
    assert config_hash(server, "secret-rv-2") != base  # a Secret's content changed: pods must restart
    server.spec.deployment.env["LOG_LEVEL"] = "info"
    assert config_hash(server) != base
    assert config_hash(load_server(ROOT / "examples/mcpservers/03-secrets.yaml")) == base


def test_stdio_knobs_reach_the_adapter() -> None:
    server = load_server(ROOT / "tests/specs/edge-all-extras.yaml")
    adapter = by_kind(render.render(server, SETTINGS))["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]
    args = adapter["args"]
    assert args[args.index("--session-mode") + 1] == "shared"
    assert args[args.index("--warm-pool") + 1] == "0"
    assert args[args.index("--listen") + 1] == ":3001"
    assert adapter["ports"][0]["containerPort"] == 3001


def test_an_otlp_endpoint_reaches_every_adapter_under_its_servers_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller's --adapter-otlp-endpoint: each adapter gets --otlp-endpoint and OTEL_SERVICE_NAME=<name>,
    and the adapter's own argv parsing turns exactly that into traces sent as that service."""
    from kmcp.adapter import cli as adapter_cli

    server = load_server(ROOT / "examples/mcpservers/01-filesystem.yaml")
    traced = render.RenderSettings(adapter_image=SETTINGS.adapter_image,
                                   adapter_otlp_endpoint="http://otel-collector.observability:4318")
    pod = by_kind(render.render(server, traced))["Deployment"]["spec"]["template"]["spec"]
    (adapter,) = pod["initContainers"]
    args = adapter["args"]
    assert args[args.index("--otlp-endpoint") + 1] == "http://otel-collector.observability:4318"
    env = {e["name"]: e.get("value") for e in adapter["env"]}
    assert env["OTEL_SERVICE_NAME"] == server.metadata.name
    assert "OTEL_SERVICE_NAME" not in {e["name"] for e in pod["containers"][0].get("env", [])}

    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    argv = [a.replace("$(KMCP_POD_IP)", "10.0.0.7") for a in args[1:]]  # what the kubelet expands
    settings, _ = adapter_cli.parse_settings(argv)
    assert settings.tracing.traces_url == "http://otel-collector.observability:4318/v1/traces"
    assert settings.tracing.service_name == server.metadata.name

    plain = by_kind(render.render(server, SETTINGS))["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]
    assert "--otlp-endpoint" not in plain["args"]
    assert "OTEL_SERVICE_NAME" not in {e["name"] for e in plain["env"]}
