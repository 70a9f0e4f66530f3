"""dist/kmcp is one executable file that runs with only a Python interpreter and behaves like `python -m kmcp`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def run(zipapp: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: no venv on PATH, a fresh SHIV_ROOT, so nothing outside the file can help it.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "SHIV_ROOT": str(tmp / "shiv")}
    interpreter = os.path.realpath(sys.executable)
    return subprocess.run([interpreter, "-I", str(zipapp), *args], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=120)


def test_zipapp_is_a_single_executable_file(zipapp: Path) -> None:
    assert zipapp.is_file() and os.access(zipapp, os.X_OK)
    assert zipapp.read_bytes()[:2] == b"#!"


def test_zipapp_version_and_render_match_the_package(zipapp: Path, tmp_path: Path) -> None:
    version = run(zipapp, "--version", tmp=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "kmcp 0.1.0"
    example = str(ROOT / "examples/mcpservers/06-custom-volumes.yaml")
    packaged = run(zipapp, "render", "-f", example, tmp=tmp_path)
    source = subprocess.run([sys.executable, "-m", "kmcp", "render", "-f", example], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert packaged.returncode == 0, packaged.stderr
    assert packaged.stdout == source.stdout


def test_zipapp_bad_input_exit_code(zipapp: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: kagent.dev/v1alpha1\nkind: MCPServer\nmetadata: {name: a}\nspec: {deployment: {}}\n")
    result = run(zipapp, "validate", "-f", str(bad), tmp=tmp_path)
    assert result.returncode == 2
    assert "spec.deployment.image: required" in result.stderr
