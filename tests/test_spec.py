"""Decoding and validation of MCPServer and kmcp.yaml: field-precise messages a user can act on."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kmcp import spec


def minimal(**deployment: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kagent.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"transportType": "stdio", "deployment": {"image": "img:v1", "cmd": "/srv", **deployment}},
    }


def problems_of(doc: Any) -> list[str]:
    with pytest.raises(spec.SpecError) as caught:
        spec.validated(doc)
    return [str(p) for p in caught.value.problems]


def test_defaults_follow_the_guide() -> None:
    server = spec.validated(minimal())
    assert server.spec.deployment.port == 3000
    assert server.spec.deployment.args == []
    assert server.stdio == spec.StdioTransport(session_mode="isolated", warm_pool_size=1,
                                               session_idle_timeout_seconds=600, max_sessions=100)


def test_objects_from_the_apiserver_decode_with_extra_metadata() -> None:
    doc = minimal()
    doc["metadata"].update({"uid": "u-1", "generation": 4, "managedFields": [{"manager": "kubectl"}],
                            "creationTimestamp": "2026-01-01T00:00:00Z"})
    doc["status"] = {"observedGeneration": 3, "conditions": [
        {"type": "Ready", "status": "True", "reason": "DeploymentReady", "message": "ok",
         "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}]}
    server = spec.validated(doc)
    assert server.metadata.generation == 4
    assert server.status.conditions[0].reason == "DeploymentReady"


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["spec"].update(transportType="grpc"), "spec.transportType: must be one of http, stdio"),
    (lambda d: d["spec"]["deployment"].pop("image"), "spec.deployment.image: required"),
    (lambda d: d["spec"].pop("deployment"), "spec.deployment: required"),
    (lambda d: d["spec"]["deployment"].update(imagee="x"), "spec.deployment.imagee: unknown field"),
    (lambda d: d["spec"]["deployment"].update(port="web"), "spec.deployment.port: expected int, got str"),
    (lambda d: d["spec"]["deployment"].update(port=70000), "spec.deployment.port: must be <= 65535"),
    (lambda d: d["spec"]["deployment"].update(args="--flag"), "spec.deployment.args: expected array, got str"),
    (lambda d: d["spec"]["deployment"].update(env={"A": 1}), "spec.deployment.env.A: expected str, got int"),
    (lambda d: d["spec"]["deployment"].update(secretRefs=[{"name": "Bad_Name"}]),
     "spec.deployment.secretRefs[0].name: must be"),
    (lambda d: d["spec"].update(stdioTransport={"sessionMode": "pooled"}),
     "spec.stdioTransport.sessionMode: must be one of isolated, shared"),
    (lambda d: d.update(apiVersion="kagent.dev/v1"), "apiVersion: must be kagent.dev/v1alpha1"),
    (lambda d: d["spec"]["deployment"].pop("cmd"), "spec.deployment.cmd: required for stdio"),
    (lambda d: d["spec"]["deployment"].update(volumeMounts=[{"name": "nope", "mountPath": "/x"}]),
     "spec.deployment.volumeMounts[0].name: no volume named 'nope'"),
    (lambda d: d["spec"]["deployment"].update(volumes=[{"name": "kmcp", "emptyDir": {}}]),
     "spec.deployment.volumes[0].name: 'kmcp' is reserved"),
    (lambda d: d["spec"]["deployment"].update(volumes=[{"name": "c", "emptyDir": {}}],
                                               volumeMounts=[{"name": "c", "mountPath": "/config/x"}]),
     "spec.deployment.volumeMounts[0].mountPath: /config/x is reserved"),
    (lambda d: d["spec"]["deployment"].update(env={"A=B": "x"}),
     "spec.deployment.env.A=B: an environment variable name may not contain '='"),
    (lambda d: d["spec"]["deployment"].update(env={"TAB\tNAME": "x"}),
     "spec.deployment.env.TAB\tNAME: an environment variable name must be printable ASCII"),
    (lambda d: d["spec"]["deployment"].update(serviceAccount={}, serviceAccountName="sa"),
     "spec.deployment.serviceAccountName: mutually exclusive with serviceAccount"),
    (lambda d: d["spec"].update(transportType="http"), "spec.httpTransport: required when transportType is http"),
])
def test_bad_specs_get_field_precise_messages(mutate: Any, expected: str) -> None:
    doc = copy.deepcopy(minimal())
    mutate(doc)
    messages = problems_of(doc)
    assert any(m.startswith(expected) for m in messages), messages


def test_env_var_names_follow_the_apiservers_rule_for_its_version() -> None:
    """Kubernetes 1.32 relaxed env var names to any printable ASCII but "=": the controller, which knows the
    apiserver's version, refuses what that apiserver would refuse and nothing more."""
    relaxed = ["1BAD", "my var", "a:b", "$HOME", "..x"]
    for name in relaxed:
        doc = minimal(env={name: "x"})
        for version in (None, (1, 32), (1, 37), (2, 0)):
            assert spec.semantic_problems(spec.decode_mcpserver(doc), version) == [], (name, version)
        (problem,) = spec.semantic_problems(spec.decode_mcpserver(doc), (1, 31))
        assert problem.path == f"spec.deployment.env.{name}" and "Kubernetes 1.31" in problem.message
    for name in ("MY_ENV.NAME", "my-env", "_x", ".x"):
        assert spec.semantic_problems(spec.decode_mcpserver(minimal(env={name: "x"})), (1, 31)) == []
    (problem,) = spec.semantic_problems(spec.decode_mcpserver(minimal(env={"A=B": "x"})), (1, 37))
    assert problem.reason == "InvalidSpec" and "'='" in problem.message


def test_missing_command_has_its_own_reason() -> None:
    doc = minimal()
    del doc["spec"]["deployment"]["cmd"]
    with pytest.raises(spec.SpecError) as caught:
        spec.validated(doc)
    assert caught.value.problems[0].reason == "MissingCommand"


def test_non_mapping_documents_are_rejected() -> None:
    assert problems_of(["a", "list"]) == ["(document): expected a mapping (an MCPServer object)"]


def test_project_file_decodes_and_rejects_typos() -> None:
    project = spec.decode_project({
        "name": "my-mcp-server", "framework": "python", "description": "demo",
        "tools": {"echo": {"description": "Echo a message"}},
        "secrets": {"staging": {"enabled": True, "provider": "kubernetes", "secretName": "s", "namespace": "ns"}},
    })
    assert project.secrets["staging"].secret_name == "s"
    with pytest.raises(spec.SpecError, match=r"framework: must be one of go, python"):
        spec.decode_project({"name": "x", "framework": "rust"})
    with pytest.raises(spec.SpecError, match=r"secrets.dev.secretname: unknown field"):
        spec.decode_project({"name": "x", "framework": "go", "secrets": {"dev": {"secretname": "s"}}})
