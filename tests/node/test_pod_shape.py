"""What the pod looks like to the cluster's own tools and to the processes in it: `kubectl rollout restart` rolls
an MCPServer's pods and the controller keeps the restart (server-side apply owns only kmcp's fields), and the
mcp-server container runs as another uid than the adapter, on a read-only root filesystem, still bridged."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from kmcp.devcluster.images import ImageArchive
from kmcp.devcluster.node import DevCluster
from tests.controller.conftest import ControllerProcess, wait_condition
from tests.kubehelpers import Kube, wait_for
from tests.node.conftest import container_log, echo_mcpserver, first_session, ready_pods, service_url

pytestmark = [pytest.mark.node, pytest.mark.slow]
Obj = dict[str, Any]
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
SERVER_UID = 20001


def test_kubectl_rollout_restart_rolls_the_pods_and_the_controller_keeps_it(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive, dev_cluster: DevCluster,
        node_controller: ControllerProcess) -> None:
    name = "echo-restarted"
    node_kube.apply(echo_mcpserver(name, node_namespace, kmcp_node_image.name))
    wait_condition(node_kube, name, node_namespace, "Ready", "True", timeout=90)
    (old,) = ready_pods(node_kube, name, node_namespace)
    restart = subprocess.run(["kubectl", "--kubeconfig", str(dev_cluster.kubeconfig), "-n", node_namespace,
                              "rollout", "restart", f"deployment/{name}"], capture_output=True, text=True, timeout=60)
    assert restart.returncode == 0, restart.stderr
    assert f"deployment.apps/{name} restarted" in restart.stdout

    def rolled() -> Obj | None:
        pods = ready_pods(node_kube, name, node_namespace)
        fresh = [p for p in pods if p["metadata"]["uid"] != old["metadata"]["uid"]]
        return fresh[0] if len(pods) == 1 and fresh else None

    new = wait_for(rolled, timeout=90, description="the restarted pod replacing the old one")
    stamp = new["metadata"]["annotations"][RESTARTED_AT]
    deployment = node_kube.read("apps/v1", "Deployment", name, node_namespace)
    assert deployment is not None
    generation = deployment["metadata"]["generation"]
    # The controller resyncs every 5 s here: three rounds, and also a change of the MCPServer that makes it apply.
    time.sleep(16)
    node_kube.apply(echo_mcpserver(name, node_namespace, kmcp_node_image.name, env={"TOUCHED": "yes"}))
    applied = wait_for(lambda: (lambda d: d if d and d["metadata"]["generation"] > generation else None)(
        node_kube.read("apps/v1", "Deployment", name, node_namespace)), timeout=30,
        description="the controller applied the MCPServer's change")
    assert applied["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == stamp
    assert applied["metadata"]["generation"] == generation + 1  # only that change, no tug of war
    wait_for(lambda: (lambda p: p if len(p) == 1 and p[0]["metadata"]["uid"] != new["metadata"]["uid"] else None)(
        ready_pods(node_kube, name, node_namespace)), timeout=90, description="the env change rolled the pod")
    (latest,) = ready_pods(node_kube, name, node_namespace)
    assert latest["metadata"]["annotations"][RESTARTED_AT] == stamp
    with first_session(service_url(node_kube, name, node_namespace)) as client:
        assert client.call_tool("echo", {"message": "restarted"})["result"]["content"][0]["text"] == "restarted"


def test_mcp_server_runs_as_another_uid_than_the_adapter_on_a_read_only_root_filesystem(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive,
        node_controller: ControllerProcess) -> None:
    name = "echo-locked-down"
    report = ('echo "server uid=$(id -u) gid=$(id -g)" >&2; '
              'if touch /written-at-runtime 2>/dev/null; then echo "root filesystem writable" >&2; '
              'else echo "root filesystem read-only" >&2; fi; exec kmcp dev echo-server')
    node_kube.apply(echo_mcpserver(
        name, node_namespace, kmcp_node_image.name, cmd="/bin/sh", args=["-c", report],
        securityContext={"runAsUser": SERVER_UID, "runAsGroup": SERVER_UID, "runAsNonRoot": True,
                         "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                         "capabilities": {"drop": ["ALL"]}}))
    wait_condition(node_kube, name, node_namespace, "Ready", "True", timeout=90)
    (pod,) = ready_pods(node_kube, name, node_namespace)
    (adapter,) = pod["spec"]["initContainers"]
    (server,) = pod["spec"]["containers"]
    assert adapter["securityContext"]["runAsUser"] != SERVER_UID
    assert adapter["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["runAsUser"] == SERVER_UID
    with first_session(service_url(node_kube, name, node_namespace)) as client:  # FIFOs across the two uids
        assert client.call_tool("add", {"a": 20, "b": 22})["result"]["content"][0]["text"] == "42"
    log = wait_for(lambda: (lambda t: t if "server uid=" in t else None)(container_log(node_kube, pod, "mcp-server")),
                   timeout=30, description="the session's server process reported its identity")
    assert f"server uid={SERVER_UID} gid={SERVER_UID}" in log
    assert "root filesystem read-only" in log and "root filesystem writable" not in log
    adapter_log = container_log(node_kube, pod, "kmcp-adapter")
    assert "serving bridge /kmcp" in adapter_log
