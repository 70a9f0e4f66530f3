"""End to end on the real node: rendered MCPServers become real pods (the adapter as a native sidecar beside the
mcp-server container, sharing the FIFO bridge), Ready from the kubelet's own probes, answering MCP through the
ClusterIP Service (kube-proxy) and at the pod IP, with logs through the apiserver → kubelet path."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmcp import render, spec
from kmcp.devcluster.binaries import KUBERNETES_VERSION
from kmcp.devcluster.control_plane import free_port
from kmcp.devcluster.images import ImageArchive
from kmcp.devcluster.node import NODE_NAME, DevCluster
from tests.controller.conftest import ControllerProcess, wait_condition
from tests.kubehelpers import Kube, wait_for
from tests.node.conftest import (
    McpClient,
    deployment_available,
    echo_mcpserver,
    first_session,
    ready_pods,
    service_url,
)

pytestmark = [pytest.mark.node, pytest.mark.slow]

TIMINGS: dict[str, float] = {}  # printed in the session summary (tests/node/conftest.py)


def test_node_is_ready_with_a_non_loopback_address_the_harness_owns(node_kube: Kube,
                                                                      dev_cluster: DevCluster) -> None:
    node = node_kube.read("v1", "Node", NODE_NAME)
    assert node is not None
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == KUBERNETES_VERSION
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    ip = ipaddress.ip_address(addresses["InternalIP"])
    assert not ip.is_loopback
    assert ip in ipaddress.ip_network(dev_cluster.node.pod_subnet)
    assert not [t for t in node["spec"].get("taints", []) if "not-ready" in t["key"]]
    TIMINGS["node start (control plane + node)"] = dev_cluster.startup_seconds
    TIMINGS["node part of it"] = dev_cluster.node.startup_seconds
    TIMINGS["image import"] = dev_cluster.node.timings.get("images", 0.0)


def test_rendered_stdio_server_is_a_real_pod_answering_through_its_service(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive, dev_cluster: DevCluster) -> None:
    name = "echo"
    server = spec.decode_mcpserver(echo_mcpserver(name, node_namespace, kmcp_node_image.name))
    objects = render.render(server, render.RenderSettings(adapter_image=kmcp_node_image.name))
    applied = time.monotonic()
    node_kube.apply(objects)
    wait_for(lambda: deployment_available(node_kube, name, node_namespace), timeout=60,
             description="the Deployment Available (deployment + replicaset controllers, scheduler, kubelet)")
    available = time.monotonic()
    (pod,) = ready_pods(node_kube, name, node_namespace)

    # The adapter is a native sidecar: an init container with restartPolicy Always that is started and Ready
    # (its startup and readiness probes passed on the kubelet) while the main container runs beside it.
    (adapter,) = pod["spec"]["initContainers"]
    assert (adapter["name"], adapter["restartPolicy"]) == ("kmcp-adapter", "Always")
    (adapter_status,) = pod["status"]["initContainerStatuses"]
    assert adapter_status["started"] is True and adapter_status["ready"] is True
    assert "running" in adapter_status["state"]
    (server_status,) = pod["status"]["containerStatuses"]
    assert server_status["name"] == "mcp-server" and server_status["ready"] is True
    assert pod["spec"]["nodeName"] == NODE_NAME
    pod_ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(dev_cluster.node.pod_subnet)

    with first_session(service_url(node_kube, name, node_namespace)) as client:
        assert client.server_info["name"] == "kmcp-echo"
        echoed = client.call_tool("echo", {"message": "through kube-proxy"})
    first_call = time.monotonic()
    assert echoed["result"]["content"][0]["text"] == "through kube-proxy"
    with McpClient(f"http://{pod_ip}:3000/mcp") as direct:
        direct.initialize()
        assert direct.call_tool("add", {"a": 2, "b": 40})["result"]["content"][0]["text"] == "42"

    # The guide's troubleshooting path: logs come from the kubelet, through the apiserver's client certificate.
    logs = node_kube.get(f"/api/v1/namespaces/{node_namespace}/pods/{pod['metadata']['name']}/log",
                         params={"container": "kmcp-adapter"}).text
    assert "serving bridge /kmcp" in logs
    TIMINGS["rendered stdio MCPServer: apply -> Deployment Available"] = available - applied
    TIMINGS["rendered stdio MCPServer: Available -> first tools/call answered"] = first_call - available


def test_controller_brings_an_mcpserver_to_ready_on_a_real_pod(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive,
        node_controller: ControllerProcess) -> None:
    name = "echo-controlled"
    applied = time.monotonic()
    node_kube.apply(echo_mcpserver(name, node_namespace, kmcp_node_image.name))
    live = wait_condition(node_kube, name, node_namespace, "Ready", "True", timeout=60)
    ready = time.monotonic()
    assert live["status"]["url"] == f"http://{name}.{node_namespace}.svc.cluster.local:3000/mcp"
    with first_session(service_url(node_kube, name, node_namespace)) as client:
        answer = client.call_tool("echo", {"message": "reconciled"})
    first_call = time.monotonic()
    assert answer["result"]["content"][0]["text"] == "reconciled"
    (pod,) = ready_pods(node_kube, name, node_namespace)
    images = {c["name"]: c["image"] for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]}
    assert images == {"kmcp-adapter": kmcp_node_image.name, "mcp-server": kmcp_node_image.name}
    TIMINGS["controller: MCPServer apply -> Ready=True"] = ready - applied
    TIMINGS["controller: Ready -> first tools/call answered"] = first_call - ready


def test_kmcp_port_forward_reaches_the_pod_through_the_real_kubelet(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive, dev_cluster: DevCluster,
        zipapp: Path, tmp_path: Path) -> None:
    name = "echo-forwarded"
    server = spec.decode_mcpserver(echo_mcpserver(name, node_namespace, kmcp_node_image.name))
    node_kube.apply(render.render(server, render.RenderSettings(adapter_image=kmcp_node_image.name)))
    wait_for(lambda: deployment_available(node_kube, name, node_namespace), timeout=60,
             description="the Deployment Available")
    port = free_port()
    # apiserver -> kubelet (its client certificate) -> containerd's streaming server -> the pod's network namespace
    forward = subprocess.Popen(
        [os.path.realpath(sys.executable), "-I", str(zipapp), "port-forward", name, "-n", node_namespace,
         "--port", str(port), "--kubeconfig", str(dev_cluster.kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHIV_ROOT": str(tmp_path / "shiv")})
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        assert line.startswith(f"Forwarding from 127.0.0.1:{port} -> pod {node_namespace}/"), line
        with McpClient(f"http://127.0.0.1:{port}/mcp") as client:
            client.initialize()
            assert client.call_tool("echo", {"message": "forwarded"})["result"]["content"][0]["text"] == "forwarded"
    finally:
        forward.terminate()
        forward.wait(10)
