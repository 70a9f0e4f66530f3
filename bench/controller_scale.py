"""Controller at scale (issue 5, item 7): N stdio MCPServers against a real apiserver.

N MCPServers are created first (untimed); then the controller starts and the bench measures the time from its process
start until every MCPServer has Programmed=True, the API calls per MCPServer it made (from its
kmcp_kube_api_requests_total metrics), its CPU, writes during an idle resync window (goal 0) and its peak RSS (VmHWM).
Then, on the same apiserver with the controller stopped, "the limit": a minimal client that sends only the writes
the controller makes per MCPServer (session-key Secret create, SSA of ServiceAccount, Service, Deployment, status
patch, and its one Event) with the same concurrency, and the ratio controller time / limit time.

    .venv/bin/python bench/controller_scale.py --count 1000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
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


def programmed_count(kube: Kube, ns: str) -> int:
    items = kube.items("kagent.dev/v1alpha1", "MCPServer", ns)
    done = 0
    for o in items:
        for c in (o.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Programmed" and c.get("status") == "True":
                done += 1
    return done


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


async def limit_run(kubeconfig: Path, kube: Kube, ns: str, n: int, concurrency: int, create_conc: int,
                    with_events: bool) -> float:
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

        t0 = time.monotonic()
        await bounded(len(prepared), concurrency, one)
        await asyncio.gather(*events)
        return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--create-concurrency", type=int, default=32)
    ap.add_argument("--max-concurrent-reconciles", type=int, default=4)
    ap.add_argument("--limit-concurrency", default="4,16", help="comma-separated concurrencies for the limit run")
    ap.add_argument("--resync", type=float, default=30.0, help="controller --resync-period in seconds")
    ap.add_argument("--timeout", type=float, default=600.0, help="bound on waiting for convergence")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true")
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

        mport, pport = free_port(), free_port()
        log = (work / "controller.log").open("wb")
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "kmcp", "controller", f"--kubeconfig={ctl_kc}",
             f"--metrics-bind-address=127.0.0.1:{mport}", "--no-metrics-secure",
             f"--health-probe-bind-address=127.0.0.1:{pport}", "--leader-elect=false",
             f"--resync-period={int(args.resync)}s", f"--max-concurrent-reconciles={args.max_concurrent_reconciles}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "KMCP_ADAPTER_IMAGE": "example.test/kmcp:dev"})
        spy = None
        if args.pyspy is not None:
            spy = subprocess.Popen([os.environ.get("PYSPY", "py-spy"), "record", "--pid", str(proc.pid),
                                    "--rate", "100", "--nonblocking", "--gil", "--format", "raw",
                                    "-o", str(args.pyspy)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"controller exited {proc.returncode}")
                try:
                    return httpx.get(f"http://127.0.0.1:{pport}/readyz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False
            wait_for(ready, timeout=60, interval=0.05, description="controller ready")
            t_ready = time.monotonic() - t0
            before: dict[tuple[str, str], float] = {}  # every call since start: + ~12 start-up lists/watches
            deadline = t0 + args.timeout
            done = 0
            while True:
                done = programmed_count(kube, ns)
                if done >= n or time.monotonic() > deadline or proc.poll() is not None:
                    break
                time.sleep(0.5)
            t_converged = time.monotonic() - t0
            cpu_converged = cpu_seconds(proc.pid)
            if spy is not None:  # the profile covers start-up to convergence only
                spy.send_signal(signal.SIGINT)
            if done < n:
                print(f"WARNING: only {done}/{n} Programmed after {t_converged:.1f}s", file=sys.stderr)
            time.sleep(2)  # let the last status patches' events settle before the snapshot
            converged = api_counts(mport)
            d = diff(converged, before)
            total_calls = sum(d.values())
            # idle resync window
            snap = api_counts(mport)
            time.sleep(args.resync + 5)
            idle = diff(api_counts(mport), snap)
            idle_writes = writes(idle)
            rss_peak = vm_hwm_mib(proc.pid)
            dropped = events_dropped(mport)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if spy is not None:
                spy.wait(30)
            log.close()

        print("controller API calls by (verb, resource) during convergence:", file=sys.stderr)
        for k, v in sorted(d.items()):
            print(f"  {k}: {v:.0f}", file=sys.stderr)
        print(f"idle window calls: {idle}", file=sys.stderr)

        rows += [
            ("MCPServers Programmed=True", f"{done}/{n}", ""),
            (f"MCPServers created before the controller starts (client, {args.create_concurrency} in flight)",
             f"{t_created:.1f} s", "untimed"),
            (f"controller: process start -> all Programmed (--max-concurrent-reconciles="
             f"{args.max_concurrent_reconciles})", f"{t_converged:.1f} s",
             f"of which start-up until caches synced {t_ready:.1f} s"),
            ("controller API calls per MCPServer", f"{total_calls / n:.2f}",
             f"writes {writes(d) / n:.2f}/MCPServer, of which Event creates "
             f"{sum(v for (vb, r), v in d.items() if r == 'events') / n:.2f}"),
            (f"writes in an idle resync window ({args.resync + 5:.0f} s > resync {args.resync:.0f} s)",
             f"{idle_writes:.0f}", "goal 0"),
            ("controller CPU from start to all Programmed", f"{cpu_converged:.1f} s",
             f"{cpu_converged / max(t_converged, 1e-9):.0%} of one core; {1000 * cpu_converged / n:.1f} ms/MCPServer"),
            ("controller peak RSS (VmHWM)", f"{rss_peak:.1f} MiB", "goal < 100"),
            ("Events dropped (recorder buffer full)", f"{dropped:.0f}", "Events are advice; never block a reconcile"),
        ]
        event_writes = sum(v for (vb, r), v in d.items() if r == "events") / n
        runs = 0
        for c in (int(x) for x in args.limit_concurrency.split(",") if x):
            for with_events in ((True, False) if event_writes else (False,)):
                runs += 1
                t_limit = asyncio.run(limit_run(cp.kubeconfig, kube, f"limit-{runs}", n, c,
                                                args.create_concurrency, with_events))
                what = "1 Secret create + 3 SSA + 1 status patch" + (
                    " + 1 Event (the controller's writes)" if with_events else "")
                rows.append((f"limit: minimal client, {what}, concurrency {c}", f"{t_limit:.1f} s",
                             f"controller/limit = {t_converged / t_limit:.2f}x"
                             + (" (goal <= 1.5x)" if c == args.max_concurrent_reconciles and with_events else "")))
        kube.close()

    table = ["| measure | value | note |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    out = "\n".join(table)
    print(out)
    if not args.no_append:
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (f"\n\n## Controller at scale (issue 5)\n\nCommand: {command} ({date}). One run on a 2-core "
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
