"""A real helm (v3, built from the Go module proxy on first use and cached) and a `helm template` helper."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools.helm_binary import ensure_helm

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return ensure_helm()
    except RuntimeError as error:
        pytest.fail(f"cannot build helm: {error}")


def run_helm(helm: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    """``render("kmcp", "--set", "x=y", release="kmcp", namespace="kmcp-system")`` -> the rendered objects."""

    def _render(chart: str, *args: str | Path, release: str = "kmcp", namespace: str = "kmcp-system",
                ) -> list[dict[str, Any]]:
        result = run_helm(helm, "template", release, CHARTS / chart, "--namespace", namespace, *args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _render


def by_kind_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def manager(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The `manager` container of the controller Deployment."""
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "manager"]
    return dict(container)
