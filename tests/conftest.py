"""Shared fixtures. Cluster fixtures run a real etcd + kube-apiserver + kube-controller-manager (see DESIGN.md,
"Tests against a real Kubernetes API"): one control plane per pytest session, a fresh namespace per test.

Every test under tests/cluster/, and every test that uses one of the cluster fixtures, gets the ``cluster`` marker
automatically, so ``pytest -m "not cluster"`` skips them all. The binaries are built (cold: ~9 minutes, then cached)
before the first cluster test runs, outside any per-test timeout.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmcp.devcluster.binaries import ensure_binaries, ensure_dns_binaries, ensure_node_binaries
from kmcp.devcluster.control_plane import ControlPlane
from kmcp.devcluster.images import debian_rootfs_layer
from kmcp.devcluster.node import unsupported_reason
from tests.kubehelpers import Kube

CLUSTER_FIXTURES = frozenset({"control_plane", "kubeconfig", "kube", "namespace"})
NODE_FIXTURES = frozenset({"dev_cluster", "node_kube", "node_namespace", "node_controller"})
_CLUSTER_DIR = Path(__file__).parent / "cluster"
_NODE_DIR = Path(__file__).parent / "node"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        in_cluster_dir = _CLUSTER_DIR in Path(str(item.path)).parents
        fixtures = getattr(item, "fixturenames", ())
        if in_cluster_dir or CLUSTER_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.cluster)
        if _NODE_DIR in Path(str(item.path)).parents or NODE_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.cluster)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries once, before any test's timeout starts, if a selected test needs the cluster."""
    if session.config.option.collectonly:
        return
    if any(item.get_closest_marker("cluster") for item in session.items):
        chain = ensure_binaries(log=False)
        print(f"\nkmcp control-plane binaries: {chain.directory}", file=sys.stderr)
    if any(item.get_closest_marker("node") for item in session.items) and unsupported_reason() is None:
        # Cold: ~2 min of Go with the control plane's build cache (+1.5 min CoreDNS), ~4 min of debootstrap;
        # cached afterwards.
        node = ensure_node_binaries(log=False)
        coredns = ensure_dns_binaries(log=False)
        rootfs = debian_rootfs_layer(log=False)
        print(f"kmcp node binaries: {node.directory}, {coredns.directory}; image root filesystem: {rootfs}",
              file=sys.stderr)


@pytest.fixture(scope="session")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/kmcp built once per test session from this checkout (every zipapp test shares it)."""
    out = tmp_path_factory.mktemp("dist") / "kmcp"
    subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "build.py"), "-o", str(out)],
                   check=True, capture_output=True, timeout=600)
    return out


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """One etcd + kube-apiserver + kube-controller-manager for the whole session (stopped at the end)."""
    with ControlPlane(toolchain=ensure_binaries()) as cp:
        yield cp


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """Path of the admin kubeconfig (user kmcp-test-admin, group system:masters)."""
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> Iterator[Kube]:
    """An admin :class:`tests.kubehelpers.Kube` client."""
    with Kube.from_kubeconfig(kubeconfig) as client:
        yield client


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (not awaited) afterwards."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-") or "test"
    name = f"{stem}-{secrets.token_hex(3)}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        kube.delete(f"/api/v1/namespaces/{name}", check=False)
