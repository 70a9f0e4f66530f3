"""Cluster fixtures for the CLI tests, reusing tests/controller's: the CRD and install RBAC (``installed``), the
controller ServiceAccount's kubeconfig, and :class:`ControllerProcess`. The controller here runs from this checkout
(``python -m kmcp controller``, no zipapp build) and watches only the test's namespace, so it never competes with
the controller tests' shared controller."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import kmcp
from tests.controller.conftest import ControllerProcess, controller_kubeconfig, installed

__all__ = ["controller_kubeconfig", "installed", "ns_controller", "scaffold_python"]
ROOT = Path(__file__).resolve().parents[2]
MCP2_PINS = ROOT / "tests/servers/requirements-mcp2.txt"


@pytest.fixture(scope="session")
def scaffold_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a virtualenv made as the scaffold's Dockerfile makes its image: ``pip install .`` of a fresh
    ``kmcp init python`` project, so its generated servers run on what its own pyproject.toml resolves to (from
    PyPI, through pip's cache). mcp is held to the pin the other mcp 2.x tests use, so a newer 2.x release cannot
    change a run without a commit."""
    base = tmp_path_factory.mktemp("scaffold-venv")
    assert kmcp("init", "python", base / "project").returncode == 0
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=120)
    python = base / "venv" / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "-c", str(MCP2_PINS), str(base / "project")],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return python


@pytest.fixture
def ns_controller(namespace: str, controller_kubeconfig: Path, tmp_path: Path) -> Iterator[ControllerProcess]:
    """`kmcp controller --namespace NS` as the install's ServiceAccount, ready before the test starts."""
    proc = ControllerProcess(ROOT, controller_kubeconfig, tmp_path, f"--namespace={namespace}",
                             "--metrics-bind-address=0", name="cli-controller")
    proc.argv = [sys.executable, "-m", "kmcp", *proc.argv[3:]]
    proc.env = {**proc.env, "PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc.start()
    yield proc
    proc.stop()
    proc.assert_no_forbidden()
