"""The generated MCPServer CRD on the real apiserver: every guide example is admitted, CEL and schema rules
reject what they should with the server's own messages, defaults are filled, and printer columns work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubehelpers import Kube, KubeApiError

ROOT = Path(__file__).resolve().parent.parent.parent
CRD = ROOT / "manifests" / "crd" / "kagent.dev_mcpservers.yaml"
EXAMPLES = sorted((ROOT / "examples" / "mcpservers").glob("*.yaml"))


@pytest.fixture(scope="module")
def crd(kube: Kube) -> None:
    kube.apply(CRD)
    kube.wait_for_condition("apiextensions.k8s.io/v1", "CustomResourceDefinition", "mcpservers.kagent.dev",
                            "Established")


def mcpserver(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer", "metadata": {"name": name}, "spec": spec}


def stdio(**deployment: Any) -> dict[str, Any]:
    return {"transportType": "stdio", "deployment": {"image": "img:v1", "cmd": "/srv", **deployment}}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_guide_examples_are_admitted_with_defaults(kube: Kube, crd: None, namespace: str, path: Path) -> None:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "MCPServer"]
    doc["metadata"].pop("namespace", None)
    created = kube.create(doc, namespace)
    assert created["spec"]["deployment"]["port"] == doc["spec"]["deployment"].get("port", 3000)
    if doc["spec"]["transportType"] == "stdio":
        assert created["spec"]["stdioTransport"] == {"sessionMode": "isolated", "warmPoolSize": 1,
                                                     "sessionIdleTimeoutSeconds": 600, "maxSessions": 100,
                                                     "requestTimeoutSeconds": 300, "serverEra": "auto"}


@pytest.mark.parametrize(("name", "spec", "message"), [
    ("sa-both", stdio(serviceAccount={"labels": {"a": "b"}}, serviceAccountName="x"),
     "serviceAccount and serviceAccountName are mutually exclusive"),
    ("http-no-transport", {"transportType": "http", "deployment": {"image": "x"}},
     "httpTransport is required when transportType is http"),
    ("stdio-with-http", {**stdio(), "httpTransport": {"targetPort": 80}},
     "httpTransport is only valid when transportType is http"),
    ("bad-transport", {"transportType": "grpc", "deployment": {"image": "x"}},
     'spec.transportType: Unsupported value: "grpc"'),
    ("bad-port", stdio(port=0), "spec.deployment.port: Invalid value: 0"),
    ("bad-mode", {**stdio(), "stdioTransport": {"sessionMode": "pooled"}},
     'spec.stdioTransport.sessionMode: Unsupported value: "pooled"'),
    ("unknown-field", stdio(imagePullPolcy="Always"), 'unknown field "spec.deployment.imagePullPolcy"'),
    ("x" * 64, stdio(), "metadata.name must be a DNS-1035 label"),
])
def test_invalid_specs_are_rejected_by_the_apiserver(kube: Kube, crd: None, namespace: str, name: str,
                                                     spec: dict[str, Any], message: str) -> None:
    path = kube.path("kagent.dev/v1alpha1", "MCPServer", namespace=namespace)
    with pytest.raises(KubeApiError) as rejected:
        # fieldValidation=Strict is what kubectl sends by default: unknown fields are errors, not pruned.
        kube.post(path, mcpserver(name, spec), params={"fieldValidation": "Strict"})
    assert rejected.value.status in (400, 422), rejected.value.message  # 400: strict decoding
    assert message in rejected.value.message


def test_missing_cmd_is_admitted_for_the_controller_to_report(kube: Kube, crd: None, namespace: str) -> None:
    spec = stdio()
    del spec["deployment"]["cmd"]
    created = kube.create(mcpserver("no-cmd", spec), namespace)
    assert "cmd" not in created["spec"]["deployment"]  # Accepted=False is the controller's answer


def test_printer_columns_are_served(kube: Kube, crd: None, namespace: str) -> None:
    kube.create(mcpserver("shown", stdio()), namespace)
    table = kube.get(kube.path("kagent.dev/v1alpha1", "MCPServer", namespace=namespace),
                     headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:4] == ["Name", "Ready", "Transport", "URL"]
    assert "Age" in columns
    assert table["rows"][0]["cells"][2] == "stdio"
