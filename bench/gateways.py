"""Side-by-side: kmcp adapter vs supergateway vs mcp-proxy vs direct stdio, one run, same server, loopback.

Each gateway wraps the same stdio server; bench/loadgen (Go) drives it at 1, 8 and 32 concurrent sessions for a
bounded time. Reported per row: calls/s, p50/p99 latency, session-open p50, the gateway's own CPU per call
(its process only, not the server children) and its peak RSS. Cross-talk (a reply carrying another session's
payload) is counted by the load generator.

Usage (peers installed by `bash bench/setup`):
  python bench/gateways.py [--server echo|everything] [--seconds 5] [--sessions 1,8,32] [--only kmcp,...]
Prints a Markdown table; paste it with the command into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KMCP_BENCH_CACHE", Path.home() / ".cache" / "kmcp" / "bench"))
LOADGEN = CACHE / "loadgen"
PYTHON = os.path.realpath(sys.executable)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(name: str) -> list[str]:
    if name == "echo":
        return [PYTHON, str(ROOT / "bench/servers/echo_server.py")]
    return [str(CACHE / "node_modules/.bin/mcp-server-everything"), "stdio"]


@dataclass
class Gateway:
    name: str
    transport: str  # streamable | sse
    path: str
    source: str = ""  # kmcp only: run the adapter from this checkout (``--baseline``) instead of this one

    @property
    def label(self) -> str:
        return f"{self.name}@base" if self.source else self.name

    def command(self, port: int, server: list[str]) -> list[str]:
        quoted = " ".join(server)
        if self.name.startswith("kmcp"):
            adapter = [sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}"]
            if self.name == "kmcp-shared":
                return [*adapter, "--session-mode", "shared", "--", *server]
            if self.name == "kmcp-bridge":  # the pod's FIFO launcher: serve.sh (the companion) starts the servers
                return [*adapter, "--bridge", str(bridge_dir(port))]
            if self.name == "kmcp-forwarded":  # the owner replica; the companion is the replica that forwards
                return [*adapter, "--peer-address", f"127.0.0.1:{port}", "--", *server]
            return [*adapter, "--", *server]
        if self.name.startswith("supergateway"):
            extra = ["--outputTransport", "streamableHttp", "--stateful"] if self.transport == "streamable" else []
            return [str(CACHE / "node_modules/.bin/supergateway"), "--stdio", quoted, "--port", str(port),
                    "--logLevel", "none", *extra]
        if self.name == "bare":
            return [sys.executable, str(ROOT / "bench/bare_gateway.py"), str(port), "--", *server]
        if self.name == "trivial":
            return [str(LOADGEN), "-serve", f"127.0.0.1:{port}"]
        if self.name == "mcp-proxy":
            return [str(CACHE / "mcp-proxy-venv/bin/mcp-proxy"), "--port", str(port), "--host", "127.0.0.1",
                    "--log-level", "WARNING", "--", *server]
        raise ValueError(self.name)


def bridge_dir(port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"kmcp-bench-bridge-{port}"


def companion(gw: Gateway, port: int, server: list[str]) -> tuple[list[str], str, int]:
    """A second process some rows need (its command, what its CPU counts as, and its port): the mcp-server
    container's serve.sh for ``kmcp-bridge`` (its CPU and its servers' is server CPU), the replica a session's
    calls land on for ``kmcp-forwarded`` (it forwards each to the owner: its CPU is gateway CPU)."""
    if gw.name == "kmcp-bridge":
        script = bridge_dir(port) / "serve.sh"
        deadline = time.monotonic() + 30
        while not script.exists():  # the adapter writes serve.sh into the shared directory at start
            if time.monotonic() > deadline:
                raise RuntimeError(f"{script} not written")
            time.sleep(0.05)
        return ["/bin/sh", str(script), *server], "server", 0
    if gw.name == "kmcp-forwarded":
        front = free_port()
        return ([sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{front}", "--peer-address",
                 f"127.0.0.1:{front}", "--", *server], "gateway", front)
    return [], "", 0


GATEWAYS = [
    Gateway("trivial", "streamable", "/mcp"),  # loadgen's own in-process echo endpoint: the load generator's ceiling
    Gateway("bare", "streamable", "/mcp"),  # bench/bare_gateway.py: h11 + trio and nothing else, the floor
    Gateway("kmcp", "streamable", "/mcp"),
    Gateway("kmcp", "sse", "/sse"),
    Gateway("kmcp-shared", "streamable", "/mcp"),
    Gateway("kmcp-bridge", "streamable", "/mcp"),  # servers started through FIFOs, as in a pod
    Gateway("kmcp-forwarded", "streamable", "/mcp"),  # every call lands on the other replica and is forwarded
    Gateway("supergateway", "streamable", "/mcp"),
    Gateway("supergateway", "sse", "/sse"),
    Gateway("mcp-proxy", "streamable", "/mcp"),
]


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process itself (children excluded: the servers are the same for every gateway)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid``'s descendants: reaped ones (cutime + cstime) and live ones, recursively (the servers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[13]) + int(fields[14])) / CLK_TCK
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError, IndexError):
                    total += cpu_seconds(int(child)) + tree_cpu_seconds(int(child))
    return total


def machine_busy_seconds() -> float:
    """CPU time every process on the machine used (all cores, /proc/stat), to show what else was running."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def loadgen_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # loadgen is the only child reaped during a row
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def gateway_pid(proc: subprocess.Popen[bytes]) -> int:
    """The process doing the gateway's work (npm bin shims exec node; follow a single child if there is one)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    kids = children.read_text().split() if children.exists() else []
    if kids and Path(f"/proc/{proc.pid}/comm").read_text().strip() in ("sh", "bash", "dash"):
        return int(kids[0])
    return proc.pid


def loadgen(args: list[str]) -> dict[str, object]:
    out = subprocess.run([str(LOADGEN), *args], capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def run_gateway(gw: Gateway, server: list[str], sessions: int, seconds: float) -> dict[str, object]:
    """One row. Sessions are opened before the timed loop (loadgen ``-barrier``), so the CPU and latency figures
    are the calls' alone: 32 server processes starting inside the window would otherwise be counted per call."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": gw.source} if gw.source else {**os.environ}
    key = {"KMCP_SESSION_KEY": "bench-session-key-" + "k" * 32}  # replicas sign session ids with a shared key
    procs: list[subprocess.Popen[bytes]] = []

    def start(command: list[str]) -> subprocess.Popen[bytes]:
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True, env={**env, **key}, cwd=gw.source or None))
        return procs[-1]

    try:
        proc = start(gw.command(port, server))
        url = f"http://127.0.0.1:{port}{gw.path}"
        extra, counts_as, extra_port = companion(gw, port, server)
        side = start(extra) if extra else None
        wait_listening(port, proc)
        via: list[str] = []
        if side is not None and extra_port:
            wait_listening(extra_port, side)
            via = ["-via", f"http://127.0.0.1:{extra_port}{gw.path}"]
        pid = gateway_pid(proc)

        def gateway_cpu() -> float:
            own = cpu_seconds(pid)
            return own + (cpu_seconds(side.pid) if side is not None and counts_as == "gateway" else 0.0)

        def server_cpu() -> float:
            tree = tree_cpu_seconds(pid)
            if side is not None and counts_as == "server":
                tree += cpu_seconds(side.pid) + tree_cpu_seconds(side.pid)
            return tree

        gen = subprocess.Popen([str(LOADGEN), "-url", url, *via, "-transport", gw.transport, "-c", str(sessions),
                                "-d", f"{seconds}s", "-barrier"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert gen.stdin and gen.stdout and gen.stderr
        try:
            line = gen.stderr.readline()  # "ready": every session is open
            if line.strip() != "ready":
                raise RuntimeError(f"loadgen: {line}{gen.stderr.read()}")
            before, children, machine = gateway_cpu(), server_cpu(), machine_busy_seconds()
            gen.stdin.write("\n")
            gen.stdin.flush()
            out, _ = gen.communicate(timeout=seconds + 120)
            cpu = gateway_cpu() - before
            children = server_cpu() - children
            machine = machine_busy_seconds() - machine
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
        result: dict[str, object] = json.loads(out)
        generator = float(str(result["loop_cpu_seconds"]))
        calls = int(str(result["calls"])) or 1
        other = max(machine - cpu - children - generator, 0.0) / float(str(result["seconds"]))
        result.update(gateway=gw.label, cpu_ms_per_call=cpu * 1000 / calls, rss_mib=peak_rss_mib(pid),
                      server_cpu_ms_per_call=children * 1000 / calls, loadgen_cpu_ms_per_call=generator * 1000 / calls,
                      other_cores=other)
        return result
    finally:
        for started in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.pid, signal.SIGTERM)
            try:
                started.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(started.pid, signal.SIGKILL)
                started.wait()
        shutil.rmtree(bridge_dir(port), ignore_errors=True)


def run_direct(server: list[str], sessions: int, seconds: float) -> dict[str, object]:
    generator, machine = loadgen_cpu_seconds(), machine_busy_seconds()
    result = loadgen(["-transport", "stdio", "-cmd", " ".join(server), "-c", str(sessions), "-d", f"{seconds}s"])
    generator = loadgen_cpu_seconds() - generator  # here the servers are loadgen's children: counted with it
    machine = machine_busy_seconds() - machine
    calls = int(str(result["calls"])) or 1
    result.update(gateway="direct stdio", cpu_ms_per_call=0.0, rss_mib=0.0, server_cpu_ms_per_call=0.0,
                  loadgen_cpu_ms_per_call=generator * 1000 / calls,
                  other_cores=max(machine - generator, 0.0) / float(str(result["seconds"])))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=("echo", "everything"), default="echo")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sessions", default="1,8,32")
    parser.add_argument("--only", default="", help="comma-separated gateway names")
    parser.add_argument("--json", type=Path, help="also write raw results here")
    parser.add_argument("--baseline", type=Path, help="a checkout of an older kmcp (e.g. `git worktree add "
                        "/tmp/base <commit>`): its adapter runs beside this one's in the same run, as `kmcp@base`")
    args = parser.parse_args()
    if not LOADGEN.exists() or shutil.which("node") is None:
        sys.exit("run `bash bench/setup` first")
    server = server_command(args.server)
    wanted = set(filter(None, args.only.split(",")))
    gateways = list(GATEWAYS)
    if args.baseline:  # each kmcp row is followed at once by the same row of the older checkout: the same load
        base = str(args.baseline.resolve())
        gateways = [twin for g in GATEWAYS
                    for twin in ([g, Gateway(g.name, g.transport, g.path, base)] if g.name.startswith("kmcp") else [g])]
    rows: list[dict[str, object]] = []
    for sessions in [int(s) for s in args.sessions.split(",")]:
        if not wanted or "direct" in wanted:
            rows.append(run_direct(server, sessions, args.seconds))
        for gw in gateways:
            if not wanted or gw.name in wanted:
                rows.append(run_gateway(gw, server, sessions, args.seconds))
    print(f"server: {args.server}; {args.seconds:g} s per row; loopback; {os.cpu_count()} cores")
    print("| gateway | transport | sessions | calls/s | p50 ms | p99 ms | open p50 ms | gateway CPU ms/call "
          "| server CPU ms/call | loadgen CPU ms/call | other load (cores) | gateway RSS MiB | errors | cross-talk |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['gateway']} | {r['transport']} | {r['sessions']} | {float(str(r['calls_per_second'])):.0f} "
              f"| {r['p50_ms']} | {r['p99_ms']} | {r['session_open_p50_ms']} "
              f"| {float(str(r['cpu_ms_per_call'])):.3f} | {float(str(r['server_cpu_ms_per_call'])):.3f} "
              f"| {float(str(r['loadgen_cpu_ms_per_call'])):.3f} | {float(str(r['other_cores'])):.2f} "
              f"| {float(str(r['rss_mib'])):.0f} | {r['errors']} | {r['cross_talk']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
