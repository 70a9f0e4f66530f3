"""The developer commands work from dist/kmcp alone: templates are string constants, no package data needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def run(zipapp: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "SHIV_ROOT": str(cwd / ".shiv")}
    return subprocess.run([os.path.realpath(sys.executable), "-I", str(zipapp), *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_init_add_tool_and_completion_from_the_zipapp(zipapp: Path, tmp_path: Path) -> None:
    for framework in ("python", "go"):
        result = run(zipapp, "init", framework, f"{framework}-srv", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        added = run(zipapp, "add-tool", "lookup", "--project-dir", f"{framework}-srv", cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        tools = yaml.safe_load((tmp_path / f"{framework}-srv" / "kmcp.yaml").read_text())["tools"]
        assert set(tools) == {"echo", "lookup"}
    assert "def lookup(" in (tmp_path / "python-srv" / "src" / "main.py").read_text()
    assert (tmp_path / "go-srv" / "lookup_tool.go").is_file()
    completion = run(zipapp, "completion", "bash", cwd=tmp_path)
    assert completion.returncode == 0 and "add-tool" in completion.stdout

