"""`kmcp build --load-dev-node` then `kmcp deploy`, as the guide's build-and-deploy step on the real node: a freshly
scaffolded python project is built (without a daemon where no container engine answers, as here), imported into
the node's containerd, deployed from its kmcp.yaml and answers tools/call from a real pod."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmcp.devcluster.images import default_image_cache
from kmcp.devcluster.node import DevCluster
from tests.controller.conftest import ControllerProcess
from tests.kubehelpers import Kube
from tests.node.conftest import first_session, ready_pods, service_url

pytestmark = [pytest.mark.node, pytest.mark.slow]


def kmcp_cli(zipapp: Path, home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The zipapp as a user runs it: a bare PATH, a fresh HOME; the image cache shared so the Debian root
    filesystem is not made again."""
    return subprocess.run([os.path.realpath(sys.executable), "-I", str(zipapp), *args], capture_output=True,
                          text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home), "SHIV_ROOT": str(home / "shiv"),
                               "KMCP_IMAGE_CACHE": str(default_image_cache())})


def test_kmcp_build_loads_a_scaffolded_project_into_the_dev_node_and_kmcp_deploy_runs_it(
        node_kube: Kube, node_namespace: str, dev_cluster: DevCluster, node_controller: ControllerProcess,
        zipapp: Path, tmp_path: Path) -> None:
    project = tmp_path / "hello-mcp"
    assert kmcp_cli(zipapp, tmp_path, "init", "python", str(project)).returncode == 0
    built = kmcp_cli(zipapp, tmp_path, "build", "--project-dir", str(project),
                     "--load-dev-node", str(dev_cluster.control_plane.directory))
    assert built.returncode == 0, built.stderr
    notices = [line for line in built.stderr.splitlines() if line.startswith("kmcp build:")]
    assert len(notices) == 1 and "building hello-mcp:0.1.0 without a daemon" in notices[0], built.stderr
    assert "loaded docker.io/library/hello-mcp:0.1.0 into the dev node" in built.stderr
    assert "docker.io/library/hello-mcp:0.1.0" in dev_cluster.node.ctr("images", "ls", "-q").split()

    deployed = kmcp_cli(zipapp, tmp_path, "deploy", "--file", str(project / "kmcp.yaml"), "--image",
                        "hello-mcp:0.1.0", "-n", node_namespace, "--kubeconfig", str(dev_cluster.kubeconfig),
                        "--no-inspector", "--timeout", "120s")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    (pod,) = ready_pods(node_kube, "hello-mcp", node_namespace)
    (server,) = pod["status"]["containerStatuses"]
    assert server["name"] == "mcp-server" and server["image"] == "docker.io/library/hello-mcp:0.1.0"
    with first_session(service_url(node_kube, "hello-mcp", node_namespace)) as client:
        assert client.server_info["name"] == "hello-mcp"  # FastMCP from the official SDK, pip-installed
        answer = client.call_tool("echo", {"message": "built here, run there"})
    assert answer["result"]["content"][0]["text"] == "built here, run there"
