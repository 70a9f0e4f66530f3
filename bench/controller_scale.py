"""Controller at scale (issues 5 and 17): N stdio MCPServers against a real apiserver.

N MCPServers are created first (untimed); then the controller starts and the bench measures, from its process
start until a watch has seen every MCPServer Programmed=True: the time, its CPU (per MCPServer), its reconciles and
API calls per MCPServer (its kmcp_kube_api_requests_total), the apiserver's apiserver_request_total per MCPServer
(every client), and its peak RSS (VmHWM). Then, at N: spec changes one at a time (a new image -> status Programmed
for the new generation); a second controller process on the converged cluster (time, CPU and writes until it has
reconciled every MCPServer once: goal 0 writes) and one idle resync window of that controller (goal 0 writes). Then,
on the same apiserver with the controllers stopped, "the limit": a minimal client that sends only the writes the
controller makes per MCPServer (session-key Secret create, SSA of ServiceAccount, Service, Deployment, status
patch, and its one Event) with the same concurrency, and the ratio controller time / limit time. Beside each timed
figure: the cores the rest of the machine used meanwhile (/proc/stat minus this bench's processes).

    .venv/bin/python bench/controller_scale.py --count 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kmcp import install, spec  # noqa: E402
from kmcp.devcluster.control_plane import ControlPlane, free_port  # noqa: E402
from kmcp.render import RenderSettings, render, render_session_key_secret  # noqa: E402
from tests.kubehelpers import (  # noqa: E402
    Kube,
    _read_kubeconfig,
    _ssl_context,
    service_account_kubeconfig,
    wait_for,
)

CRD = ROOT / "manifests" / "crd" / "kagent.dev_mcpservers.yaml"
SYSTEM_NAMESPACE = "kmcp-system"
MCP_PATH = "/apis/kagent.dev/v1alpha1/namespaces/{ns}/mcpservers"
WRITE_VERBS = {"create", "update", "patch", "apply", "delete", "deletecollection", "post", "put"}
Obj = dict[str, Any]


def mcpserver(name: str, namespace: str) -> Obj:
    return {"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"transportType": "stdio", "stdioTransport": {},
                     "deployment": {"image": "example.test/server:1", "cmd": "/bin/server"}}}


def async_client(kubeconfig: Path) -> httpx.AsyncClient:
    server, ca, cert, key, token = _read_kubeconfig(kubeconfig)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=server, verify=_ssl_context(ca, cert, key), headers=headers, timeout=60,
                             limits=httpx.Limits(max_connections=64))


async def bounded(n: int, concurrency: int, work: Any) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await work(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def create_all(client: httpx.AsyncClient, ns: str, n: int, concurrency: int) -> None:
    async def one(i: int) -> None:
        r = await client.post(MCP_PATH.format(ns=ns), json=mcpserver(f"s{i:05d}", ns))
        r.raise_for_status()

    await bounded(n, concurrency, one)


METRIC = re.compile(r'^kmcp_kube_api_requests_total\{([^}]*)\}\s+(\S+)$')


def api_counts(metrics_port: int) -> dict[tuple[str, str], float]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=60).text
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = (labels.get("verb", "?"), labels.get("resource", "?"))
        out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def diff(after: dict[tuple[str, str], float], before: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    keys = set(after) | set(before)
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys if after.get(k, 0.0) != before.get(k, 0.0)}


def writes(d: dict[tuple[str, str], float]) -> float:
    return sum(v for (verb, _), v in d.items() if verb.lower() in WRITE_VERBS)


def events_dropped(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=60).text
    found = re.search(r"^kmcp_events_dropped_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Observer:
    """The MCPServers of one namespace as a watch shows them (list, then watch from its resourceVersion), in a
    thread: the bench waits on it instead of listing N objects every half second, which at N=10,000 cost the
    apiserver more than the controller did."""

    def __init__(self, kubeconfig: Path, ns: str) -> None:
        server, ca, cert, key, token = _read_kubeconfig(kubeconfig)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=server, verify=_ssl_context(ca, cert, key), headers=headers,
                                   timeout=httpx.Timeout(60, read=3700))
        self.ns = ns
        self.state: dict[str, tuple[int, int, bool]] = {}  # name -> (generation, observedGeneration, Programmed)
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        rv = self._list()
        self.thread = threading.Thread(target=self._watch, args=(rv,), daemon=True)
        self.thread.start()

    @staticmethod
    def _summary(obj: Obj) -> tuple[int, int, bool]:
        status = obj.get("status") or {}
        programmed = any(c.get("type") == "Programmed" and c.get("status") == "True"
                         for c in status.get("conditions") or [])
        return int(obj["metadata"].get("generation") or 0), int(status.get("observedGeneration") or 0), programmed

    def _list(self) -> str:
        params: dict[str, Any] = {"limit": 500}
        while True:
            page = self.client.get(MCP_PATH.format(ns=self.ns), params=params).json()
            with self.cond:
                for obj in page["items"]:
                    self.state[obj["metadata"]["name"]] = self._summary(obj)
            if not page["metadata"].get("continue"):
                return str(page["metadata"]["resourceVersion"])
            params["continue"] = page["metadata"]["continue"]

    def _watch(self, rv: str) -> None:
        try:
            params = {"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": 3600}
            with self.client.stream("GET", MCP_PATH.format(ns=self.ns), params=params) as response:
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        obj = event["object"]
                        with self.cond:
                            self.state[obj["metadata"]["name"]] = self._summary(obj)
                            self.cond.notify_all()
        except BaseException as error:  # reported by wait()
            with self.cond:
                self.error = error
                self.cond.notify_all()

    def programmed(self) -> int:
        with self.cond:
            return sum(1 for _, _, p in self.state.values() if p)

    def wait(self, predicate: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.error is not None or predicate(self.state), timeout)

    def close(self) -> None:
        self.client.close()


class Load:
    """Cores the rest of the machine used over a window: all busy CPU (/proc/stat) minus the processes of this
    bench (the bench itself, the controller, etcd, apiserver and controller manager)."""

    def __init__(self, pids: Any) -> None:
        self.pids = pids  # callable -> the pids that are ours
        self.t0, self.busy0, self.ours0 = time.monotonic(), self._busy(), self._ours()

    @staticmethod
    def _busy() -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _ours(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError, IndexError):  # a process that ended
                total += cpu_seconds(pid)
        return total

    def other_cores(self) -> float:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        return max(0.0, (self._busy() - self.busy0) - (self._ours() - self.ours0)) / elapsed

    def ours(self) -> float:
        return self._ours() - self.ours0


APISERVER_METRIC = re.compile(r'^apiserver_request_total\{([^}]*)\}\s+(\S+)$')


def apiserver_counts(kube: Kube) -> dict[tuple[str, str], float]:
    """apiserver_request_total by (verb, resource), every client together."""
    out: dict[tuple[str, str], float] = {}
    for line in kube.get("/metrics").text.splitlines():
        m = APISERVER_METRIC.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            key = (labels.get("verb", "?"), labels.get("resource", "") or labels.get("subresource", "?"))
            if labels.get("subresource"):
                key = (key[0], f"{labels.get('resource')}/{labels['subresource']}")
            out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def metric_value(metrics_port: int, pattern: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=60).text
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def start_controller(ctl_kc: Path, log: Any, args: argparse.Namespace,
                     resync: float) -> tuple[subprocess.Popen[bytes], int, int]:
    mport, pport = free_port(), free_port()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "kmcp", "controller", f"--kubeconfig={ctl_kc}",
         f"--metrics-bind-address=127.0.0.1:{mport}", "--no-metrics-secure",
         f"--health-probe-bind-address=127.0.0.1:{pport}", "--leader-elect=false",
         f"--resync-period={int(resync)}s", f"--max-concurrent-reconciles={args.max_concurrent_reconciles}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, "KMCP_ADAPTER_IMAGE": "example.test/kmcp:dev"})
    return proc, mport, pport


def wait_ready(proc: subprocess.Popen[bytes], pport: int) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"controller exited {proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{pport}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(ready, timeout=120, interval=0.05, description="controller ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def restarted_controller(ctl_kc: Path, log: Any, args: argparse.Namespace, n: int, ours: list[int],
                         our_pids: Any) -> dict[str, float]:
    """A second controller process on the converged cluster: until it has reconciled every MCPServer once (its
    reconcile counter >= N and its queue empty), how long, how much CPU, and how many writes (goal 0)."""
    load = Load(our_pids)
    t0 = time.monotonic()
    proc, mport, pport = start_controller(ctl_kc, log, args, args.restart_resync)
    ours.append(proc.pid)
    try:
        wait_ready(proc, pport)
        t_ready = time.monotonic() - t0
        reconciled = r'^controller_runtime_reconcile_total\{controller="mcpserver",result="success"\} (\S+)$'
        deadline = t0 + args.timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if metric_value(mport, reconciled) >= n and metric_value(mport, r"^workqueue_depth (\S+)$") == 0:
                break
            time.sleep(0.2)
        t_done = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid)
        other = load.other_cores()
        time.sleep(2)
        counts = api_counts(mport)
        # The idle resync: a window longer than its resync period, so every MCPServer is reconciled once more.
        idle_load, cpu0, rec0 = Load(our_pids), cpu_seconds(proc.pid), metric_value(mport, reconciled)
        time.sleep(args.restart_resync + 5)
        idle = diff(api_counts(mport), counts)
        return {"t_ready": t_ready, "t_done": t_done, "cpu": cpu, "other": other, "writes": writes(counts),
                "calls": sum(counts.values()), "rss": vm_hwm_mib(proc.pid), "idle_writes": writes(idle),
                "idle_calls": sum(idle.values()), "idle_cpu": cpu_seconds(proc.pid) - cpu0,
                "idle_reconciles": metric_value(mport, reconciled) - rec0, "idle_other": idle_load.other_cores()}
    finally:
        stop(proc)


def spec_changes(kube: Kube, observer: Observer, ns: str, n: int, rounds: int) -> list[float]:
    """Seconds from a spec change (a new image) of one MCPServer to its status saying the new generation is
    Programmed (the Deployment applied first), one MCPServer at a time, spread over the N."""
    out = []
    for r in range(rounds):
        name = f"s{(r * 7919) % n:05d}"
        with observer.cond:
            generation = observer.state[name][0]
        t0 = time.monotonic()
        kube.request("PATCH", f"{MCP_PATH.format(ns=ns)}/{name}",
                     content=json.dumps({"spec": {"deployment": {"image": f"example.test/server:{r + 2}"}}}),
                     headers={"Content-Type": "application/merge-patch+json"})
        ok = observer.wait(lambda st, name=name, g=generation: st[name][1] > g and st[name][2], 30)
        out.append(time.monotonic() - t0 if ok else float("inf"))
        time.sleep(0.5)
    return out


async def limit_run(kubeconfig: Path, kube: Kube, ns: str, n: int, concurrency: int, create_conc: int,
                    with_events: bool, timed: dict[str, float], our_pids: Any) -> float:
    """Create N MCPServers (untimed), then time the controller's per-MCPServer writes with ``concurrency``: the
    session-key Secret, three applies and a status patch in sequence, and (``with_events``) the one Event the
    controller records."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    async with async_client(kubeconfig) as client:
        await create_all(client, ns, n, create_conc)
        r = await client.get(MCP_PATH.format(ns=ns))
        r.raise_for_status()
        items = r.json()["items"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        settings = RenderSettings()
        prepared: list[tuple[Obj, list[Obj]]] = []
        for obj in items:  # render outside the timed part? no: the controller renders too, so render inside
            prepared.append((obj, []))

        async def one(i: int) -> None:
            obj = prepared[i][0]
            server = spec.decode_mcpserver(obj)
            meta = obj["metadata"]
            if server.spec.transport_type == "stdio":  # the replicas' session key, created once, as the controller does
                secret = render_session_key_secret(server, secrets.token_urlsafe(32))
                resp = await client.post(f"/api/v1/namespaces/{ns}/secrets", json=secret)
                resp.raise_for_status()
            for child in render(server, settings):
                plural = {"ServiceAccount": "serviceaccounts", "Service": "services",
                          "Deployment": "deployments"}[child["kind"]]
                base = "/apis/apps/v1" if child["kind"] == "Deployment" else "/api/v1"
                resp = await client.patch(f"{base}/namespaces/{ns}/{plural}/{child['metadata']['name']}",
                                          content=json.dumps(child),
                                          headers={"Content-Type": "application/apply-patch+yaml"},
                                          params={"fieldManager": "kmcp-limit", "force": "true"})
                resp.raise_for_status()
            conds = [{"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": now,
                      "observedGeneration": meta.get("generation", 1)}
                     for t in ("Accepted", "ResolvedRefs", "Programmed")]
            status = {"observedGeneration": meta.get("generation", 1), "conditions": conds}
            resp = await client.patch(f"{MCP_PATH.format(ns=ns)}/{meta['name']}/status",
                                      content=json.dumps({"status": status}),
                                      headers={"Content-Type": "application/merge-patch+json"})
            resp.raise_for_status()
            if with_events:  # like the controller: handed to senders, the next MCPServer does not wait for it
                events.append(asyncio.create_task(event(obj)))

        senders = asyncio.Semaphore(4)

        async def event(obj: Obj) -> None:
            meta = obj["metadata"]
            body = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
                    "metadata": {"name": f"{meta['name']}.{os.urandom(8).hex()}", "namespace": ns},
                    "eventTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "reportingController": "kmcp-limit", "reportingInstance": "bench", "action": "Reconcile",
                    "reason": "Programmed", "type": "Normal", "note": "Accepted=True; Programmed=True",
                    "regarding": {"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer", "name": meta["name"],
                                  "namespace": ns, "uid": meta["uid"]}}
            async with senders:
                resp = await client.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", json=body)
                resp.raise_for_status()

        events: list[asyncio.Task[None]] = []

        load = Load(our_pids)
        t0 = time.monotonic()
        await bounded(len(prepared), concurrency, one)
        await asyncio.gather(*events)
        timed["other"] = load.other_cores()
        return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--create-concurrency", type=int, default=32)
    ap.add_argument("--max-concurrent-reconciles", type=int, default=4)
    ap.add_argument("--limit-concurrency", default="4,16", help="comma-separated concurrencies for the limit run")
    ap.add_argument("--resync", type=float, default=600.0,
                    help="the first controller's --resync-period in seconds (its default): a resync during the "
                         "convergence would reconcile the converged MCPServers again")
    ap.add_argument("--restart-resync", type=float, default=60.0,
                    help="the restarted controller's --resync-period: after its first pass the bench waits this + 5 s "
                         "and counts the writes of the resync (goal 0)")
    ap.add_argument("--timeout", type=float, default=600.0, help="bound on waiting for convergence")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--spec-changes", type=int, default=5, help="spec changes timed one at a time at N (0: none)")
    ap.add_argument("--restart", action=argparse.BooleanOptionalAction, default=True,
                    help="time a second controller process on the converged cluster (goal: 0 writes)")
    ap.add_argument("--limit-without-events", action="store_true",
                    help="also run the limit without the Event create")
    ap.add_argument("--pyspy", type=Path, default=None,
                    help="record the controller with py-spy (raw collapsed stacks, 100 Hz, --nonblocking, --gil) "
                         "into this file; needs py-spy, e.g. ~/.cache/kmcp/bench/pyspy-venv/bin/py-spy on PATH")
    args = ap.parse_args()
    n = args.count
    command = "`.venv/bin/python bench/controller_scale.py " + " ".join(sys.argv[1:]) + "`"
    rows: list[tuple[str, str, str]] = []

    with tempfile.TemporaryDirectory(prefix="kmcp-scale-") as tmp, ControlPlane() as cp:
        work = Path(tmp)
        kube = Kube.from_kubeconfig(cp.kubeconfig)
        kube.apply(CRD)
        kube.resource_info("kagent.dev/v1alpha1", "MCPServer", discovery_timeout=30)
        kube.apply([o for o in install.install_objects() if o["kind"] != "Deployment"])
        wait_for(lambda: kube.read("v1", "ServiceAccount", install.SERVICE_ACCOUNT, SYSTEM_NAMESPACE),
                 description="the controller's ServiceAccount")
        ctl_kc = service_account_kubeconfig(kube, SYSTEM_NAMESPACE, install.SERVICE_ACCOUNT,
                                            work / "controller.kubeconfig", expiration_seconds=7200)
        ns = "scale"
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

        # The MCPServers exist before the controller starts (untimed), as in the limit run: both then do the
        # same work from the same starting point, and the creates do not blur the controller's time.
        t_create = time.monotonic()

        async def create() -> None:
            async with async_client(cp.kubeconfig) as client:
                await create_all(client, ns, n, args.create_concurrency)
        asyncio.run(create())
        t_created = time.monotonic() - t_create

        log = (work / "controller.log").open("wb")
        observer = Observer(cp.kubeconfig, ns)
        ours: list[int] = [os.getpid(), *cp.pids]

        def our_pids() -> list[int]:
            return ours
        api_before = apiserver_counts(kube)
        load = Load(our_pids)
        t0 = time.monotonic()
        proc, mport, pport = start_controller(ctl_kc, log, args, args.resync)
        ours.append(proc.pid)
        spy = None
        if args.pyspy is not None:
            spy = subprocess.Popen([os.environ.get("PYSPY", "py-spy"), "record", "--pid", str(proc.pid),
                                    "--rate", "100", "--nonblocking", "--gil", "--format", "raw",
                                    "-o", str(args.pyspy)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        restart: dict[str, float] = {}
        latencies: list[float] = []
        try:
            wait_ready(proc, pport)
            t_ready = time.monotonic() - t0
            deadline = t0 + args.timeout
            while observer.programmed() < n and time.monotonic() < deadline and proc.poll() is None:
                observer.wait(lambda st: sum(1 for _, _, p in st.values() if p) >= n, 0.5)
            done = observer.programmed()
            t_converged = time.monotonic() - t0
            cpu_converged = cpu_seconds(proc.pid)
            other_converge = load.other_cores()
            apiserver_cpu = sum(cpu_seconds(pid) for pid in cp.pids)  # since its start; creates included
            if spy is not None:  # the profile covers start-up to convergence only
                spy.send_signal(signal.SIGINT)
            if done < n:
                print(f"WARNING: only {done}/{n} Programmed after {t_converged:.1f}s", file=sys.stderr)
            time.sleep(2)  # let the last status patches' events settle before the snapshot
            d = api_counts(mport)  # every call since start: + ~12 start-up lists/watches
            reconciles = metric_value(mport, r'^controller_runtime_reconcile_total\{controller="mcpserver",'
                                             r'result="success"\} (\S+)$')
            api_d = diff(apiserver_counts(kube), api_before)
            total_calls = sum(d.values())
            rss_peak = vm_hwm_mib(proc.pid)
            dropped = events_dropped(mport)
            if args.spec_changes:
                load_spec = Load(our_pids)
                latencies = spec_changes(kube, observer, ns, n, args.spec_changes)
                restart["spec_other"] = load_spec.other_cores()
            stop(proc)
            if args.restart:
                restart |= restarted_controller(ctl_kc, log, args, n, ours, our_pids)
            print(f"restart: {restart}", file=sys.stderr)
        finally:
            stop(proc)
            if spy is not None:
                spy.wait(30)
            log.close()
            observer.close()

        print("controller API calls by (verb, resource) during convergence:", file=sys.stderr)
        for k, v in sorted(d.items()):
            print(f"  {k}: {v:.0f}", file=sys.stderr)
        print("apiserver_request_total by (verb, resource) during convergence (all clients):", file=sys.stderr)
        for k, v in sorted(api_d.items()):
            print(f"  {k}: {v:.0f}", file=sys.stderr)

        by = ", ".join(f"{verb} {res} {v / n:.2f}" for (verb, res), v in sorted(d.items(), key=lambda kv: -kv[1])
                       if v / n >= 0.01)
        api_by = ", ".join(f"{verb} {res} {v / n:.2f}" for (verb, res), v in
                           sorted(api_d.items(), key=lambda kv: -kv[1]) if v / n >= 0.01)
        rows += [
            ("MCPServers Programmed=True", f"{done}/{n}", ""),
            (f"MCPServers created before the controller starts (client, {args.create_concurrency} in flight)",
             f"{t_created:.1f} s", "untimed"),
            (f"controller: process start -> all Programmed (--max-concurrent-reconciles="
             f"{args.max_concurrent_reconciles})", f"{t_converged:.1f} s",
             f"of which start-up until caches synced {t_ready:.1f} s; other load {other_converge:.2f} cores"),
            ("controller CPU from start to all Programmed", f"{cpu_converged:.1f} s",
             f"{cpu_converged / max(t_converged, 1e-9):.0%} of one core; **{1000 * cpu_converged / n:.1f} ms/"
             f"MCPServer** (goal <= 14.6)"),
            ("controller reconciles per MCPServer until converged (+2 s)", f"{reconciles / n:.2f}", ""),
            ("controller API calls per MCPServer", f"{total_calls / n:.2f}",
             f"writes {writes(d) / n:.2f}/MCPServer: {by}"),
            ("apiserver_request_total per MCPServer during convergence (every client: controller, this bench's "
             "watch, kube-controller-manager)", f"{sum(api_d.values()) / n:.2f}", api_by),
            ("etcd + apiserver + controller-manager CPU, their start to convergence (creates included)",
             f"{apiserver_cpu:.1f} s", ""),
            ("controller peak RSS (VmHWM)", f"{rss_peak:.1f} MiB", "goal < 256"),
            ("Events dropped (recorder buffer full)", f"{dropped:.0f}", "Events are advice; never block a reconcile"),
        ]
        if latencies:
            ordered = sorted(latencies)
            rows.append((f"one spec change (new image) -> its status Programmed for the new generation, at N={n} "
                         f"({len(latencies)} rounds, one at a time)", f"median {ordered[len(ordered) // 2]:.3f} s",
                         f"max {ordered[-1]:.3f} s (goal <= 1 s); all: "
                         + ", ".join(f"{x:.3f}" for x in latencies)
                         + f"; other load {restart.get('spec_other', 0):.2f} cores"))
        if "t_done" in restart:
            rows += [
                ("restarted controller: process start -> every MCPServer reconciled once (queue empty)",
                 f"{restart['t_done']:.1f} s", f"caches synced after {restart['t_ready']:.1f} s; "
                 f"other load {restart['other']:.2f} cores"),
                ("restarted controller: writes until converged", f"{restart['writes']:.0f}",
                 f"goal 0; {restart['calls']:.0f} calls in all (its lists and watches)"),
                ("restarted controller: CPU until converged", f"{restart['cpu']:.1f} s",
                 f"{1000 * restart['cpu'] / n:.2f} ms/MCPServer; peak RSS {restart['rss']:.1f} MiB"),
                (f"restarted controller, then an idle resync window ({args.restart_resync + 5:.0f} s > "
                 f"--resync-period {args.restart_resync:.0f}s): writes", f"{restart['idle_writes']:.0f}",
                 f"goal 0; {restart['idle_reconciles']:.0f} reconciles (N={n}), {restart['idle_calls']:.0f} calls, "
                 f"controller CPU {restart['idle_cpu']:.1f} s; other load {restart['idle_other']:.2f} cores"),
            ]
        event_writes = sum(v for (vb, r), v in d.items() if r == "events") / n
        runs = 0
        for c in (int(x) for x in args.limit_concurrency.split(",") if x):
            for with_events in ((True, False) if args.limit_without_events else (True,)) if event_writes \
                    else (False,):
                runs += 1
                timed: dict[str, float] = {}
                t_limit = asyncio.run(limit_run(cp.kubeconfig, kube, f"limit-{runs}", n, c,
                                                args.create_concurrency, with_events, timed, our_pids))
                what = "1 Secret create + 3 SSA + 1 status patch" + (
                    " + 1 Event (the controller's writes)" if with_events else "")
                rows.append((f"limit: minimal client, {what}, concurrency {c}", f"{t_limit:.1f} s",
                             f"controller/limit = {t_converged / t_limit:.2f}x"
                             + (" (goal <= 1.5x)" if c == args.max_concurrent_reconciles and with_events else "")
                             + f"; other load {timed.get('other', float('nan')):.2f} cores"))
        kube.close()

    table = ["| measure | value | note |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    out = "\n".join(table)
    print(out)
    if not args.no_append:
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (f"\n\n## Controller at scale (issues 5 and 17)\n\nCommand: {command} ({date}). One run on a 2-core "
                   "machine that also runs etcd, kube-apiserver, kube-controller-manager and the load client, so "
                   "absolute times are machine-bound; the controller/limit ratio is the comparable figure. Both start "
                   "from N pre-created MCPServers (creates untimed): the controller's time runs from its process "
                   "start to the last Programmed=True; the limit run is on the same apiserver with the controller "
                   "stopped, in a fresh namespace.\n\n"
                   + out + "\n")
        with args.results.open("a") as f:
            f.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
