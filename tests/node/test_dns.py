"""Cluster DNS on the real node: CoreDNS answers ``*.svc.cluster.local`` from the apiserver behind the ``kube-dns``
Service, so a pod in another namespace reaches an MCPServer at the kagent URL over both transports, and it answers
nothing outside the cluster's zones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kmcp.devcluster import dns
from kmcp.devcluster.images import ImageArchive
from kmcp.devcluster.node import DevCluster
from tests.controller.conftest import ControllerProcess, wait_condition
from tests.kubehelpers import Kube, wait_for
from tests.node.conftest import container_log, echo_mcpserver

pytestmark = [pytest.mark.node, pytest.mark.slow]
Obj = dict[str, Any]
REFUSED, NXDOMAIN = 5, 3


def test_cluster_dns_answers_services_by_name_and_refuses_every_other_name(
        node_kube: Kube, dev_cluster: DevCluster) -> None:
    service = node_kube.read("v1", "Service", "kube-dns", "kube-system")
    assert service is not None and service["spec"]["clusterIP"] == dns.KUBE_DNS_IP
    kubernetes = node_kube.read("v1", "Service", "kubernetes", "default")
    assert kubernetes is not None
    # Through the Service (kube-proxy's DNAT) and at the process itself on the node address.
    for server in (dns.KUBE_DNS_IP, dev_cluster.node.node_ip):
        assert dns.query_a(server, "kubernetes.default.svc.cluster.local") == (0, [kubernetes["spec"]["clusterIP"]])
        assert dns.query_a(server, "kube-dns.kube-system.svc.cluster.local") == (0, [dns.KUBE_DNS_IP])
        assert dns.query_a(server, "nothing-here.default.svc.cluster.local")[0] == NXDOMAIN
        assert dns.query_a(server, "example.com") == (REFUSED, [])


def test_a_pod_in_another_namespace_calls_tools_at_the_kagent_url_over_sse_and_streamable_http(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive,
        node_controller: ControllerProcess) -> None:
    name = "echo-by-name"
    node_kube.apply(echo_mcpserver(name, node_namespace, kmcp_node_image.name))
    wait_condition(node_kube, name, node_namespace, "Ready", "True", timeout=90)
    client_ns = f"{node_namespace[:50]}-agent"
    node_kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": client_ns}})
    try:
        wait_for(lambda: node_kube.read("v1", "ServiceAccount", "default", client_ns),
                 description="default ServiceAccount")
        base = f"http://{name}.{node_namespace}.svc.cluster.local:3000"
        node_kube.apply([
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe", "namespace": client_ns},
             "data": {"probe.py": (Path(__file__).parent / "mcp_probe.py").read_text()}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent", "namespace": client_ns},
             "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "probe", "image": kmcp_node_image.name,
                                      "imagePullPolicy": "IfNotPresent",
                                      "command": ["python3", "/probe/probe.py", f"{base}/sse", f"{base}/mcp"],
                                      "volumeMounts": [{"name": "probe", "mountPath": "/probe"}]}],
                      "volumes": [{"name": "probe", "configMap": {"name": "probe"}}]}},
        ])

        def finished() -> Obj | None:
            pod = node_kube.read("v1", "Pod", "agent", client_ns)
            return pod if (pod or {}).get("status", {}).get("phase") in ("Succeeded", "Failed") else None

        pod = wait_for(finished, timeout=90, description="the agent pod ran to completion")
        log = container_log(node_kube, pod, "probe")
        assert pod["status"]["phase"] == "Succeeded", log
        header, *sessions = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert header["nameservers"] == [dns.KUBE_DNS_IP]
        assert header["outside"].startswith("not resolved"), header
        assert [s["url"] for s in sessions] == [f"{base}/sse", f"{base}/mcp"]
        for session in sessions:
            assert session["server"] == "kmcp-echo"
            assert "echo" in session["tools"]
            assert session["echo"] == "found by name"
    finally:
        node_kube.delete(f"/api/v1/namespaces/{client_ns}", check=False)
