"""MCP 2026-07-28 (stateless) `tools/call` through `kmcp adapter`, beside the SDK's own HTTP server, in one run.

One server code, `bench/servers/modern_echo.py` (`mcp` 2.x `MCPServer`, one `echo` tool), served three ways:

- `sdk-http`: that file's own Streamable HTTP (`--http`, uvicorn), driven with 2026-07-28 requests;
- `kmcp modern`: `kmcp adapter -- <that file over stdio>`, driven with 2026-07-28 requests (passed through to the
  warm stateless pool, `--stateless-pool N`, default 1; `--pools` adds cells with bigger pools at the top
  concurrency);
- `kmcp handshake`: the same adapter, driven handshake-era (initialize, a session and a process per client).

bench/loadgen drives every cell at each concurrency (one call in flight per client) for a fixed time, after a
warm-up; sessions are opened before the timed loop (`-barrier`), so CPU and latency figures are the calls' alone.
Per cell: calls/s, p50/p99, CPU per call of the front process alone (the adapter; for sdk-http the server itself),
of the whole process tree (front + stdio servers), and of the load generator, and what every other process on the
machine used meanwhile (it is shared). Then the first call of a new client: new clients one after another, each on
a fresh connection to an idle, warm gateway; the time from the connection being ready to the first call's answer,
next to the same client's second call (one round trip). `--profile` also runs the adapter at the top concurrency
under py-spy (when installed) or cProfile and prints the top entries.

Usage (after `bash scripts/setup && bash bench/setup`, from the repository root):
  .venv/bin/python bench/modern.py [--seconds 5] [--clients 1,8,32] [--pools 2,4] [--rounds 1] [--json out.json]
                                   [--first 20] [--profile] [--server sdk|stdlib]
`--server stdlib` puts the standard-library echo server behind the adapter instead (the adapter's own cost with a
server that costs almost nothing; no SDK cells). The commands and results are in bench/RESULTS.md.
Loopback only; every cell is bounded in time (loadgen caps at 120 s) and processes are ended by their group id.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gateways import CACHE, LOADGEN, cpu_seconds, free_port, machine_busy_seconds, tree_cpu_seconds, wait_listening

ROOT = Path(__file__).resolve().parent.parent
MCP2 = ROOT / ".venv-mcp2/bin/python"
SERVER = [str(MCP2), str(ROOT / "bench/servers/modern_echo.py")]
# --server stdlib: bench/servers/echo_server.py (standard library, answers tools/call whatever the era), behind the
# adapter told the server is modern, so modern requests are passed through to it: the adapter's own cost with a
# server that costs almost nothing (the SDK's server costs ~2 ms a call and bounds every row above). No SDK cells.
STDLIB = [sys.executable, str(ROOT / "bench/servers/echo_server.py")]
ERA: list[str] = []
PYSPY = CACHE / "pyspy-venv/bin/py-spy"


@dataclass(frozen=True)
class Target:
    name: str  # sdk-http | kmcp
    pool: int = 1

    @property
    def children(self) -> int:
        """Server processes to wait for before measuring: the pool (the SDK's HTTP server has none)."""
        return self.pool if self.name == "kmcp" else 0

    def command(self, port: int, *, profile: Path | None = None) -> list[str]:
        if self.name == "sdk-http":
            return [*SERVER, "--http", "--port", str(port)]
        python = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
        return [*python, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}",
                "--stateless-pool", str(self.pool), *ERA, "--", *SERVER]


@dataclass(frozen=True)
class Cell:
    label: str
    target: Target
    transport: str  # modern | streamable (handshake-era sessions)
    clients: int


