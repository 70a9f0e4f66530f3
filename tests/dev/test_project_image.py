"""`kmcp build` without a container engine: which Dockerfiles it can honour and what it makes of them, the names
containerd will look images up by, and how a dev node is found (pure parts; the build itself runs on the node in
tests/node/test_build_load.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmcp.devcluster import devnode
from kmcp.devcluster.images import ImageBuildError, normalized_reference
from kmcp.devcluster.project_image import _copy_into, _is_ignored, parse_dockerfile
from kmcp.scaffold import python_templates


def test_the_python_scaffold_dockerfile_becomes_a_recipe() -> None:
    recipe = parse_dockerfile(python_templates.DOCKERFILE)
    assert recipe.workdir == "/app"
    assert recipe.env["PYTHONUNBUFFERED"] == "1" and recipe.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert recipe.copies == [(["pyproject.toml"], "/app/"), (["src"], "/app/src")]
    assert recipe.installs == [["."]]
    assert recipe.user == "65532:65532"
    assert recipe.cmd == ["python", "src/main.py"] and recipe.entrypoint is None


@pytest.mark.parametrize(("dockerfile", "named"), [
    ("FROM golang:1.26 AS build\nFROM alpine\n", "FROM golang:1.26"),
    ("FROM python:3.12-slim\nRUN apt-get update\n", "runs only `pip install"),
    ("FROM python:3.12-slim\nRUN pip install --index-url http://x .\n", "--index-url"),
    ("FROM python:3.12-slim\nCOPY --from=build /a /b\n", "without flags"),
    ("FROM python:3.12-slim\nWORKDIR $HOME\n", "variables are not expanded"),
    ("FROM python:3.12-slim\nHEALTHCHECK CMD true\n", "HEALTHCHECK"),
    ("WORKDIR /app\n", "no FROM"),
])
def test_what_only_an_engine_can_do_is_refused_by_name(dockerfile: str, named: str) -> None:
    with pytest.raises(ImageBuildError) as caught:
        parse_dockerfile(dockerfile)
    assert named in str(caught.value)


def test_continuations_shell_forms_and_legacy_env() -> None:
    recipe = parse_dockerfile("FROM python:3.11\n# a comment\nENV GREETING hello world\n"
                              "RUN pip install --no-cache-dir \\\n    'mcp>=1.9' httpx\nCMD python -m server\n")
    assert recipe.env["GREETING"] == "hello world"
    assert recipe.installs == [["mcp>=1.9", "httpx"]]
    assert recipe.cmd == ["/bin/sh", "-c", "python -m server"]


@pytest.mark.parametrize(("tag", "name"), [
    ("my-server:0.1.0", "docker.io/library/my-server:0.1.0"),
    ("my-server", "docker.io/library/my-server:latest"),
    ("team/my-server:1", "docker.io/team/my-server:1"),
    ("ghcr.io/team/my-server:1", "ghcr.io/team/my-server:1"),
    ("localhost:5000/srv", "localhost:5000/srv:latest"),
])
def test_tags_are_named_as_the_kubelet_asks_containerd_for_them(tag: str, name: str) -> None:
    assert normalized_reference(tag) == name


def test_copy_of_a_directory_honours_dockerignore(tmp_path: Path) -> None:
    project, stage = tmp_path / "p", tmp_path / "stage"
    (project / "src" / "__pycache__").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print()\n")
    (project / "src" / "__pycache__" / "main.pyc").write_bytes(b"x")
    (project / ".env").write_text("SECRET=1\n")
    ignored = ["__pycache__", ".env", "**/__pycache__"]
    assert _is_ignored(".env", ignored) and _is_ignored("src/__pycache__/main.pyc", ignored)
    _copy_into(stage, project, ["."], "/app/", ignored)
    assert sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()) == ["app/src/main.py"]
    with pytest.raises(ImageBuildError, match="outside the project"):
        _copy_into(stage, project, ["../"], "/app/", [])


def test_a_record_left_by_a_killed_node_is_reported_not_used(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    socket = tmp_path / "containerd.sock"
    socket.touch()
    record = devnode.DevNodeRecord(str(socket), int(gone.stdout), str(tmp_path / "admin.kubeconfig"))
    devnode.publish(record, [tmp_path / devnode.RECORD_NAME])
    with pytest.raises(devnode.DevNodeNotFound, match="is not running"):
        devnode.find(tmp_path)
    alive = devnode.DevNodeRecord(str(socket), os.getpid(), record.kubeconfig)
    devnode.publish(alive, [tmp_path / devnode.RECORD_NAME])
    assert devnode.find(tmp_path / devnode.RECORD_NAME) == alive
    devnode.unpublish(record, [tmp_path / devnode.RECORD_NAME])  # names another node: kept
    assert devnode.find(tmp_path) == alive
    devnode.unpublish(alive, [tmp_path / devnode.RECORD_NAME])
    assert not (tmp_path / devnode.RECORD_NAME).exists()
