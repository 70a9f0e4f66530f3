"""The CLI as a user meets it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def kmcp(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kmcp", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_help_lists_modes_and_commands() -> None:
    result = kmcp("--help")
    assert result.returncode == 0
    for word in ("adapter", "render", "validate", "crd"):
        assert word in result.stdout


def test_version() -> None:
    result = kmcp("--version")
    assert result.returncode == 0 and result.stdout.strip() == "kmcp 0.1.0"


def test_render_prints_children_of_a_guide_example() -> None:
    result = kmcp("render", "-f", "examples/mcpservers/04-configmap.yaml")
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert kinds == ["ServiceAccount", "Service", "Deployment"]
    assert "skipping ConfigMap/mcp-config" in result.stderr


def test_render_json_and_namespace_default() -> None:
    import json

    result = kmcp("render", "-f", "tests/specs/edge-stdio-defaults.yaml", "-n", "dev", "-o", "json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    assert {i["metadata"]["namespace"] for i in items} == {"dev"}


BAD_INPUTS = {
    "yaml-syntax": ("spec: [unclosed\n", "invalid YAML"),
    "unknown-field": ("apiVersion: kagent.dev/v1alpha1\nkind: MCPServer\nmetadata: {name: a}\n"
                      "spec: {transportType: stdio, deployment: {image: x, cmd: y, imagePullPolcy: Always}}\n",
                      "spec.deployment.imagePullPolcy: unknown field"),
    "wrong-type": ("apiVersion: kagent.dev/v1alpha1\nkind: MCPServer\nmetadata: {name: a}\n"
                   "spec: {transportType: stdio, deployment: {image: x, cmd: y, port: http}}\n",
                   "spec.deployment.port: expected int, got str"),
    "missing-image": ("apiVersion: kagent.dev/v1alpha1\nkind: MCPServer\nmetadata: {name: a}\n"
                      "spec: {transportType: stdio, deployment: {cmd: y}}\n", "spec.deployment.image: required"),
    "unknown-transport": ("apiVersion: kagent.dev/v1alpha1\nkind: MCPServer\nmetadata: {name: a}\n"
                          "spec: {transportType: grpc, deployment: {image: x}}\n",
                          "spec.transportType: must be one of http, stdio"),
    "not-a-mapping": ("- just\n- a list\n", "expected a mapping"),
    "empty": ("", "no MCPServer found"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("command", ["render", "validate"])
def test_bad_input_is_one_line_and_exit_2(case: str, command: str) -> None:
    text, expected = BAD_INPUTS[case]
    result = kmcp(command, "-f", "-", stdin=text)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_missing_file_is_a_usage_error() -> None:
    result = kmcp("render", "-f", "does-not-exist.yaml")
    assert result.returncode == 2
    assert "does-not-exist.yaml: No such file or directory" in result.stderr


def test_unknown_command_is_a_usage_error() -> None:
    result = kmcp("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_the_parser_imports_no_command_until_one_runs() -> None:
    """Every command module adds its own sub-parser, but building them all (as `kmcp --version` and `kmcp --help`
    do) must not import what the commands run: trio, httpx and kube alone cost more than the rest of the start-up."""
    probe = ("import sys\nfrom kmcp.cli import build_parser\nbuild_parser()\n"
             "heavy = ('kmcp.commands', 'kmcp.scaffold', 'kmcp.kube', 'kmcp.render', 'kmcp.spec', 'trio', 'httpx',"
             " 'yaml', 'msgspec', 'kubernetes')\n"
             "print(sorted(m for m in sys.modules if m.startswith(heavy)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_validate_reports_every_problem_of_every_document_one_line_each() -> None:
    text = ("apiVersion: kagent.dev/v1alpha1\nkind: MCPServer\nmetadata: {name: a}\nspec:\n"
            "  transportType: grpc\n  bogus: 1\n  deployment:\n    image: x\n    cmd: y\n    port: abc\n"
            "    args: [ok, 7]\n    env: {1OK: x, A=B: x}\n    volumeMounts: [{name: data, mountPath: rel}]\n"
            "---\napiVersion: kagent.dev/v1alpha1\nkind: MCPServer\nmetadata: {name: b}\n"
            "spec: {transportType: stdio, deployment: {cmd: y}}\n"
            "---\napiVersion: kagent.dev/v1alpha1\nkind: MCPServer\nmetadata: {name: c}\n"
            "spec: {transportType: stdio, deployment: {image: x, cmd: y}}\n")
    result = kmcp("validate", "-f", "-", stdin=text)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"kmcp: error: - (document {n}): {problem}" for n, problem in [
        (1, "spec.transportType: must be one of http, stdio"),
        (1, "spec.bogus: unknown field (check the spelling)"),
        (1, "spec.deployment.port: expected int, got str"),
        (1, "spec.deployment.args[1]: expected str, got int"),
        (1, "spec.deployment.env.A=B: an environment variable name may not contain '=' (the environment holds "
            "NAME=VALUE)"),
        (1, "spec.deployment.volumeMounts[0].name: no volume named 'data' in spec.deployment.volumes"),
        (1, "spec.deployment.volumeMounts[0].mountPath: must be an absolute path"),
        (2, "spec.deployment.image: required"),
    ]], result.stderr
