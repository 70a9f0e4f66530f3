"""The checked-in CRD is exactly what kmcp/spec.py generates, and it is a structural, documented schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kmcp import crd

CHECKED_IN = Path(__file__).resolve().parent.parent / "manifests" / "crd" / "kagent.dev_mcpservers.yaml"


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for name, prop in schema.get("properties", {}).items():
        out += walk(prop, f"{path}.{name}")
    if "items" in schema:
        out += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += walk(schema["additionalProperties"], f"{path}{{}}")
    return out


def test_checked_in_crd_matches_spec_py() -> None:
    assert CHECKED_IN.read_text() == crd.crd_yaml(), "run: kmcp crd > manifests/crd/kagent.dev_mcpservers.yaml"


def test_crd_identity_matches_the_guide() -> None:
    obj = yaml.safe_load(CHECKED_IN.read_text())
    assert obj["metadata"]["name"] == "mcpservers.kagent.dev"
    names = obj["spec"]["names"]
    assert (names["kind"], names["listKind"], names["plural"], names["singular"]) == (
        "MCPServer", "MCPServerList", "mcpservers", "mcpserver")
    assert names["categories"] == ["kagent"]
    assert obj["spec"]["scope"] == "Namespaced"
    (version,) = obj["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {"Ready", "Transport", "Age"} <= set(columns)


def test_every_spec_and_status_field_is_described_and_typed() -> None:
    schema = crd.openapi_schema()
    for part in ("spec", "status"):
        for path, node in walk(schema["properties"][part], part):
            if path.endswith("{}") or path.endswith("[]"):
                continue  # map values and list items inherit the field's description
            assert node.get("description"), f"{path} has no description"
            assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"


def test_enums_defaults_and_cel_rules_are_present() -> None:
    spec_schema = crd.openapi_schema()["properties"]["spec"]
    assert spec_schema["properties"]["transportType"]["enum"] == ["http", "stdio"]
    assert spec_schema["required"] == ["transportType", "deployment"]
    deployment = spec_schema["properties"]["deployment"]
    assert deployment["properties"]["port"]["default"] == 3000
    assert deployment["required"] == ["image"]
    rules = [r["rule"] for r in spec_schema["x-kubernetes-validations"] + deployment["x-kubernetes-validations"]]
    assert "self.transportType != 'http' || has(self.httpTransport)" in rules
    assert "!(has(self.serviceAccount) && has(self.serviceAccountName))" in rules
    stdio = spec_schema["properties"]["stdioTransport"]["properties"]
    assert stdio["sessionMode"]["enum"] == ["isolated", "shared"] and stdio["sessionMode"]["default"] == "isolated"


def test_every_default_is_named_in_its_description() -> None:
    """`kubectl explain` shows the description, not the schema's default: the description says it."""
    schema = crd.openapi_schema()
    port = schema["properties"]["spec"]["properties"]["deployment"]["properties"]["port"]
    assert port["description"].endswith(" Default: 3000.")
    defaults = [(path, node) for path, node in walk(schema["properties"]["spec"], "spec") if "default" in node]
    assert len(defaults) >= 5
    for path, node in defaults:
        shown = str(node["default"]).lower() if isinstance(node["default"], bool) else str(node["default"])
        assert node["description"].endswith(f" Default: {shown}."), (path, node["description"])
