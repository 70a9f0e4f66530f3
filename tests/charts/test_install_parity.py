"""`helm template` of charts/kmcp with default values == the plain install manifests, in substance.

The plain objects come from ``kmcp.install.install_objects()`` and from the checked-in
manifests/install/kmcp.yaml. Compared: kinds and names, namespaces, RBAC rules (as sets of group/resource/verb),
bindings, the metrics Service and the controller container (image, command, args, probes, ports, resources,
security contexts). Not compared: labels (helm adds its own) and the Namespace object (helm's --create-namespace).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import ROOT, Render

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

INSTALL_YAML = ROOT / "manifests" / "install" / "kmcp.yaml"


def rules(obj: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """Every (group, resource, verb, resourceName) granted; "*" when a rule names no resources (all of them)."""
    granted: set[tuple[str, str, str, str]] = set()
    for rule in obj.get("rules", []):
        names = rule.get("resourceNames") or ["*"]
        for verb in rule["verbs"]:
            for url in rule.get("nonResourceURLs", []):
                granted.add(("", url, verb, "*"))
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for name in names:
                        granted.add((group, resource, verb, name))
    return granted


def substance(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for obj in objects:
        kind, meta = obj["kind"], obj["metadata"]
        if kind == "Namespace":
            continue
        key = (kind, meta["name"])
        base = {"namespace": meta.get("namespace")}
        if kind in ("ClusterRole", "Role"):
            out[key] = {**base, "rules": rules(obj)}
        elif kind in ("ClusterRoleBinding", "RoleBinding"):
            out[key] = {**base, "roleRef": obj["roleRef"], "subjects": obj["subjects"]}
        elif kind == "ServiceAccount":
            out[key] = {**base, "automount": obj.get("automountServiceAccountToken")}
        elif kind == "Service":
            spec = obj["spec"]
            ports = sorted((p["name"], p["port"], p["targetPort"]) for p in spec["ports"])
            out[key] = {**base, "type": spec.get("type", "ClusterIP"), "ports": ports, "selector": spec["selector"]}
        elif kind == "Deployment":
            spec = obj["spec"]
            pod = spec["template"]["spec"]
            (container,) = [c for c in pod["containers"] if c["name"] == "manager"]
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            out[key] = {
                **base,
                "replicas": spec["replicas"], "selector": spec["selector"]["matchLabels"],
                "selector_matches_pod": spec["selector"]["matchLabels"].items()
                <= spec["template"]["metadata"]["labels"].items(),
                "serviceAccountName": pod["serviceAccountName"], "podSecurityContext": pod.get("securityContext"),
                "image": container["image"], "imagePullPolicy": container["imagePullPolicy"],
                "command": container["command"], "args": container["args"],
                "adapterImage": env.get("KMCP_ADAPTER_IMAGE"),
                "adapterAuthRole": env.get("KMCP_ADAPTER_AUTH_CLUSTER_ROLE"),
                "ports": sorted((p["name"], p["containerPort"]) for p in container["ports"]),
                "liveness": container["livenessProbe"], "readiness": container["readinessProbe"],
                "resources": container["resources"], "securityContext": container["securityContext"],
            }
        else:
            out[key] = {**base, "object": obj}
    return out


def test_chart_matches_kmcp_install_objects(render: Render) -> None:
    try:
        install = importlib.import_module("kmcp.install")
    except ImportError:
        pytest.skip("kmcp/install.py is not in this checkout")
    assert substance(render("kmcp")) == substance(install.install_objects())


def test_chart_matches_the_checked_in_install_manifest(render: Render) -> None:
    if not INSTALL_YAML.exists():
        pytest.skip(f"{INSTALL_YAML.relative_to(ROOT)} is not in this checkout")
    plain = [doc for doc in yaml.safe_load_all(Path(INSTALL_YAML).read_text()) if doc]
    assert substance(render("kmcp")) == substance(plain)
