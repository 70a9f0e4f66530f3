"""The guide's six MCPServer examples (examples/mcpservers/*.yaml) as written, on real pods, in one namespace at once.

The guide's images are not on this machine (no registry), so each keeps its spec and gets a real server from the
kmcp image instead: the stdio examples run a shell that reports what the example's server would see (its volumes,
Secret env, ConfigMap files, ServiceAccount token) and then execs the bundled echo server behind the adapter; the
HTTP example runs a small native Streamable HTTP server that takes its port and path from the example's own env
(``SERVER_PORT``, ``MCP_PATH``). The PersistentVolumeClaims the examples name are bound to hostPath volumes in the
node's directory, and the example 6's TLS Secret is made here. Each example then answers ``tools/call`` through
its ClusterIP Service at the URL in its status, and its report says its configuration reached the process."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmcp.devcluster.images import KMCP_UID, ImageArchive
from kmcp.devcluster.node import DevCluster
from tests.controller.conftest import ControllerProcess, wait_condition
from tests.kubehelpers import Kube, wait_for
from tests.node.conftest import container_log, first_session, ready_pods
from tests.node.test_node import TIMINGS

pytestmark = [pytest.mark.node, pytest.mark.slow]
Obj = dict[str, Any]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mcpservers"

# What each stdio example's stand-in server reports before it becomes the echo server (stderr: the container log).
REPORTS = {
    "filesystem-mcp": 'echo "data: $(cat /data/hello.txt)" >&2; echo from-pod > /data/written-by-pod'
                      ' && echo "data writable" >&2;',
    "aws-s3-mcp": 'test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo "token mounted" >&2;',
    "api-mcp-server": 'echo "env: API_KEY=$API_KEY API_SECRET=$API_SECRET LOG_LEVEL=$LOG_LEVEL" >&2;',
    "configured-mcp": 'echo "config: $(grep max_connections /config/config.yaml | tr -d " ")" >&2;',
    "advanced-mcp": 'echo cached > /tmp/cache/probe && echo "cache writable" >&2;'
                    ' echo "tls: $(cat /etc/tls/tls.crt)" >&2;'
                    ' if touch /etc/tls/x 2>/dev/null; then echo "tls writable" >&2; else echo "tls read-only" >&2; fi;'
                    ' echo from-pod > /data/written-by-pod && echo "data writable" >&2;',
}
EXPECTED = {
    "filesystem-mcp": ["data: seeded-by-the-test", "data writable"],
    "aws-s3-mcp": ["token mounted"],
    "api-mcp-server": ["env: API_KEY=mi-api-key-secreta API_SECRET=mi-api-secret LOG_LEVEL=debug"],
    "configured-mcp": ["config: max_connections:100"],
    "advanced-mcp": ["cache writable", "tls: test-certificate", "tls read-only", "data writable"],
}
CLAIMS = {"mcp-data-pvc": "filesystem-mcp", "mcp-data": "advanced-mcp"}

# Example 5's server: native Streamable HTTP (JSON answers) on $SERVER_PORT at $MCP_PATH, with one echo tool.
HTTP_SERVER = r'''
import json, os, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = os.environ["MCP_PATH"]
TOOL = {"name": "echo", "description": "echo", "inputSchema": {"type": "object",
        "properties": {"message": {"type": "string"}}}}

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != PATH:
            self.send_error(404)
            return
        msg = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if "id" not in msg:
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        method, params = msg["method"], msg.get("params") or {}
        headers = {}
        if method == "initialize":
            result = {"protocolVersion": params["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "guide-http-native", "version": "1"}}
            headers["Mcp-Session-Id"] = uuid.uuid4().hex
        elif method == "tools/list":
            result = {"tools": [TOOL]}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": params["arguments"]["message"]}]}
        else:
            result = {}
        body = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print(f"serving MCP on :{os.environ['SERVER_PORT']}{PATH}", flush=True)
ThreadingHTTPServer(("", int(os.environ["SERVER_PORT"])), Handler).serve_forever()
'''


def guide_objects(namespace: str, image: str) -> tuple[list[Obj], list[Obj]]:
    """(the Secrets and ConfigMaps the examples carry, the six MCPServers), moved into ``namespace`` and given the
    stand-in servers described in the module docstring."""
    others, servers = [], []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            obj["metadata"]["namespace"] = namespace
            if obj["kind"] != "MCPServer":
                others.append(obj)
                continue
            name, dep = obj["metadata"]["name"], obj["spec"]["deployment"]
            original = " ".join([dep.get("cmd", ""), *dep.get("args", [])])
            dep.update(image=image, imagePullPolicy="IfNotPresent")
            if obj["spec"]["transportType"] == "http":
                dep.update(cmd="python3", args=["-c", HTTP_SERVER])
            else:
                script = f'echo "guide example {name} (for: {original})" >&2; {REPORTS[name]} exec kmcp dev echo-server'
                dep.update(cmd="/bin/sh", args=["-c", script])
            servers.append(obj)
    return others, servers


def volume_objects(namespace: str, root: Path) -> list[Obj]:
    """A PersistentVolume on a hostPath directory of the node for each claim the examples name, pre-bound."""
    objects: list[Obj] = []
    for claim in CLAIMS:
        directory = root / claim
        directory.mkdir(parents=True)
        os.chown(directory, KMCP_UID, KMCP_UID)  # the image's user, which the servers run as
        (directory / "hello.txt").write_text("seeded-by-the-test\n")
        volume = f"{namespace}-{claim}"
        size = {"storage": "1Gi"}
        objects += [
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
             "spec": {"capacity": size, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                      "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(directory),
                                                                              "type": "Directory"},
                      "claimRef": {"namespace": namespace, "name": claim}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
             "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": volume,
                      "resources": {"requests": size}}},
        ]
    return objects


def test_the_guides_six_examples_run_as_real_pods_and_answer_through_their_services(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive, dev_cluster: DevCluster,
        node_controller: ControllerProcess) -> None:
    ns = node_namespace
    others, servers = guide_objects(ns, kmcp_node_image.name)
    assert [s["metadata"]["name"] for s in servers] == [
        "filesystem-mcp", "aws-s3-mcp", "api-mcp-server", "configured-mcp", "http-native-mcp", "advanced-mcp"]
    volumes_root = dev_cluster.node.directory / "test-volumes" / ns
    volumes = volume_objects(ns, volumes_root)
    tls = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mcp-tls", "namespace": ns},
           "type": "Opaque", "stringData": {"tls.crt": "test-certificate", "tls.key": "test-key"}}
    try:
        applied = time.monotonic()
        node_kube.apply([*others, tls, *volumes, *servers])
        for server in servers:
            wait_condition(node_kube, server["metadata"]["name"], ns, "Ready", "True", timeout=150)
        for server in servers:
            name = server["metadata"]["name"]
            live = node_kube.read("kagent.dev/v1alpha1", "MCPServer", name, ns)
            assert live is not None
            path = server["spec"].get("httpTransport", {}).get("path", "/mcp")
            port = server["spec"]["deployment"]["port"]
            assert live["status"]["url"] == f"http://{name}.{ns}.svc.cluster.local:{port}{path}"
            svc = node_kube.read("v1", "Service", name, ns)
            assert svc is not None
            with first_session(f"http://{svc['spec']['clusterIP']}:{port}{path}") as client:
                answer = client.call_tool("echo", {"message": f"guide example {name}"})
            assert answer["result"]["content"][0]["text"] == f"guide example {name}", json.dumps(answer)
            if name == "http-native-mcp":
                assert client.server_info["name"] == "guide-http-native"
                continue
            (pod,) = ready_pods(node_kube, name, ns)
            log = wait_for(lambda p=pod, n=name: (lambda t: t if all(e in t for e in EXPECTED[n]) else None)(
                container_log(node_kube, p, "mcp-server")), timeout=30, description=f"{name}'s server report")
            assert f"guide example {name} (for: " in log
        answered = time.monotonic()

        # Example 2: the ServiceAccount the controller made carries the example's annotations and labels, and
        # the pod runs as it.
        (pod,) = ready_pods(node_kube, "aws-s3-mcp", ns)
        account = node_kube.read("v1", "ServiceAccount", pod["spec"]["serviceAccountName"], ns)
        assert account is not None
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == \
            "arn:aws:iam::123456789012:role/mcp-s3-role"
        assert account["metadata"]["labels"]["team"] == "data-platform"
        # Examples 1 and 6: what the servers wrote is on the node, in the claimed volumes.
        for claim in CLAIMS:
            assert (volumes_root / claim / "written-by-pod").read_text() == "from-pod\n"
        TIMINGS["guide examples: six MCPServers applied at once -> each answered and reported"] = answered - applied
    finally:
        node_kube.delete(f"/api/v1/namespaces/{ns}", check=False)
        for volume in volumes:
            if volume["kind"] == "PersistentVolume":
                node_kube.delete(f"/api/v1/persistentvolumes/{volume['metadata']['name']}", check=False)
