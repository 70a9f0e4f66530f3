"""The npm peers of the adapter tests: installed (pinned, cached) by scripts/npm-peers, found or reported."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]


def install_node_modules() -> tuple[Path | None, str]:
    """Run scripts/npm-peers; the cached node_modules directory, or why there is none."""
    if shutil.which("npm") is None:
        return None, "npm is needed to install the npm peers (scripts/npm-peers)"
    done = subprocess.run([str(ROOT / "scripts/npm-peers")], capture_output=True, text=True, timeout=600,
                          check=False)
    if done.returncode != 0:
        return None, f"scripts/npm-peers failed: {done.stderr[-2000:]}"
    return Path(done.stdout.strip().splitlines()[-1]) / "node_modules", ""


def missing_peer(problem: str) -> NoReturn:
    """Skip with the reason, except under CI=true, where a missing peer is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)
