"""The charts' files as the guide describes them, checked without helm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"

# Every key of the guide's values.yaml and values table ("Configuracion del Helm Chart"), as dotted paths.
GUIDE_VALUE_KEYS = {
    "nameOverride", "fullnameOverride", "namespaceOverride",
    "image.repository", "image.pullPolicy",
    "imagePullSecrets",
    "controller.replicaCount", "controller.leaderElection.enabled",
    "controller.healthProbe.bindAddress",
    "controller.healthProbe.livenessProbe.initialDelaySeconds", "controller.healthProbe.livenessProbe.periodSeconds",
    "controller.healthProbe.readinessProbe.initialDelaySeconds", "controller.healthProbe.readinessProbe.periodSeconds",
    "controller.metrics.enabled", "controller.metrics.bindAddress", "controller.metrics.secureServing",
    "controller.env",
    "podAnnotations",
    "podSecurityContext.runAsNonRoot", "podSecurityContext.seccompProfile.type",
    "securityContext.allowPrivilegeEscalation", "securityContext.capabilities.drop",
    "resources.limits.cpu", "resources.limits.memory", "resources.requests.cpu", "resources.requests.memory",
    "nodeSelector", "tolerations", "affinity",
    "serviceAccount.create", "serviceAccount.annotations", "serviceAccount.name",
    "rbac.create",
    "service.type", "service.port", "service.targetPort",
}

GUIDE_DEFAULTS = {
    "image.repository": "ghcr.io/kagent-dev/kmcp/controller", "image.pullPolicy": "IfNotPresent",
    "controller.replicaCount": 1, "controller.leaderElection.enabled": True,
    "controller.healthProbe.bindAddress": ":8081",
    "controller.healthProbe.livenessProbe.initialDelaySeconds": 15,
    "controller.healthProbe.livenessProbe.periodSeconds": 20,
    "controller.healthProbe.readinessProbe.initialDelaySeconds": 5,
    "controller.healthProbe.readinessProbe.periodSeconds": 10,
    "controller.metrics.enabled": True, "controller.metrics.bindAddress": ":8443",
    "controller.metrics.secureServing": True,
    "podSecurityContext.runAsNonRoot": True, "podSecurityContext.seccompProfile.type": "RuntimeDefault",
    "securityContext.allowPrivilegeEscalation": False, "securityContext.capabilities.drop": ["ALL"],
    "resources.limits.cpu": "500m", "resources.limits.memory": "128Mi",
    "resources.requests.cpu": "10m", "resources.requests.memory": "64Mi",
    "serviceAccount.create": True, "serviceAccount.name": "", "rbac.create": True,
    "service.type": "ClusterIP", "service.port": 8443, "service.targetPort": 8443,
}

# The guide's "Ejemplo: Alta Disponibilidad".
GUIDE_HA_VALUES = {
    "controller": {"replicaCount": 3, "leaderElection": {"enabled": True}},
    "resources": {"limits": {"cpu": "1000m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "kmcp"}},
            "topologyKey": "kubernetes.io/hostname",
        },
    }]}},
}


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def test_crd_chart_holds_the_generated_crd_verbatim() -> None:
    chart_copy = CHARTS / "kmcp-crds" / "templates" / "kagent.dev_mcpservers.yaml"
    assert chart_copy.read_bytes() == (ROOT / "manifests" / "crd" / "kagent.dev_mcpservers.yaml").read_bytes(), (
        "charts/kmcp-crds is stale: cp manifests/crd/kagent.dev_mcpservers.yaml charts/kmcp-crds/templates/"
    )


def test_charts_are_version_0_1_0() -> None:
    for chart in ("kmcp", "kmcp-crds"):
        meta = yaml.safe_load((CHARTS / chart / "Chart.yaml").read_text())
        assert (meta["apiVersion"], meta["name"]) == ("v2", chart)
        assert (meta["version"], meta["appVersion"]) == ("0.1.0", "0.1.0")


def test_values_yaml_has_every_value_of_the_guide_with_its_default() -> None:
    values = flatten(yaml.safe_load((CHARTS / "kmcp" / "values.yaml").read_text()))
    assert set(values) >= GUIDE_VALUE_KEYS, sorted(GUIDE_VALUE_KEYS - set(values))
    for key, default in GUIDE_DEFAULTS.items():
        assert values[key] == default, key
    for key in ("nameOverride", "fullnameOverride", "namespaceOverride"):
        assert values[key] == ""
    for key in ("imagePullSecrets", "controller.env", "tolerations"):
        assert values[key] == []
    for key in ("podAnnotations", "nodeSelector", "affinity", "serviceAccount.annotations"):
        assert values[key] == {}
    assert "image.tag" not in values  # defaults to the chart's appVersion


def test_values_ha_is_the_guides_example() -> None:
    assert yaml.safe_load((CHARTS / "kmcp" / "values-ha.yaml").read_text()) == GUIDE_HA_VALUES
