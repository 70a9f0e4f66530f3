"""The dev node's figures: start, then MCPServer (rendered stdio echo) apply -> Available -> first tools/call, and
mcp-server container killed -> restarted -> a new session answers. Root only (a real node).

    python bench/node_start.py [--rounds 3] [--zipapp dist/kmcp]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kmcp import render, spec  # noqa: E402
from kmcp.devcluster.images import kmcp_image  # noqa: E402
from kmcp.devcluster.node import DevCluster, unsupported_reason  # noqa: E402
from tests.kubehelpers import Kube, wait_for  # noqa: E402

HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def call(url: str, timeout: float = 10.0) -> str:
    """initialize + tools/call echo on a fresh connection; returns the echoed text."""
    with httpx.Client(timeout=timeout, trust_env=False) as http:
        init = http.post(url, headers=HEADERS, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
        init.raise_for_status()
        headers = {**HEADERS, "Mcp-Session-Id": init.headers["mcp-session-id"]}
        http.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        answer = http.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                                       "params": {"name": "echo", "arguments": {"message": "b"}}})
        answer.raise_for_status()
        return str(answer.json()["result"]["content"][0]["text"])


def first_call(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if call(url) == "b":
                return
        except (httpx.HTTPError, KeyError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.02)


def pod_of(kube: Kube, ns: str) -> dict[str, Any]:
    pods = [p for p in kube.items("v1", "Pod", ns, labelSelector="app.kubernetes.io/instance=echo")
            if not p["metadata"].get("deletionTimestamp")]
    return pods[0]


def round_trip(cluster: DevCluster, kube: Kube, image: str, ns: str) -> dict[str, float]:
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    wait_for(lambda: kube.read("v1", "ServiceAccount", "default", ns), description="default ServiceAccount")
    server = spec.decode_mcpserver({
        "apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer", "metadata": {"name": "echo", "namespace": ns},
        "spec": {"transportType": "stdio", "stdioTransport": {}, "deployment": {
            "image": image, "imagePullPolicy": "IfNotPresent", "cmd": "kmcp", "args": ["dev", "echo-server"],
            "port": 3000}}})
    began = time.monotonic()
    kube.apply(render.render(server, render.RenderSettings(adapter_image=image)))

    def available() -> bool | None:
        dep = kube.read("apps/v1", "Deployment", "echo", ns) or {}
        conds = (dep.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conds) or None

    wait_for(available, timeout=90, interval=0.02, description="Available")
    ready = time.monotonic()
    svc = kube.read("v1", "Service", "echo", ns)
    assert svc is not None
    url = f"http://{svc['spec']['clusterIP']}:3000/mcp"
    first_call(url)
    answered = time.monotonic()
    pod = pod_of(kube, ns)
    container = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    killed = time.monotonic()
    cluster.node.ctr("tasks", "kill", "-a", "-s", "SIGKILL", container)
    time.sleep(0.5)  # the kubelet notices within its PLEG period; a call before that reaches the dead session
    first_call(url, timeout=60)
    back = time.monotonic()
    return {"apply -> Available": ready - began, "Available -> first tools/call": answered - ready,
            "mcp-server killed -> a new session answers": back - killed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--zipapp", type=Path, default=None)
    args = parser.parse_args()
    reason = unsupported_reason()
    if reason:
        print(f"bench/node_start.py: {reason}", file=sys.stderr)
        return 2
    zipapp = args.zipapp
    if zipapp is None:
        zipapp = ROOT / "dist" / "kmcp"
        subprocess.run([sys.executable, str(ROOT / "build.py"), "-o", str(zipapp)], check=True,
                       stdout=subprocess.DEVNULL)
    image = kmcp_image(zipapp)
    started = time.monotonic()
    with DevCluster(images=[image]) as cluster:
        start = time.monotonic() - started
        print(f"node start (control plane + node, Ready): {start:.1f} s; control plane "
              f"{cluster.control_plane.startup_seconds:.1f} s; node: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in cluster.node.timings.items()))
        results: dict[str, list[float]] = {}
        with Kube.from_kubeconfig(cluster.kubeconfig) as kube:
            for i in range(args.rounds):
                for key, value in round_trip(cluster, kube, image.name, f"bench-{i}").items():
                    results.setdefault(key, []).append(value)
        for key, values in results.items():
            print(f"{key}: median {statistics.median(values):.2f} s of {len(values)} "
                  f"({', '.join(f'{v:.2f}' for v in values)})")
        stopping = time.monotonic()
    print(f"node stop (pods drained, host restored): {time.monotonic() - stopping:.1f} s; restore problems: "
          f"{cluster.node.restore_problems or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
