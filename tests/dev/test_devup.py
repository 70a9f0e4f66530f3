"""`kmcp dev up`: the local control plane, the controller as the install's ServiceAccount, the example MCPServer
run by the pod runner, Ready reported by the controller, and a real MCP client talking to it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmcp.devcluster import examples_server
from tests.cli.helpers import ROOT, kmcp, mcp_session

HTTP_CLIENT = ROOT / "tests" / "cli" / "http_client.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def processes_using(directory: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(directory) in line and "ps -eo" not in line]


def test_echo_server_answers_the_json_rpc_it_must() -> None:
    init = examples_server.handle({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                   "params": {"protocolVersion": "2025-03-26"}})
    assert init is not None and init["result"]["protocolVersion"] == "2025-03-26"
    assert examples_server.handle({"jsonrpc": "2.0", "method": "notifications/initialized"}) is None
    call = examples_server.handle({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                   "params": {"name": "add", "arguments": {"a": 2, "b": 40}}})
    assert call is not None and call["result"]["content"][0]["text"] == "42"
    unknown = examples_server.handle({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "x"}})
    assert unknown is not None and unknown["error"]["code"] == -32602


@pytest.mark.slow
def test_echo_server_works_with_the_sdk_stdio_client(tmp_path: Path) -> None:
    env_python = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                  "from kmcp.devcluster.examples_server import main; main()"]
    seen = mcp_session(tmp_path, env_python, {"echo": {"message": "hi"}, "add": {"a": 1.5, "b": 2}})
    assert seen["server_name"] == "kmcp-echo"
    assert set(seen["tools"]) == {"echo", "add"}
    assert seen["calls"]["echo"]["text"] == ["hi"] and seen["calls"]["add"]["text"] == ["3.5"]


@pytest.mark.slow
@pytest.mark.cluster
def test_dev_up_check_talks_mcp_to_the_example_then_tears_down(tmp_path: Path) -> None:
    port = free_port()
    result = kmcp("dev", "up", "--check", "--dir", tmp_path / "dev", "--port", str(port), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "mcpserver default/echo is Ready" in out
    assert f"Streamable HTTP: http://127.0.0.1:{port}/mcp" in out
    assert f"export KUBECONFIG={tmp_path / 'dev' / 'cluster' / 'admin.kubeconfig'}" in out
    # the check speaks 2026-07-28 (the adapter bridges the handshake-era example) and says so
    assert "MCP 2026-07-28: tools/list OK (2 tools), tools/call echo OK" in out
    assert "tools/call echo -> 'hello from kmcp dev up'" in out
    assert "Traceback" not in result.stderr
    assert port_closed(port)
    assert processes_using(tmp_path / "dev") == []  # etcd, apiserver, controller, adapter, server: all gone


@pytest.mark.slow
@pytest.mark.cluster
def test_dev_up_detach_then_get_then_down(tmp_path: Path) -> None:
    port = free_port()
    directory = tmp_path / "dev"
    up = kmcp("dev", "up", "--detach", "--dir", directory, "--port", str(port), timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"Streamable HTTP: http://127.0.0.1:{port}/mcp" in up.stdout
        again = kmcp("dev", "up", "--dir", directory, "--port", str(port))
        assert again.returncode == 1 and "already running" in again.stderr

        kubeconfig = directory / "cluster" / "admin.kubeconfig"
        table = kmcp("get", "-A", "--kubeconfig", kubeconfig)
        assert table.returncode == 0, table.stderr
        row = next(line.split() for line in table.stdout.splitlines() if line.split()[1:2] == ["echo"])
        assert row[:4] == ["default", "echo", "True", "stdio"]
        status = kmcp("status", "echo", "--kubeconfig", kubeconfig)
        assert any(line.split()[:2] == ["Ready", "True"] for line in status.stdout.splitlines()), status.stdout

        client = subprocess.run([sys.executable, str(HTTP_CLIENT), f"http://127.0.0.1:{port}/mcp",
                                 'echo={"message": "through the pod"}', 'add={"a": 1, "b": 2}'],
                                capture_output=True, text=True, timeout=60)
        assert client.returncode == 0, client.stderr
        seen = json.loads(client.stdout.strip().splitlines()[-1])
        assert seen["tools"] == ["add", "echo"]
        assert seen["calls"]["echo"]["text"] == ["through the pod"]
        assert seen["calls"]["add"]["text"] == ["3"]
    finally:
        down = kmcp("dev", "down", "--dir", directory, timeout=90)
    assert down.returncode == 0, down.stderr
    assert "kmcp dev stopped" in down.stdout
    assert port_closed(port)
    assert processes_using(directory) == []
    assert "not running" in kmcp("dev", "down", "--dir", directory).stdout
    # The local kubelet reads the pod's Secrets as a kubelet does: the adapter got the session key, so it does
    # not warn that forwarding between replicas is off (it did, on every dev up).
    log = (directory / "dev.log").read_text()
    assert "--peer-address without" not in log, log


def test_dev_usage() -> None:
    assert kmcp("dev").returncode == 2
    shown = kmcp("dev", "up", "--help")
    assert shown.returncode == 0 and "kmcp dev up --check" in shown.stdout
    both = kmcp("dev", "up", "--check", "--detach")
    assert both.returncode == 2 and "cannot be combined" in both.stderr


def test_dev_up_errors_are_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = kmcp("dev", "up", "--check", "--dir", tmp_path / "dev", "--port", str(port))
        detached = kmcp("dev", "up", "--detach", "--dir", tmp_path / "dev", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == f"kmcp: error: port {port} on 127.0.0.1 is in use: pick another with --port"
    assert (detached.returncode, detached.stdout, detached.stderr) == (1, "", result.stderr)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "KMCP_BIN_CACHE": str(tmp_path / "no-binaries")}
    if shutil.which("go", path=env["PATH"]):
        return  # Go in /usr/bin: the command would build the binaries rather than fail
    no_go = kmcp("dev", "up", "--check", "--dir", tmp_path / "dev", "--port", str(free_port()), env=env)
    assert no_go.returncode == 1
    assert no_go.stderr.strip().splitlines() == [
        "kmcp: error: the local control plane did not start: building kube-apiserver needs Go (https://go.dev) on PATH"]


@pytest.mark.slow
@pytest.mark.cluster
def test_dev_up_in_the_foreground_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    import signal

    port = free_port()
    directory = tmp_path / "dev"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "kmcp", "dev", "up", "--dir", str(directory), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        output = ""
        for line in proc.stdout:
            output += line
            if line.startswith("Ctrl-C (or kmcp dev down) stops everything."):
                break
        assert f"Streamable HTTP: http://127.0.0.1:{port}/mcp" in output, output
        assert not port_closed(port)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert port_closed(port)
    assert processes_using(directory) == []
    assert not (directory / "state.json").exists()


def mcp_tools(port: int) -> list[str]:
    """The example's tool names, through the real Streamable HTTP client."""
    client = subprocess.run([sys.executable, str(HTTP_CLIENT), f"http://127.0.0.1:{port}/mcp"],
                            capture_output=True, text=True, timeout=60)
    assert client.returncode == 0, client.stderr
    tools: list[str] = json.loads(client.stdout.strip().splitlines()[-1])["tools"]
    return tools


