"""`kmcp get` and `kmcp status` only read: they talk to the real apiserver with the blocking standard-library
client (kmcp.kubesync) and never import Trio, httpx or the kubernetes package (nor, for `get`, msgspec), whose
imports were most of a `kmcp get -A` (bench/RESULTS.md, "CLI start-up"). Errors stay one line."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.cli.helpers import ROOT, kmcp
from tests.controller.conftest import mcpserver
from tests.kubehelpers import Kube

NOT_FOR_READS = ("trio", "httpx", "httpcore", "anyio", "msgspec", "kubernetes")


def imported_by(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "kmcp", *args], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    return result, modules


def test_get_and_status_read_without_trio_or_httpx(kubeconfig: Path, installed: object, namespace: str,
                                                   kube: Kube) -> None:
    kube.create(mcpserver("listed", namespace))
    table, modules = imported_by("get", "-A", "--kubeconfig", str(kubeconfig))
    assert table.returncode == 0, table.stderr
    assert any(line.split()[:2] == [namespace, "listed"] for line in table.stdout.splitlines()), table.stdout
    assert "kmcp.kubesync" in modules
    assert not {m for m in modules if m.split(".")[0] in NOT_FOR_READS}, sorted(modules)

    status, modules = imported_by("status", "listed", "-n", namespace, "--kubeconfig", str(kubeconfig))
    assert status.returncode == 0, status.stderr
    # The Ready row is there whatever its value: a controller another test left running may have reconciled it.
    assert "Name:        listed" in status.stdout
    assert re.search(r"^\s*Ready\s+(True|False|Unknown)\s", status.stdout, re.MULTILINE), status.stdout
    # status names the four condition types, from kmcp.spec (and so msgspec); nothing of the async client
    assert not {m for m in modules if m.split(".")[0] in NOT_FOR_READS and m.split(".")[0] != "msgspec"}, \
        sorted(modules)

    one = kmcp("get", "listed", "-n", namespace, "-o", "yaml", "--kubeconfig", kubeconfig)
    assert one.returncode == 0, one.stderr
    (obj,) = yaml.safe_load_all(one.stdout)
    assert (obj["kind"], obj["metadata"]["name"]) == ("MCPServer", "listed")
    missing = kmcp("get", "absent", "-n", namespace, "--kubeconfig", kubeconfig)
    assert (missing.returncode, missing.stderr) == (1, f"kmcp: error: mcpserver {namespace}/absent not found\n")


def test_get_from_an_apiserver_that_is_not_there_is_one_line(kubeconfig: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    moved = tmp_path / "kubeconfig"
    moved.write_text(yaml.safe_dump(config))
    result = kmcp("get", "-A", "--kubeconfig", moved)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kmcp: error: cannot reach the apiserver at "
                                                   f"https://127.0.0.1:{port}: "), result.stderr


def test_a_kept_alive_connection_the_server_closed_is_opened_anew() -> None:
    """`status` makes two reads on one connection; a server that closed it in between (idle timeout, a restart
    behind a load balancer) costs a reconnect, not an error."""
    import json
    import ssl
    import threading

    from kmcp import kube
    from kmcp.kubesync import SyncKube

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    body = json.dumps({"kind": "MCPServer", "metadata": {"name": "x"}}).encode()
    answered: list[int] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                # HTTP/1.1 without "Connection: close": the client keeps the connection, which is then closed
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                answered.append(1)

    threading.Thread(target=serve, daemon=True).start()
    config = kube.KubeConfig(f"http://127.0.0.1:{listener.getsockname()[1]}", ssl.create_default_context())
    with SyncKube(config) as client:
        assert client.get(kube.MCPSERVERS, "x", "default")["metadata"]["name"] == "x"
        time.sleep(0.2)  # the server has closed its end
        assert client.get(kube.MCPSERVERS, "x", "default")["metadata"]["name"] == "x"
    listener.close()
    assert len(answered) == 2