@contextlib.contextmanager
def started(target: Target, *, profile: Path | None = None):  # type: ignore[no-untyped-def]
    port = free_port()
    log = os.environ.get("KMCP_BENCH_LOG")  # append the front's stderr here (for a cell that fails)
    err = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(target.command(port, profile=profile), stdout=subprocess.DEVNULL, stderr=err,
                            start_new_session=True, cwd=ROOT)
    try:
        wait_listening(port, proc, timeout=60)
        yield proc, f"http://127.0.0.1:{port}/mcp"
    finally:
        with contextlib.suppress(ProcessLookupError):
            # SIGINT: the adapter shuts down cleanly (and cProfile writes its file); uvicorn too
            os.kill(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group: stdio servers the front left behind
        proc.wait()
        if log:
            err.close()  # type: ignore[union-attr]


def loadgen(args: list[str], timeout: float = 300) -> dict[str, object]:
    out = subprocess.run([str(LOADGEN), *args], capture_output=True, text=True, timeout=timeout, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def warm_up(url: str, transport: str, clients: int, proc: subprocess.Popen[bytes], pool: int) -> None:
    """Calls until the pool has its ``pool`` processes and they answer (no cold start in the cell). Handshake cells
    too get one modern call first: the adapter's warm pool process has then answered its era probe, as it has on
    any adapter that has been up a few seconds. (Without it, 32 session processes starting at once delayed the
    probe past its 10 s timeout, the adapter took the server for handshake-era and crashed: see RESULTS.md.)"""
    if transport != "modern":
        if pool:
            loadgen(["-url", url, "-transport", "modern", "-c", "1", "-d", "1s"])
        return
    deadline = time.monotonic() + 60
    while True:
        loadgen(["-url", url, "-transport", "modern", "-c", str(clients), "-d", "1s"])
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if len(children) >= min(pool, clients) or time.monotonic() > deadline:
            break
    loadgen(["-url", url, "-transport", "modern", "-c", str(clients), "-d", "1s"])


def measure(cell: Cell, seconds: float) -> dict[str, object]:
    with started(cell.target) as (proc, url):
        warm_up(url, cell.transport, cell.clients, proc, cell.target.children)
        gen = subprocess.Popen([str(LOADGEN), "-url", url, "-transport", cell.transport, "-c", str(cell.clients),
                                "-d", f"{seconds}s", "-barrier"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        assert gen.stdin and gen.stdout and gen.stderr
        try:
            line = gen.stderr.readline()  # "ready": every session is open
            if line.strip() != "ready":
                raise RuntimeError(f"loadgen: {line}{gen.stderr.read()}")
            front0, tree0, machine0 = cpu_seconds(proc.pid), tree_cpu_seconds(proc.pid), machine_busy_seconds()
            gen.stdin.write("\n")
            gen.stdin.flush()
            out, _ = gen.communicate(timeout=seconds + 120)
            front = cpu_seconds(proc.pid) - front0
            tree = front + tree_cpu_seconds(proc.pid) - tree0
            machine = machine_busy_seconds() - machine0
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
    result: dict[str, object] = json.loads(out)
    calls = int(str(result["calls"])) or 1
    generator = float(str(result["loop_cpu_seconds"]))
    result.update(label=cell.label, clients=cell.clients, front_cpu_ms=front * 1000 / calls,
                  tree_cpu_ms=tree * 1000 / calls, loadgen_cpu_ms=generator * 1000 / calls,
                  other_cores=max(machine - tree - generator, 0.0) / float(str(result["seconds"])))
    return result


def first_calls(target: Target, transport: str, clients: int) -> dict[str, object]:
    with started(target) as (proc, url):
        # the pool is warm; the handshake cells' per-session processes are not (a session starts its own)
        warm_up(url, "modern", 1, proc, target.children)
        time.sleep(0.5)
        result = loadgen(["-url", url, "-transport", transport, "-first", str(clients), "-pause", "100ms"])
    front = "SDK HTTP" if target.name == "sdk-http" else "kmcp adapter"
    client = {"modern": "2026-07-28 pinned (no probe)",
              "modern-auto": "2026-07-28 auto (server/discover, then the call)",
              "streamable": "handshake (initialize, initialized, call; a new process)"}[transport]
    result["label"] = f"{front}, {client}"
    return result


def profile_adapter(clients: int, seconds: float) -> str:
    """The adapter under load at ``clients`` modern clients, sampled by py-spy (or under cProfile)."""
    target = Target("kmcp")
    if PYSPY.exists():
        with started(target) as (proc, url):
            warm_up(url, "modern", clients, proc, 1)
            with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as raw:
                spy = subprocess.Popen([str(PYSPY), "record", "--pid", str(proc.pid), "--format", "raw",
                                        "--rate", "500", "--duration", str(int(seconds)), "--nonblocking",
                                        "--output", raw.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                loadgen(["-url", url, "-transport", "modern", "-c", str(clients), "-d", f"{seconds}s"])
                spy.wait(seconds + 30)
                return pyspy_top(Path(raw.name))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "adapter.prof"
        with started(target, profile=out) as (proc, url):
            warm_up(url, "modern", clients, proc, 1)
            loadgen(["-url", url, "-transport", "modern", "-c", str(clients), "-d", f"{seconds}s"])
        import io
        import pstats

        text = io.StringIO()
        pstats.Stats(str(out), stream=text).sort_stats("tottime").print_stats(25)
        return text.getvalue()


def _function(frame: str) -> str:
    """``name (file:line)`` -> ``name (file)``: one row per function, whatever line was running."""
    head, sep, tail = frame.rpartition(":")
    return f"{head})" if sep and tail.rstrip(")").isdigit() else frame


def pyspy_top(raw: Path, top: int = 25) -> str:
    """Self time and inclusive time per function from py-spy's collapsed stacks (idle frames dropped)."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_function(frame) for frame in stack.split(";")]
        if not count.isdigit() or not frames:
            continue
        n = int(count)
        samples += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + n
    lines = [f"{samples} samples (active only: --nonblocking, idle threads not sampled)",
             "| self % | total % | function (file) |", "|---|---|---|"]
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {100 * n / samples:.1f} | {100 * total[frame] / samples:.1f} | `{frame}` |")
    return "\n".join(lines)


def num(row: dict[str, object], field: str) -> float:
    return float(str(row[field]))


def median_row(runs: list[dict[str, object]]) -> dict[str, object]:
    def med(field: str) -> float:
        return statistics.median(float(str(r[field])) for r in runs)

    row = dict(runs[0])
    for field in ("calls_per_second", "p50_ms", "p99_ms", "front_cpu_ms", "tree_cpu_ms", "loadgen_cpu_ms",
                  "other_cores"):
        row[field] = med(field)
    row["errors"] = sum(int(str(r["errors"])) for r in runs)
    row["runs"] = ", ".join(f"{float(str(r['calls_per_second'])):.0f}" for r in runs)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--pools", default="2,4", help="extra kmcp modern cells at the top concurrency")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every cell (interleaved); medians reported")
    parser.add_argument("--first", type=int, default=20, help="new clients for the first-call measurement")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--server", choices=("sdk", "stdlib"), default="sdk",
                        help="stdlib: the adapter alone over a trivial server, no SDK HTTP cells (see STDLIB)")
    parser.add_argument("--only", default="", help="comma-separated: sdk, modern, handshake (default: all cells)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not LOADGEN.exists() or not MCP2.exists() or shutil.which("go") is None:
        sys.exit("run `bash scripts/setup && bash bench/setup` first")
    if args.server == "stdlib":
        SERVER[:] = STDLIB
        ERA[:] = ["--server-era", "modern"]
    clients = [int(c) for c in args.clients.split(",")]
    cells = []
    for c in clients:
        if args.server == "sdk":
            cells.append(Cell("SDK HTTP", Target("sdk-http"), "modern", c))
        cells += [Cell("kmcp adapter, pool 1", Target("kmcp"), "modern", c),
                  Cell("kmcp adapter", Target("kmcp"), "streamable", c)]
    cells += [Cell(f"kmcp adapter, pool {p}", Target("kmcp", p), "modern", clients[-1])
              for p in map(int, filter(None, args.pools.split(",")))]
    if args.only:
        kinds = set(args.only.split(","))
        cells = [cell for cell in cells if ("sdk" if cell.target.name == "sdk-http" else
                                            "modern" if cell.transport == "modern" else "handshake") in kinds]
    raw: dict[Cell, list[dict[str, object]]] = {cell: [] for cell in cells}
    for _ in range(args.rounds):
        for cell in cells:
            raw[cell].append(measure(cell, args.seconds))
            print(f"# {cell.label} c={cell.clients}: {float(str(raw[cell][-1]['calls_per_second'])):.0f} calls/s",
                  file=sys.stderr, flush=True)
    fronts = [Target("kmcp"), Target("sdk-http")] if args.server == "sdk" else [Target("kmcp")]
    probes = ("modern", "modern-auto") if args.server == "sdk" else ("modern",)  # the stdlib server has no discover
    firsts = [first_calls(front, transport, args.first) for transport in probes for front in fronts] \
        if args.first > 0 else []
    if args.first > 0:
        firsts.append(first_calls(Target("kmcp"), "streamable", max(args.first // 4, 3)))
    rows = [median_row(raw[cell]) for cell in cells]
    kind = "(mcp 2.x MCPServer)" if args.server == "sdk" else "(stdlib, adapter --server-era modern)"
    print(f"server: {Path(SERVER[-1]).relative_to(ROOT)} {kind}; {args.seconds:g} s per cell; "
          f"{args.rounds} round(s), medians; loopback; {os.cpu_count()} cores")
    print("| server behind | requests | clients | calls/s (runs) | p50 ms | p99 ms | front CPU ms/call "
          "| tree CPU ms/call | loadgen CPU ms/call | other load (cores) | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        requests = "2026-07-28" if r["transport"] == "modern" else "handshake (sessions)"
        print(f"| {r['label']} | {requests} | {r['clients']} | {float(str(r['calls_per_second'])):.0f} ({r['runs']}) "
              f"| {float(str(r['p50_ms'])):.2f} | {float(str(r['p99_ms'])):.1f} "
              f"| {float(str(r['front_cpu_ms'])):.3f} | {float(str(r['tree_cpu_ms'])):.3f} "
              f"| {float(str(r['loadgen_cpu_ms'])):.3f} | {float(str(r['other_cores'])):.2f} | {r['errors']} |")
    print()
    by = {(str(r["label"]), str(r["transport"]), int(str(r["clients"]))): r for r in rows}
    for c in clients:
        sdk, kmcp = by.get(("SDK HTTP", "modern", c)), by.get(("kmcp adapter, pool 1", "modern", c))
        if sdk and kmcp:
            pairs = zip(raw[Cell("kmcp adapter, pool 1", Target("kmcp"), "modern", c)],
                        raw[Cell("SDK HTTP", Target("sdk-http"), "modern", c)], strict=True)
            per_round = ", ".join(f"{num(k, 'calls_per_second') / max(num(d, 'calls_per_second'), 1e-9):.2f}x"
                                  for k, d in pairs)
            print(f"at {c} clients, kmcp/SDK calls/s per round: {per_round}; medians: "
                  f"{num(kmcp, 'calls_per_second') / max(num(sdk, 'calls_per_second'), 1e-9):.2f}x, "
                  f"p99 {num(kmcp, 'p99_ms'):.1f} vs {num(sdk, 'p99_ms'):.1f} ms, "
                  f"tree CPU/call {num(kmcp, 'tree_cpu_ms'):.3f} vs {num(sdk, 'tree_cpu_ms'):.3f} ms")
    print()
    print("first call of a new client (fresh connection, idle warm gateway; one client at a time)")
    print("| gateway, client | clients | first call p50 ms (min-max) | second call p50 ms | first/second | errors |")
    print("|---|---|---|---|---|---|")
    for f in firsts:
        print(f"| {f['label']} | {f['clients']} | {float(str(f['first_call_p50_ms'])):.2f} "
              f"({float(str(f['first_call_min_ms'])):.2f}-{float(str(f['first_call_max_ms'])):.2f}) "
              f"| {float(str(f['second_call_p50_ms'])):.2f} | {float(str(f['first_over_second'])):.2f} "
              f"| {f['errors']} |")
    profile = profile_adapter(clients[-1], args.seconds) if args.profile else ""
    if profile:
        print()
        print(f"adapter profile at {clients[-1]} modern clients, pool 1")
        print(profile)
    if args.json:
        args.json.write_text(json.dumps({"cells": [r for cell in cells for r in raw[cell]], "rows": rows,
                                         "first": firsts, "profile": profile}, indent=2))


if __name__ == "__main__":
    main()
