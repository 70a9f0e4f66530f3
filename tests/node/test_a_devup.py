"""`kmcp dev up --check` and `--detach` in real mode as a user runs them (the zipapp, no pytest fixture holding the
node): the controller installed as its real Deployment, the example MCPServer as a real pod answering MCP through
its Service, the guide's kubectl commands answering, and `kmcp dev down` leaving no process, interface or table
behind.

Named to run first among the node tests: one dev node per machine (its bridge name is fixed), and the session's
node (``dev_cluster``) is only started by the tests after this one and kept until the session ends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmcp.devcluster import devnode, hoststate
from kmcp.devcluster.binaries import default_cache_root
from kmcp.devcluster.images import default_image_cache
from kmcp.devcluster.node import BRIDGE
from tests.node.conftest import NODE_NOTICES, McpClient, assert_host_restored, node_skip_reason
from tests.node.test_node import TIMINGS

pytestmark = [pytest.mark.node, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_using(path: Path) -> list[str]:
    """Every process whose command line names ``path`` (-ww: whole lines, whatever width ps thinks it has)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(path) in line and "ps -ww" not in line]


# The first of these builds the kmcp image for the session's zipapp inside `kmcp dev up` (about 1 min on an idle
# machine, several when the VM is shared): beyond the suite's default 300 s, within the subprocess's own 600 s.
@pytest.mark.timeout(660)
def test_dev_up_check_on_the_real_node_calls_the_example_through_its_service_and_stops_everything(
        zipapp: Path, tmp_path: Path) -> None:
    """The README's first command in real mode, from a directory that does not exist yet."""
    reason = node_skip_reason()
    if reason:
        pytest.skip(reason)
    assert not Path(f"/sys/class/net/{BRIDGE}").exists(), f"{BRIDGE} exists: another dev node runs on this machine"
    directory = tmp_path / "fresh" / "dev"
    before = hoststate.HostState.record()
    done = subprocess.run([os.path.realpath(sys.executable), "-I", str(zipapp), "dev", "up", "--check", "--dir",
                           str(directory), "--port", str(free_port())], capture_output=True, text=True, timeout=600,
                          env=user_env(tmp_path) | {"KMCP_DEV_NODE": "real"})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "kmcp dev mode: real node (containerd + kubelet run the pods): asked for (--node real)"
    assert any(line.startswith("  Service:         http://10.") for line in lines), done.stdout
    assert "MCP 2026-07-28: tools/list OK (2 tools), tools/call echo OK" in lines
    assert "tools/call echo -> 'hello from kmcp dev up'" in lines
    NODE_NOTICES.extend(f"kmcp dev up --check said: {line.strip()}" for line in lines if line.startswith(
        ("node Ready in", "kmcp dev is up in", "Ready -> tools/list")))
    assert "Traceback" not in done.stderr
    assert processes_using(directory) == []
    assert not (directory / "state.json").exists()
    assert_host_restored(before, hoststate.HostState.record())


def user_env(home: Path) -> dict[str, str]:
    """A user's environment, with the caches the session already filled (nothing is built again)."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "SHIV_ROOT": str(home / "shiv"),
            "KMCP_BIN_CACHE": str(default_cache_root()), "KMCP_IMAGE_CACHE": str(default_image_cache())}


@pytest.mark.timeout(660)
def test_dev_up_detach_on_the_real_node_serves_mcp_through_the_service_and_dev_down_restores_the_host(
        zipapp: Path, tmp_path: Path) -> None:
    reason = node_skip_reason()
    if reason:
        pytest.skip(reason)
    assert not Path(f"/sys/class/net/{BRIDGE}").exists(), f"{BRIDGE} exists: another dev node runs on this machine"
    directory, port = tmp_path / "dev", free_port()
    env = user_env(tmp_path)

    def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([os.path.realpath(sys.executable), "-I", str(zipapp), *args], capture_output=True,
                              text=True, timeout=timeout, env=env)

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", "--kubeconfig", str(directory / "node-cluster" / "admin.kubeconfig"),
                               *args], capture_output=True, text=True, timeout=60)

    before = hoststate.HostState.record()
    started = time.monotonic()
    up = cli("dev", "up", "--detach", "--node", "real", "--dir", str(directory), "--port", str(port), timeout=600)
    node_dir: Path | None = None
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        TIMINGS["kmcp dev up --detach --node real -> example Ready"] = time.monotonic() - started
        assert up.stdout.splitlines()[0] == \
            "kmcp dev mode: real node (containerd + kubelet run the pods): asked for (--node real)"
        state = json.loads((directory / "state.json").read_text())
        assert state["mode"] == "real" and state["url"] == f"http://127.0.0.1:{port}/mcp"
        node_dir = Path(devnode.read(directory / "node-cluster" / devnode.RECORD_NAME).containerd_socket).parents[1]
        assert any("kubelet" in line for line in processes_using(node_dir))

        for url in (state["service_url"], state["url"]):  # the ClusterIP through kube-proxy; the relay to it
            with McpClient(url) as client:
                client.initialize()
                answer = client.call_tool("echo", {"message": f"via {url}"})
            assert answer["result"]["content"][0]["text"] == f"via {url}"

        pods = kubectl("get", "pods", "-n", "kmcp-system", "--no-headers")
        assert pods.returncode == 0, pods.stderr
        (row,) = [line.split() for line in pods.stdout.splitlines()]
        assert row[0].startswith("kmcp-controller-manager-") and row[1:3] == ["1/1", "Running"], pods.stdout
        logs = kubectl("logs", "deployment/echo", "-c", "mcp-server")
        assert logs.returncode == 0, logs.stderr
        adapter = kubectl("logs", "deployment/echo", "-c", "kmcp-adapter")
        assert "kmcp adapter: serving bridge /kmcp" in adapter.stdout, adapter.stdout + adapter.stderr
    finally:
        down = cli("dev", "down", "--dir", str(directory), timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "kmcp dev stopped" in down.stdout
    assert processes_using(directory) == []
    assert node_dir is not None and processes_using(node_dir) == []
    assert not node_dir.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert_host_restored(before, hoststate.HostState.record())