@pytest.mark.slow
@pytest.mark.cluster
def test_deleting_the_example_stops_its_pod_but_not_the_dev_cluster(tmp_path: Path) -> None:
    from tests.kubehelpers import Kube, wait_for

    port = free_port()
    directory = tmp_path / "dev"
    up = kmcp("dev", "up", "--detach", "--dir", directory, "--port", str(port), timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        with Kube.from_kubeconfig(directory / "cluster" / "admin.kubeconfig") as kube:
            example = kube.read("kagent.dev/v1alpha1", "MCPServer", "echo", "default")
            assert example is not None
            assert kube.remove("kagent.dev/v1alpha1", "MCPServer", "echo", "default")
            kube.wait_deleted("apps/v1", "Deployment", "echo", "default", timeout=60)  # the garbage collector
            wait_for(lambda: port_closed(port) or None, timeout=20, description="the example pod stopped")
            time.sleep(3)  # the old failure came on the next status poll after the Deployment went
            pid = json.loads((directory / "state.json").read_text())["pid"]
            os.kill(pid, 0)  # kmcp dev up is still running, and so is its apiserver
            assert kube.read("v1", "Namespace", "default") is not None
            # the example comes back when its MCPServer does, and answers MCP again
            kube.create({"apiVersion": example["apiVersion"], "kind": example["kind"],
                         "metadata": {"name": "echo", "namespace": "default"}, "spec": example["spec"]})
            wait_for(lambda: not port_closed(port) or None, timeout=60, description="the example pod back")
            assert mcp_tools(port) == ["add", "echo"]
    finally:
        down = kmcp("dev", "down", "--dir", directory, timeout=90)
    log = (directory / "dev.log").read_text()
    assert "Traceback" not in log, log
    assert down.returncode == 0 and "kmcp dev stopped" in down.stdout, down.stdout + down.stderr + log
    assert processes_using(directory) == []


@pytest.mark.slow
@pytest.mark.cluster
def test_dev_up_waits_for_the_install_namespace_left_terminating(tmp_path: Path) -> None:
    from tests.kubehelpers import Kube, wait_for

    port = free_port()
    directory = tmp_path / "dev"
    admin = directory / "cluster" / "admin.kubeconfig"
    held = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "namespace": "kmcp-system", "finalizers": ["kmcp.test/held"]}}
    up = kmcp("dev", "up", "--detach", "--dir", directory, "--port", str(port), timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        with Kube.from_kubeconfig(admin) as kube:
            kube.create(held)
            assert kube.remove("v1", "Namespace", "kmcp-system")  # as an uninstall cut short leaves it
    finally:
        assert kmcp("dev", "down", "--dir", directory, timeout=90).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    again = subprocess.Popen([sys.executable, "-m", "kmcp", "dev", "up", "--detach", "--dir", str(directory),
                              "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        log = directory / "dev.log"
        wait_for(lambda: "namespace kmcp-system is being deleted" in log.read_text() or None, timeout=120,
                 description="the wait for the terminating namespace")
        with Kube.from_kubeconfig(admin) as kube:
            kube.request("PATCH", "/api/v1/namespaces/kmcp-system/configmaps/held",
                         content=json.dumps({"metadata": {"finalizers": None}}),
                         headers={"Content-Type": "application/merge-patch+json"})
        out, err = again.communicate(timeout=240)
        assert again.returncode == 0, out + err + log.read_text()
        assert "Traceback" not in out + err + log.read_text()
        assert mcp_tools(port) == ["add", "echo"]
    finally:
        if again.poll() is None:
            again.kill()
        down = kmcp("dev", "down", "--dir", directory, timeout=90)
    assert down.returncode == 0 and "kmcp dev stopped" in down.stdout, down.stdout + down.stderr
    assert processes_using(directory) == []


FAKE_GO = """#!{python}
import json, os, sys, time
if sys.argv[1:2] == ["build"]:  # the first compile of the first build: hang, as a 9-minute build does
    open({record!r}, "w").write(json.dumps({{"pid": os.getpid()}}))
    print("fake go: compiling", file=sys.stderr, flush=True)
    time.sleep(600)
"""


def _kill_leftovers(directory: Path, record: Path) -> None:
    """Only when the test fails: what the broken start left running (found by its own directory, or its record)."""
    import signal

    pids = [int(line.split()[0]) for line in processes_using(directory)]
    if record.exists():
        pids.append(json.loads(record.read_text())["pid"])
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_first_detached_start_shows_its_build_and_dev_down_stops_it(tmp_path: Path) -> None:
    import signal
    import threading

    from tests.kubehelpers import wait_for

    bin_dir, record, directory = tmp_path / "bin", tmp_path / "go-build.json", tmp_path / "dev"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO.format(python=sys.executable, record=str(record)))
    (bin_dir / "go").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "KMCP_BIN_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-m", "kmcp", "dev", "up", "--detach", "--dir", str(directory),
                               "--port", str(free_port())], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env)
    lines: list[str] = []
    assert parent.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(parent.stdout or []), daemon=True)
    reader.start()
    try:
        wait_for(lambda: record.exists() or None, timeout=60, description="the build's first compile")
        # the terminal says what is being built, and how long it has taken so far
        wait_for(lambda: any("building etcd" in line for line in lines) or None, timeout=30,
                 description=f"the build step on the terminal: {lines}")
        wait_for(lambda: any(re.search(r"still building etcd .*\[\d+s\]", line) for line in lines) or None,
                 timeout=60, description=f"the elapsed time on the terminal: {lines}")
        parent.send_signal(signal.SIGINT)  # the user stops waiting: the start goes on in the background
        parent.wait(timeout=20)
        reader.join(timeout=5)
        assert any("kmcp dev down" in line for line in lines[-3:]), lines
        down = kmcp("dev", "down", "--dir", directory, timeout=60)
        assert down.returncode == 0 and "kmcp dev stopped" in down.stdout, down.stdout + down.stderr
        build_pid = json.loads(record.read_text())["pid"]
        wait_for(lambda: not Path(f"/proc/{build_pid}").exists() or None, timeout=10,
                 description="the build's go process to be stopped")
        assert processes_using(directory) == []
        log = (directory / "dev.log").read_text()
        assert "Traceback" not in log and "Traceback" not in "".join(lines), log
    finally:
        if parent.poll() is None:
            parent.kill()
        _kill_leftovers(directory, record)
