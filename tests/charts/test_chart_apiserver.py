"""The rendered charts are accepted by a real kube-apiserver (server-side apply, dry run: full validation and
admission, RBAC escalation checks included, nothing persisted)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.charts.conftest import CHARTS, Render
from tests.kubehelpers import Kube

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def dry_run_apply(kube: Kube, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    path = kube.path(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    response = kube.request("PATCH", path, content=json.dumps(obj),
                            headers={"Content-Type": "application/apply-patch+yaml"},
                            params={"fieldManager": "helm-test", "force": "true", "dryRun": "All"})
    return dict(response.json())


@pytest.mark.parametrize("values", [[], ["-f", str(CHARTS / "kmcp" / "values-ha.yaml")],
                                    ["--set", "controller.metrics.secureServing=false"]],
                         ids=["default", "ha", "metrics-http"])
def test_apiserver_accepts_the_controller_chart(kube: Kube, namespace: str, render: Render,
                                                values: list[str]) -> None:
    objects = render("kmcp", *values, "--set", f"fullnameOverride={namespace}", namespace=namespace)
    for obj in objects:
        live = dry_run_apply(kube, obj)
        assert (live["kind"], live["metadata"]["name"]) == (obj["kind"], obj["metadata"]["name"])
        if obj["kind"] == "Deployment":
            container = live["spec"]["template"]["spec"]["containers"][0]
            assert container["name"] == "manager" and container["args"][0] == "controller"


def test_apiserver_accepts_the_crd_chart(kube: Kube, render: Render) -> None:
    (crd,) = render("kmcp-crds", release="kmcp-crds")
    live = dry_run_apply(kube, crd)
    assert live["metadata"]["name"] == "mcpservers.kagent.dev"
