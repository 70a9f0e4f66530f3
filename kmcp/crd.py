"""Generate the MCPServer CustomResourceDefinition from the Structs in kmcp.spec.

The Structs are the single source of truth: field types, enums, bounds and defaults come from their annotations,
descriptions from their docstrings and Meta(description=...), CEL rules from their ``__cel__``. A test fails when
manifests/crd/kagent.dev_mcpservers.yaml differs from what this module produces (`kmcp crd > ...` refreshes it).
"""

from __future__ import annotations

import inspect as pyinspect
from typing import Any

import msgspec
import yaml
from msgspec import inspect as mi

from kmcp import spec

SERVICE_NAME_RULE = spec.CelRule(
    rule="self.metadata.name.matches('^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')",
    message="metadata.name must be a DNS-1035 label of at most 63 characters: it also names the Service",
)


def _doc(cls: type) -> str:
    return " ".join((pyinspect.getdoc(cls) or "").split())


class _SchemaBuilder:
    """Maps msgspec type info to OpenAPI v3. Defaults are emitted for spec fields only: status is the
    controller's to write, and a defaulted status field would need a value valid for its format."""

    def __init__(self, with_defaults: bool = True) -> None:
        self.with_defaults = with_defaults

    def schema(self, tp: Any) -> dict[str, Any]:
        description: str | None = None
        constraints: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        # Meta layers nest (Annotated[Annotated[str, Meta(pattern)] | None, Meta(description)]); gather them all.
        while True:
            if isinstance(tp, mi.Metadata):
                description = description or (tp.extra_json_schema or {}).get("description")
                extra.update(tp.extra or {})
                tp = tp.type
                continue
            if isinstance(tp, mi.UnionType):
                real = [t for t in tp.types if not isinstance(t, mi.NoneType)]
                if len(real) == 1:
                    tp = real[0]
                    continue
            break
        for name, key in (("min_length", "minLength"), ("max_length", "maxLength"), ("pattern", "pattern"),
                          ("ge", "minimum"), ("le", "maximum")):
            value = getattr(tp, name, None)
            if value is not None:
                constraints[key] = value
        out = self._base(tp, extra)
        out.update(constraints)
        if description:
            out = {"description": description, **{k: v for k, v in out.items() if k != "description"}}
        return out

    def _base(self, tp: Any, extra: dict[str, Any]) -> dict[str, Any]:
        kind = extra.get("k8s")
        if kind == "preserve":
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if kind == "int-or-string":
            return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
        if kind == "volume":
            return {
                "type": "object",
                "description": "A core/v1 Volume; its source fields are validated when the Deployment is applied.",
                "required": ["name"],
                "properties": {"name": {"type": "string", "description": "Volume name, a DNS label."}},
                "x-kubernetes-preserve-unknown-fields": True,
            }
        if isinstance(tp, mi.StructType):
            return self.struct(tp.cls)
        if isinstance(tp, mi.LiteralType):
            return {"type": "string", "enum": list(tp.values)}
        if isinstance(tp, mi.ListType):
            out: dict[str, Any] = {"type": "array", "items": self.schema(tp.item_type)}
            if kind == "conditions":
                out.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
            return out
        if isinstance(tp, mi.DictType):
            return {"type": "object", "additionalProperties": self.schema(tp.value_type)}
        if isinstance(tp, mi.StrType):
            return {"type": "string", "format": "date-time"} if kind == "date-time" else {"type": "string"}
        if isinstance(tp, mi.BoolType):
            return {"type": "boolean"}
        if isinstance(tp, mi.IntType):
            return {"type": "integer", "format": "int32" if getattr(tp, "le", None) else "int64"}
        raise TypeError(f"no OpenAPI mapping for {tp!r}")

    def struct(self, cls: type) -> dict[str, Any]:
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for f in info.fields:
            prop = self.schema(f.type)
            if f.required:
                required.append(f.encode_name)
            elif (self.with_defaults and f.default not in (msgspec.NODEFAULT, None)
                  and isinstance(f.default, str | int | bool)):
                prop["default"] = f.default
            if "description" not in prop:
                raise ValueError(f"{cls.__name__}.{f.name} has no description")
            if "default" in prop:  # `kubectl explain` prints the description, not the default: say it there too
                shown = str(prop["default"]).lower() if isinstance(prop["default"], bool) else str(prop["default"])
                prop["description"] = f"{prop['description'].rstrip()} Default: {shown}."
            properties[f.encode_name] = prop
        out: dict[str, Any] = {"type": "object", "description": _doc(cls), "properties": properties}
        if required:
            out["required"] = required
        rules: tuple[spec.CelRule, ...] = getattr(cls, "__cel__", ())
        if rules:
            out["x-kubernetes-validations"] = [_cel(rule) for rule in rules]
        return out


def _cel(rule: spec.CelRule) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": rule.rule, "message": rule.message}
    if rule.field_path:
        out["fieldPath"] = rule.field_path
    if rule.reason:
        out["reason"] = rule.reason
    return out


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of MCPServer."""
    builder = _SchemaBuilder()
    status_builder = _SchemaBuilder(with_defaults=False)
    return {
        "type": "object",
        "description": _doc(spec.MCPServer),
        "properties": {
            "apiVersion": {"type": "string", "description": "Versioned schema of this object: kagent.dev/v1alpha1."},
            "kind": {"type": "string", "description": "MCPServer."},
            "metadata": {"type": "object"},
            "spec": builder.struct(spec.MCPServerSpec),
            "status": status_builder.struct(spec.MCPServerStatus),
        },
        "required": ["spec"],
        "x-kubernetes-validations": [_cel(SERVICE_NAME_RULE)],
    }


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{spec.PLURAL}.{spec.GROUP}",
            "labels": {"app.kubernetes.io/name": "kmcp", "app.kubernetes.io/part-of": "kmcp"},
        },
        "spec": {
            "group": spec.GROUP,
            "names": {
                "kind": spec.KIND,
                "listKind": f"{spec.KIND}List",
                "plural": spec.PLURAL,
                "singular": spec.KIND.lower(),
                "categories": ["kagent"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": spec.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                     "description": "Whether the MCP server's Deployment is available."},
                    {"name": "Transport", "type": "string", "jsonPath": ".spec.transportType",
                     "description": "stdio (through the kmcp adapter) or http."},
                    {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1,
                     "description": "In-cluster URL of the MCP endpoint."},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": openapi_schema()},
            }],
        },
    }


def crd_yaml() -> str:
    """Deterministic YAML of the CRD, as checked in under manifests/crd/."""
    header = "# Generated by `kmcp crd` from kmcp/spec.py. Do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)

