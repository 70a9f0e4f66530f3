"""The ``kmcp dev up`` tests here pin the local pod runner (``KMCP_DEV_NODE=local``): they prove that mode, in
seconds, on any machine. The real-node mode has its own end-to-end test in tests/node/test_a_devup.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def local_pod_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMCP_DEV_NODE", "local")
