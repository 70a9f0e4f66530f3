"""`kmcp init`: the files a new project gets, and that the generated servers really speak MCP."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmcp import spec
from kmcp.scaffold import go_templates
from tests.cli.helpers import MODERN_VERSION, kmcp, mcp_session, modern_request, stdio_exchange

PYTHON_FILES = {"src/main.py", "kmcp.yaml", "pyproject.toml", "Dockerfile", ".gitignore", ".dockerignore", "README.md"}
GO_FILES = {"main.go", "go.mod", "kmcp.yaml", "Dockerfile", ".gitignore", ".dockerignore", "README.md"}


def files_in(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def test_init_python_writes_the_guides_layout(tmp_path: Path) -> None:
    project = tmp_path / "my-mcp-server"
    result = kmcp("init", "python", project, "--description", "Tools for my team")
    assert result.returncode == 0, result.stderr
    assert files_in(project) == PYTHON_FILES
    steps = result.stdout.split("next: ", 1)[1].splitlines()  # the guide's next step is run, in its .venv
    assert steps[0].startswith(f"python -m venv {project}/.venv && {project}/.venv/bin/pip install -e {project}")
    assert steps[1].split()[:3] == ["kmcp", "run", "--project-dir"]
    assert steps[2] == f"then: kmcp build --project-dir {project} -t <image>:latest"
    config = spec.decode_project(yaml.safe_load((project / "kmcp.yaml").read_text()))
    assert (config.name, config.framework, config.description) == ("my-mcp-server", "python", "Tools for my team")
    assert (config.command, config.args) == ("python", ["src/main.py"])
    assert set(config.tools) == {"echo"}
    assert "\nversion: 0.1.0\n" in (project / "kmcp.yaml").read_text()  # shown even at its default
    dockerfile = (project / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM python:") and 'CMD ["python", "src/main.py"]' in dockerfile
    pyproject = (project / "pyproject.toml").read_text()
    assert 'name = "my-mcp-server"' in pyproject
    import tomllib

    assert tomllib.loads(pyproject)["project"]["description"] == "Tools for my team"
    assert tomllib.loads(pyproject)["project"]["dependencies"] == ["mcp>=2.3,<3"]
    main = (project / "src" / "main.py").read_text()
    assert "from mcp.server.mcpserver import MCPServer" in main and "fastmcp" not in main


def test_init_go_writes_an_sdk_project(tmp_path: Path) -> None:
    project = tmp_path / "go-server"
    result = kmcp("init", "go", project)
    assert result.returncode == 0, result.stderr
    assert files_in(project) == GO_FILES
    config = spec.decode_project(yaml.safe_load((project / "kmcp.yaml").read_text()))
    assert config.framework == "go" and config.command == go_templates.BINARY_PATH
    assert f"require {go_templates.GO_SDK_MODULE} {go_templates.GO_SDK_VERSION}" in (project / "go.mod").read_text()
    assert '"github.com/modelcontextprotocol/go-sdk/mcp"' in (project / "main.go").read_text()
    dockerfile = (project / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") == 2 and f'CMD ["{go_templates.BINARY_PATH}"]' in dockerfile


def test_init_refuses_a_non_empty_directory_without_force(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    result = kmcp("init", "python", tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("kmcp: error: ") and "--force" in result.stderr
    assert "Traceback" not in result.stderr
    assert files_in(tmp_path) == {"notes.txt"}

    forced = kmcp("init", "python", tmp_path, "--force", "--name", "notes-server")
    assert forced.returncode == 0, forced.stderr
    assert files_in(tmp_path) == PYTHON_FILES | {"notes.txt"}
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert "name: notes-server" in (tmp_path / "kmcp.yaml").read_text()


def test_init_derives_a_kubernetes_name_from_the_directory(tmp_path: Path) -> None:
    result = kmcp("init", "python", tmp_path / "My_Server")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "My_Server" / "kmcp.yaml").read_text())["name"] == "my-server"


@pytest.mark.parametrize("args", [["--name", "Not_Valid"], ["ruby"]])
def test_init_bad_input_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    argv = ["init", "python", tmp_path / "x", *args] if args[0] == "--name" else ["init", *args, tmp_path / "x"]
    result = kmcp(*argv)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


def modern_discover_and_call(cwd: Path, command: list[str], tool: str,
                             arguments: dict[str, object]) -> list[dict[str, Any]]:
    """server/discover then tools/call as 2026-07-28 requests on one fresh process: no initialize at all."""
    return stdio_exchange(cwd, command, [modern_request(1, "server/discover"),
                                         modern_request(2, "tools/call", {"name": tool, "arguments": arguments})])


def call_texts(response: dict[str, Any]) -> list[str]:
    return [item.get("text", "") for item in response["result"]["content"]]


@pytest.mark.slow
def test_generated_python_server_speaks_both_eras_on_stdio(tmp_path: Path, scaffold_python: Path) -> None:
    """The scaffold on its own pyproject's mcp 2.x: a 2026-07-28 client (discover, call) on one process, the
    handshake-era SDK client (mcp 1.x, initialize first) on another."""
    project = tmp_path / "hello"
    assert kmcp("init", "python", project).returncode == 0
    command = [str(scaffold_python), "src/main.py"]
    discover, called = modern_discover_and_call(project, command, "echo", {"message": "hola"})
    assert MODERN_VERSION in discover["result"]["supportedVersions"], discover
    assert discover["result"]["_meta"]["io.modelcontextprotocol/serverInfo"] == {"name": "hello", "version": "0.1.0"}
    assert "tools" in discover["result"]["capabilities"]
    assert called["result"]["resultType"] == "complete" and called["result"]["isError"] is False
    assert call_texts(called) == ["hola"]

    seen = mcp_session(project, command, {"echo": {"message": "hola"}})
    assert seen["protocol"] == "2025-11-25"  # the handshake, negotiated by initialize
    assert seen["server_name"] == "hello"
    assert seen["tools"] == {"echo": "Echo the message back."}
    assert seen["calls"]["echo"] == {"error": False, "text": ["hola"]}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_generated_go_server_builds_and_answers_an_mcp_client(tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.skip("go is not on PATH")
    project = tmp_path / "gosrv"
    assert kmcp("init", "go", project).returncode == 0
    added = kmcp("add-tool", "reverse-text", "--description", "Reverse it", "--project-dir", project)
    assert added.returncode == 0, added.stderr
    for argv in (["go", "mod", "tidy"], ["go", "vet", "."], ["go", "build", "-o", "server", "."]):
        proc = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    seen = mcp_session(project, [str(project / "server")],
                       {"echo": {"message": "hi"}, "reverse-text": {"text": "abc"}})
    assert seen["protocol"] == "2025-11-25"
    assert seen["server_name"] == "gosrv"
    assert seen["tools"] == {"echo": "Echo the message back.", "reverse-text": "Reverse it"}
    assert seen["calls"]["echo"]["error"] is False and "hi" in seen["calls"]["echo"]["text"][0]
    assert seen["calls"]["reverse-text"]["error"] is False
    # The SDK (v1.8.0) also serves 2026-07-28 on stdio: discover and a call on a process that never saw initialize.
    discover, called = modern_discover_and_call(project, [str(project / "server")], "echo", {"message": "hi"})
    assert MODERN_VERSION in discover["result"]["supportedVersions"], discover
    assert called["result"]["resultType"] == "complete" and called["result"]["structuredContent"] == {"message": "hi"}


@pytest.mark.slow
def test_generated_pyproject_builds(tmp_path: Path) -> None:
    """What the Dockerfile's `pip install .` does first: build the project in an isolated build environment
    (pip fetches setuptools from PyPI, as in `docker build`)."""
    assert kmcp("init", "python", tmp_path / "srv").returncode == 0
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w",
                           str(tmp_path / "wheels"), str(tmp_path / "srv")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "wheels").glob("srv-0.1.0-*.whl")
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    assert "Requires-Dist: mcp" in zipfile.ZipFile(wheel).read(metadata).decode()
