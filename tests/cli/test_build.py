"""`kmcp build`: which engine it picks and the exact commands it runs.

A unit test of command construction: PATH holds only fake `docker`/`podman`/`kind` scripts that record their
argv, so no container engine is needed (and none is faked anywhere else).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.cli.helpers import kmcp


class FakeTools:
    """A bin directory of recording shell scripts; each call appends `name arg arg...` to a log."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "calls.log"
        self.log.touch()
        # Only what the scripts and python need: a bin with sh, and the recording tools.
        for tool in ("sh", "cat"):
            found = shutil.which(tool)
            assert found
            (self.bin / tool).symlink_to(found)

    def add(self, name: str, exit_code: int = 0, info_exit: int = 0, output: str = "") -> None:
        script = self.bin / name
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{name} $*" >> "{self.log}"\n'
            f'if [ "$1" = info ]; then exit {info_exit}; fi\n'
            f"echo '{output}'\n"
            f"exit {exit_code}\n"
        )
        script.chmod(0o755)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def env(self) -> dict[str, str]:
        return {"PATH": str(self.bin), "HOME": os.environ.get("HOME", "/tmp")}


@pytest.fixture
def tools(tmp_path: Path) -> FakeTools:
    return FakeTools(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "srv"
    assert kmcp("init", "python", directory).returncode == 0
    return directory


def test_build_with_docker_tags_and_streams_output(tools: FakeTools, project: Path) -> None:
    tools.add("docker", output="Step 1/5 : FROM python")
    result = kmcp("build", "--project-dir", project, "-t", "srv:dev", env=tools.env())
    assert result.returncode == 0, result.stderr
    assert tools.calls() == ["docker info", f"docker build -t srv:dev -f {project}/Dockerfile {project}"]
    assert "Step 1/5" in result.stdout  # the engine's own output reaches the terminal
    assert "built srv:dev" in result.stdout


def test_build_platform_push_and_kind_load(tools: FakeTools, project: Path) -> None:
    tools.add("docker")
    tools.add("kind")
    result = kmcp("build", "--project-dir", project, "-t", "registry.example/srv:1", "--platform", "linux/arm64",
                  "--push", "--kind-load-cluster", "dev", env=tools.env())
    assert result.returncode == 0, result.stderr
    assert tools.calls() == [
        "docker info",
        f"docker build -t registry.example/srv:1 -f {project}/Dockerfile --platform linux/arm64 {project}",
        "docker push registry.example/srv:1",
        "kind load docker-image registry.example/srv:1 --name dev",
    ]


def test_default_tag_comes_from_kmcp_yaml(tools: FakeTools, project: Path) -> None:
    tools.add("docker")
    assert kmcp("build", "--project-dir", project, env=tools.env()).returncode == 0
    assert tools.calls()[1].startswith("docker build -t srv:0.1.0 ")


def test_podman_when_docker_has_no_daemon(tools: FakeTools, project: Path) -> None:
    tools.add("docker", info_exit=1)
    tools.add("podman")
    result = kmcp("build", "--project-dir", project, "-t", "srv:dev", env=tools.env())
    assert result.returncode == 0, result.stderr
    assert tools.calls() == ["docker info", "podman info",
                             f"podman build -t srv:dev -f {project}/Dockerfile {project}"]


def test_no_container_engine_and_a_dockerfile_only_an_engine_can_build_is_a_clear_failure(
        tools: FakeTools, tmp_path: Path) -> None:
    go_project = tmp_path / "gosrv"
    assert kmcp("init", "go", go_project).returncode == 0
    result = kmcp("build", "--project-dir", go_project, "-t", "srv:dev", env=tools.env())
    assert result.returncode == 1
    first, *rest = result.stderr.strip().splitlines()
    assert first.startswith("kmcp: error: no container engine: install Docker or Podman")
    assert "cannot do this Dockerfile: FROM golang" in first and not rest, result.stderr


def test_engine_that_does_not_answer_info_is_named(tools: FakeTools, project: Path) -> None:
    tools.add("docker", info_exit=1)
    result = kmcp("build", "--project-dir", project, "-t", "srv:dev", "--push", env=tools.env())
    assert result.returncode == 1
    assert "no container engine: install Docker or Podman" in result.stderr and "docker info" in result.stderr
    assert "--push needs it" in result.stderr
    assert tools.calls() == ["docker info"]


def test_load_dev_node_without_a_running_node_fails_before_building(tools: FakeTools, project: Path,
                                                                   tmp_path: Path) -> None:
    tools.add("docker")
    cluster = tmp_path / "cluster"  # a cluster directory whose node never ran
    cluster.mkdir()
    result = kmcp("build", "--project-dir", project, "--load-dev-node", cluster, env=tools.env())
    assert result.returncode == 1
    assert f"--load-dev-node: no dev node recorded at {cluster / 'dev-node.json'}" in result.stderr
    assert tools.calls() == []


def test_failed_build_is_exit_1(tools: FakeTools, project: Path) -> None:
    tools.add("docker", exit_code=3)
    result = kmcp("build", "--project-dir", project, "-t", "srv:dev", env=tools.env())
    assert result.returncode == 1 and "docker build failed (exit 3)" in result.stderr


def test_kind_missing_fails_before_building(tools: FakeTools, project: Path) -> None:
    tools.add("docker")
    result = kmcp("build", "--project-dir", project, "-t", "srv:dev", "--kind-load-cluster", "kind", env=tools.env())
    assert result.returncode == 1 and "needs kind on PATH" in result.stderr
    assert tools.calls() == []


def test_missing_dockerfile_is_a_usage_error(tools: FakeTools, tmp_path: Path) -> None:
    tools.add("docker")
    (tmp_path / "empty").mkdir()
    result = kmcp("build", "--project-dir", tmp_path / "empty", "-t", "x:1", env=tools.env())
    assert result.returncode == 2 and "Dockerfile: not found" in result.stderr
    assert tools.calls() == []
