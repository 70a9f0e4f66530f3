"""Cluster fixtures for the CLI tests, reusing tests/controller's: the CRD and install RBAC (``installed``), the
controller ServiceAccount's kubeconfig, and :class:`ControllerProcess`. The controller here runs from this checkout
(``python -m kmcp controller``, no zipapp build) and watches only the test's namespace, so it never competes with
the controller tests' shared controller."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controller.conftest import ControllerProcess, controller_kubeconfig, installed

__all__ = ["controller_kubeconfig", "installed", "ns_controller"]
ROOT = Path(__file__).resolve().parents[2]


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
