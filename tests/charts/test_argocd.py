"""examples/argocd: the guide's three Applications, checked against the Application schema and the charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import CHARTS, ROOT, Render, manager, run_helm

EXAMPLES = ROOT / "examples" / "argocd"

# The argoproj.io/v1alpha1 Application fields these examples may use: a hand-written subset of the CRD's schema.
# A dict maps a field to its sub-fields; a type is a leaf; a one-element list is "a list of that".
SOURCE: dict[str, Any] = {
    "repoURL": str, "chart": str, "path": str, "targetRevision": str, "ref": str,
    "helm": {"values": str, "valueFiles": [str], "releaseName": str, "valuesObject": dict,
             "parameters": [{"name": str, "value": str, "forceString": bool}], "ignoreMissingValueFiles": bool,
             "skipCrds": bool, "passCredentials": bool, "version": str, "namespace": str},
}
APPLICATION: dict[str, Any] = {
    "apiVersion": str, "kind": str,
    "metadata": {"name": str, "namespace": str, "labels": dict, "annotations": dict, "finalizers": [str]},
    "spec": {
        "project": str,
        "source": SOURCE,
        "sources": [SOURCE],
        "destination": {"server": str, "namespace": str, "name": str},
        "syncPolicy": {
            "automated": {"prune": bool, "selfHeal": bool, "allowEmpty": bool},
            "syncOptions": [str],
            "retry": {"limit": int, "backoff": {"duration": str, "factor": int, "maxDuration": str}},
            "managedNamespaceMetadata": {"labels": dict, "annotations": dict},
        },
        "ignoreDifferences": [dict],
        "revisionHistoryLimit": int,
        "info": [{"name": str, "value": str}],
    },
}
KNOWN_SYNC_OPTIONS = {"CreateNamespace=true", "ServerSideApply=true", "Replace=true", "PruneLast=true",
                      "ApplyOutOfSyncOnly=true", "Validate=false", "RespectIgnoreDifferences=true"}


def schema_problems(value: Any, schema: Any, path: str) -> list[str]:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        problems: list[str] = []
        for key, item in value.items():
            if key not in schema:
                problems.append(f"{path}.{key}: not an Application field")
            else:
                problems += schema_problems(item, schema[key], f"{path}.{key}")
        return problems
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in schema_problems(item, schema[0], f"{path}[{i}]")]
    if schema is int and isinstance(value, bool):
        return [f"{path}: expected int"]
    return [] if isinstance(value, schema) else [f"{path}: expected {schema.__name__}, got {type(value).__name__}"]


def applications() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return found


APPS = applications()


def sources(app: dict[str, Any]) -> list[dict[str, Any]]:
    spec = app["spec"]
    return list(spec["sources"]) if "sources" in spec else [spec["source"]]


def test_the_guides_three_options_are_there() -> None:
    assert [name for name, _ in APPS] == [
        "01-application-simple.yaml:kmcp",
        "02-crds-and-controller.yaml:kmcp-crds", "02-crds-and-controller.yaml:kmcp-controller",
        "03-from-git.yaml:kmcp",
    ]


@pytest.mark.parametrize(("name", "app"), APPS, ids=[n for n, _ in APPS])
def test_application_uses_only_schema_fields(name: str, app: dict[str, Any]) -> None:
    assert schema_problems(app, APPLICATION, "") == []
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    spec = app["spec"]
    assert ("source" in spec) != ("sources" in spec), "exactly one of source / sources"
    assert spec["project"] == "default" and app["metadata"]["namespace"] == "argocd"
    assert spec["destination"] == {"server": "https://kubernetes.default.svc", "namespace": "kmcp-system"}
    assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert "CreateNamespace=true" in spec["syncPolicy"]["syncOptions"]
    assert set(spec["syncPolicy"]["syncOptions"]) <= KNOWN_SYNC_OPTIONS
    for source in sources(app):
        assert ("chart" in source) != ("path" in source), "a Helm repository source names a chart, a Git one a path"
        if "chart" in source:
            chart = yaml.safe_load((CHARTS / source["chart"] / "Chart.yaml").read_text())
            assert source["targetRevision"] == chart["version"]  # the version our chart has


def test_sync_waves_put_the_crds_before_the_controller() -> None:
    waves = {app["metadata"]["name"]: int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
             for name, app in APPS if name.startswith("02-")}
    assert waves["kmcp-crds"] < waves["kmcp-controller"]
    (crds,) = [app for name, app in APPS if name.endswith(":kmcp-crds")]
    assert sources(crds)[0]["chart"] == "kmcp-crds"


def test_multi_source_application_installs_the_crds_first() -> None:
    app = dict(APPS)["01-application-simple.yaml:kmcp"]
    assert [s["chart"] for s in sources(app)] == ["kmcp-crds", "kmcp"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_inline_values_render_with_the_chart(render: Render, tmp_path: Path) -> None:
    app = dict(APPS)["01-application-simple.yaml:kmcp"]
    inline = sources(app)[1]["helm"]["values"]
    values = tmp_path / "values.yaml"
    values.write_text(inline)
    objects = render("kmcp", "-f", values)
    container = manager(objects)
    assert "--leader-elect" in container["args"]
    assert container["resources"] == yaml.safe_load(inline)["resources"]


def test_every_value_file_a_chart_source_names_ships_in_that_chart() -> None:
    """A chart-repository source reads valueFiles from inside the chart package (not from Git): the file the
    guide's example 02 names must be there, or the Application cannot sync."""
    named = [(source["chart"], value_file) for _, app in APPS for source in sources(app) if "chart" in source
             for value_file in source.get("helm", {}).get("valueFiles", []) if not value_file.startswith("$")]
    assert ("kmcp", "values-prod.yaml") in named
    for chart, value_file in named:
        assert (CHARTS / chart / value_file).is_file(), (chart, value_file)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_shipped_values_files_render_and_pass_the_schema(render: Render) -> None:
    for value_file in ("values-prod.yaml", "values-ha.yaml"):
        objects = render("kmcp", "-f", CHARTS / "kmcp" / value_file)
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        assert deployment["spec"]["replicas"] >= 2


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(("setting", "says"), [("controler.replicaCount=3", "controler"),
                                               ("controller.replicaCount=abc", "replicaCount"),
                                               ("image.pullPolicy=Sometimes", "pullPolicy")])
def test_the_values_schema_refuses_typos_and_wrong_types(helm: Path, setting: str, says: str) -> None:
    result = run_helm(helm, "template", "kmcp", CHARTS / "kmcp", "--set", setting)
    assert result.returncode != 0, result.stdout[:500]
    assert says in result.stderr, result.stderr
