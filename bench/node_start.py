"""The dev node's figures: start, then MCPServer (rendered stdio echo) apply -> Available -> first tools/call, and
mcp-server container killed -> restarted -> a new session answers. Root only (a real node).

    python bench/node_start.py [--rounds 3] [--zipapp dist/kmcp]
    python bench/node_start.py --time -- CMD...     # CMD's wall time, e.g. `python -m pytest tests/node`

Both say what the rest of the machine did meanwhile (it is shared): the 1-minute load average and the CPU the
whole machine was busy (from /proc/stat, sampled every 2 s) against the CPU of this run's own reaped processes.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import threading
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


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class LoadSampler:
    """The machine's load while a measurement runs: 1-minute load averages and busy cores, every ``interval``."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.loadavg: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.start_busy = busy_jiffies()
        self.started = time.monotonic()
        self.cpu_start = self._own_cpu()

    @staticmethod
    def _own_cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.loadavg.append(float(Path("/proc/loadavg").read_text().split()[0]))

    def __enter__(self) -> LoadSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def summary(self) -> str:
        wall = time.monotonic() - self.started
        busy, total = busy_jiffies()
        cores = os.cpu_count() or 1
        machine = cores * (busy - self.start_busy[0]) / max(1, total - self.start_busy[1])
        own = (self._own_cpu() - self.cpu_start) / wall
        loads = sorted(self.loadavg) or [float(Path("/proc/loadavg").read_text().split()[0])]
        return (f"machine meanwhile ({wall:.0f} s, {cores} cores): load average (1 min) {loads[0]:.2f}-{loads[-1]:.2f},"
                f" median {statistics.median(loads):.2f}; CPU busy {machine:.2f} cores, of which this run's own "
                f"reaped processes {own:.2f} (pods' processes are not reaped by it), so others about "
                f"{max(0.0, machine - own):.2f}")


def time_command(argv: list[str]) -> int:
    with LoadSampler() as load:
        began = time.monotonic()
        code = subprocess.run(argv, check=False).returncode
        wall = time.monotonic() - began
    print(f"{' '.join(argv)}: exit {code}, wall {wall:.1f} s")
    print(load.summary())
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--zipapp", type=Path, default=None)
    parser.add_argument("--time", action="store_true",
                        help="run the command after -- and print its wall time and the machine's load meanwhile")
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time:
        return time_command(args.command)
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
    load = LoadSampler().__enter__()
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
    load.__exit__()
    print(load.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
