"""`kmcp deploy`, `get`, `status`, `secrets sync` and `port-forward` against the real apiserver, with a controller
watching the test's namespace. There is no kubelet: the test writes the Deployment's status, as one would."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kmcp import render, spec
from tests.cli.helpers import ROOT, kmcp
from tests.controller.conftest import ControllerProcess, set_deployment_available
from tests.kubehelpers import Kube, wait_for

pytestmark = pytest.mark.slow


def project(tmp_path: Path, name: str = "weather", **extra: object) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    doc = {"name": name, "framework": "python", "version": "1.2.3", "command": "python", "args": ["src/main.py"],
           **extra}
    (directory / "kmcp.yaml").write_text(yaml.safe_dump(doc))
    return directory


def popen_kmcp(*args: str | Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "kmcp", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def make_available_when_rendered(kube: Kube, name: str, namespace: str, proc: subprocess.Popen[str]) -> None:
    wait_for(lambda: proc.poll() is not None or kube.read("apps/v1", "Deployment", name, namespace),
             timeout=60, description=f"Deployment {namespace}/{name}")
    assert proc.poll() is None, proc.communicate()
    set_deployment_available(kube, name, namespace, True)


def test_dry_run_prints_the_mcpserver_and_what_the_controller_applies(tmp_path: Path) -> None:
    directory = project(tmp_path)
    result = kmcp("deploy", "--file", directory / "kmcp.yaml", "--image", "weather:1.2.3", "--dry-run",
                  "-n", "tools")
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    server = docs[0]
    assert server["kind"] == "MCPServer" and server["metadata"] == {
        "name": "weather", "namespace": "tools", "labels": {"app.kubernetes.io/version": "1.2.3"}}
    assert server["spec"]["transportType"] == "stdio"
    assert server["spec"]["deployment"] == {"image": "weather:1.2.3", "cmd": "python", "args": ["src/main.py"],
                                            "port": 3000}
    assert docs[1:] == render.render(spec.validated(server))  # exactly the controller's rendering
    as_json = json.loads(kmcp("deploy", "--file", directory / "kmcp.yaml", "--image", "w:1", "--dry-run",
                              "-o", "json").stdout)
    assert [item["kind"] for item in as_json["items"]] == ["MCPServer", "ServiceAccount", "Service", "Deployment"]


def test_deploy_package_builds_an_npx_or_uvx_server() -> None:
    npx = kmcp("deploy", "package", "--deployment-name", "everything", "--manager", "npx", "--args",
               "@modelcontextprotocol/server-everything", "--dry-run")
    assert npx.returncode == 0, npx.stderr
    server = next(yaml.safe_load_all(npx.stdout))
    assert server["spec"]["deployment"]["cmd"] == "npx"
    assert server["spec"]["deployment"]["args"] == ["-y", "@modelcontextprotocol/server-everything"]
    assert server["spec"]["deployment"]["image"].startswith("node:")
    uvx = kmcp("deploy", "package", "--deployment-name", "fetch", "--manager", "uvx", "--args", "mcp-server-fetch",
               "--env", "LOG=debug", "--dry-run", "-o", "json")
    dep = json.loads(uvx.stdout)["items"][0]["spec"]["deployment"]
    assert (dep["cmd"], dep["args"], dep["env"]) == ("uvx", ["mcp-server-fetch"], {"LOG": "debug"})


def test_usage_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    directory = project(tmp_path, secrets={"staging": {"enabled": True, "provider": "kubernetes",
                                                       "secretName": "weather-env"}})
    cases = [
        (("deploy", "--file", directory / "kmcp.yaml", "--dry-run"), "--image is required"),
        (("deploy", "--file", tmp_path / "missing.yaml", "--image", "x", "--dry-run"), "missing.yaml"),
        (("deploy", "--file", directory / "kmcp.yaml", "--image", "x", "--environment", "prod", "--dry-run"),
         "no secrets.prod (environments: staging)"),
        (("secrets", "sync", "staging", "--project-dir", directory), ".env"),
        (("deploy", "package", "--deployment-name", "x", "--manager", "pip", "--args", "y"), "invalid choice"),
    ]
    for args, message in cases:
        result = kmcp(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    for command in ("deploy", "get", "status", "port-forward", "install", "uninstall"):
        shown = kmcp(command, "--help")
        assert shown.returncode == 0 and "example:" in shown.stdout, command
    assert "example:" in kmcp("secrets", "sync", "--help").stdout


def test_deploy_waits_for_ready_then_get_and_status_show_it(kube: Kube, kubeconfig: Path, namespace: str,
                                                            installed: object, ns_controller: ControllerProcess,
                                                            tmp_path: Path) -> None:
    directory = project(tmp_path)
    admin = kubeconfig
    proc = popen_kmcp("deploy", "--file", directory / "kmcp.yaml", "--image", "weather:1.2.3", "-n", namespace,
                      "--no-inspector", "--timeout", "60s", "--kubeconfig", admin)
    make_available_when_rendered(kube, "weather", namespace, proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"mcpserver {namespace}/weather applied" in out
    assert f"mcpserver {namespace}/weather is Ready" in err
    assert "Transport Type: Streamable HTTP" in out and "URL: http://127.0.0.1:3000/mcp" in out
    # Without --no-inspector deploy then port-forwards 127.0.0.1:3000: there is no kubelet, so no pod to reach.
    again = kmcp("deploy", "--file", directory / "kmcp.yaml", "--image", "weather:1.2.3", "-n", namespace,
                 "--timeout", "30s", "--kubeconfig", admin)
    assert again.returncode == 1
    assert f"mcpserver {namespace}/weather is Ready, but the port-forward for the Inspector failed: no Ready pod" \
        in again.stderr, again.stderr

    table = kmcp("get", "-n", namespace, "--kubeconfig", admin)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "READY", "TRANSPORT", "URL", "AGE"]
    assert row.split()[:4] == ["weather", "True", "stdio", f"http://weather.{namespace}.svc.cluster.local:3000/mcp"]
    everywhere = kmcp("get", "-A", "--kubeconfig", admin)
    assert everywhere.stdout.splitlines()[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == [namespace, "weather"] for line in everywhere.stdout.splitlines())
    as_yaml = yaml.safe_load_all(kmcp("get", "weather", "-n", namespace, "-o", "yaml", "--kubeconfig", admin).stdout)
    assert next(iter(as_yaml))["status"]["url"].endswith(":3000/mcp")

    status = kmcp("status", "weather", "-n", namespace, "--kubeconfig", admin)
    assert status.returncode == 0, status.stderr
    for type_ in ("Accepted", "ResolvedRefs", "Programmed", "Ready"):
        assert any(line.split()[:2] == [type_, "True"] for line in status.stdout.splitlines()), status.stdout
    assert "Events:" in status.stdout
    missing = kmcp("status", "nope", "-n", namespace, "--kubeconfig", admin)
    assert missing.returncode == 1 and f"mcpserver {namespace}/nope not found" in missing.stderr

    forward = kmcp("port-forward", "weather", "-n", namespace, "--kubeconfig", admin, "--port", "0")
    assert forward.returncode == 1
    assert f"no Ready pod for mcpserver {namespace}/weather" in forward.stderr
    assert "Traceback" not in forward.stderr


def test_secrets_sync_then_deploy_with_the_environment(kube: Kube, kubeconfig: Path, namespace: str,
                                                       installed: object, ns_controller: ControllerProcess,
                                                       tmp_path: Path) -> None:
    admin = kubeconfig
    directory = project(tmp_path, secrets={"staging": {"enabled": True, "provider": "kubernetes",
                                                       "secretName": "weather-env", "namespace": namespace}})
    # Before the Secret exists: ResolvedRefs=False, and the timeout says so with the events.
    failed = kmcp("deploy", "--file", directory / "kmcp.yaml", "--image", "weather:1", "--environment", "staging",
                  "-n", namespace, "--timeout", "4s", "--kubeconfig", admin)
    assert failed.returncode == 1
    assert f"timed out after 4s waiting for mcpserver {namespace}/weather to be Ready" in failed.stderr
    assert "ResolvedRefs=False" in failed.stderr and "weather-env" in failed.stderr
    assert "recent events:" in failed.stderr and "Traceback" not in failed.stderr
    server = kube.read("kagent.dev/v1alpha1", "MCPServer", "weather", namespace)
    assert server is not None and server["spec"]["deployment"]["secretRefs"] == [{"name": "weather-env"}]

    (directory / ".env").write_text('# staging\nAPI_KEY="s3cret value"\nexport REGION=eu-west-1\nEMPTY=\n')
    synced = kmcp("secrets", "sync", "staging", "--project-dir", directory, "--kubeconfig", admin)
    assert synced.returncode == 0, synced.stderr
    secret = kube.read("v1", "Secret", "weather-env", namespace)
    assert secret is not None
    import base64

    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert values == {"API_KEY": "s3cret value", "REGION": "eu-west-1", "EMPTY": ""}
    (directory / ".env").write_text("API_KEY=rotated\n")
    assert kmcp("secrets", "sync", "staging", "--project-dir", directory, "--kubeconfig", admin).returncode == 0
    secret = kube.read("v1", "Secret", "weather-env", namespace)
    assert secret is not None and set(secret["data"]) == {"API_KEY"}  # a key removed from .env is removed

    proc = popen_kmcp("deploy", "--file", directory / "kmcp.yaml", "--image", "weather:1", "--environment",
                      "staging", "-n", namespace, "--no-inspector", "--timeout", "60s", "--kubeconfig", admin)
    make_available_when_rendered(kube, "weather", namespace, proc)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_status_shows_the_failing_condition(kube: Kube, kubeconfig: Path, namespace: str, installed: object,
                                            ns_controller: ControllerProcess) -> None:
    """A mount naming no volume passes the CRD schema but not the controller: Accepted=False, with an Event."""
    bad = {"apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer",
           "metadata": {"name": "bad", "namespace": namespace},
           "spec": {"transportType": "stdio", "deployment": {
               "image": "x", "cmd": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}}}
    kube.apply(bad)
    wait_for(lambda: (kube.read("kagent.dev/v1alpha1", "MCPServer", "bad", namespace) or {}).get("status"),
             timeout=30, description="status of bad")
    status = kmcp("status", "bad", "-n", namespace, "--kubeconfig", kubeconfig)
    assert status.returncode == 0, status.stderr
    accepted = next(line for line in status.stdout.splitlines() if line.split()[:1] == ["Accepted"])
    assert accepted.split()[1] == "False" and "data" in accepted
    listing = kmcp("get", "-n", namespace, "-o", "json", "--kubeconfig", kubeconfig)
    assert [i["metadata"]["name"] for i in json.loads(listing.stdout)["items"]] == ["bad"]


def test_port_forward_reaches_the_apiserver_for_a_ready_pod(kube: Kube, kubeconfig: Path, namespace: str) -> None:
    """A Ready pod on a node that does not exist: the WebSocket upgrade reaches the pod's portforward subresource
    (TLS, client certificate, URL) and the apiserver's refusal is reported per connection, without a traceback.
    A real kubelet would accept the upgrade there; this machine has none."""
    import socket

    kube.create({"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "weather-abc", "namespace": namespace,
                              "labels": {"app.kubernetes.io/instance": "weather"}},
                 "spec": {"nodeName": "no-such-node", "containers": [{"name": "mcp-server", "image": "x"}]}})
    status = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    kube.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/weather-abc/status", content=json.dumps(status),
                 headers={"Content-Type": "application/merge-patch+json"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = popen_kmcp("port-forward", "weather", "-n", namespace, "--port", str(port), "--kubeconfig", kubeconfig)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"Forwarding from 127.0.0.1:{port} -> pod {namespace}/weather-abc:3000"), first
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            # refused upstream: the local connection is closed (or reset: our request was never read)
            with contextlib.suppress(ConnectionResetError):
                assert conn.recv(100) == b""
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "kmcp: port-forward: the apiserver refused the port-forward (404)" in err, err
    assert "Traceback" not in err


def test_deploy_where_no_node_can_run_the_pod_says_so_within_seconds(kube: Kube, kubeconfig: Path, namespace: str,
                                                                      installed: object,
                                                                      ns_controller: ControllerProcess,
                                                                      tmp_path: Path) -> None:
    """The test control plane has no kubelet (no Node), no scheduler and no deployment controller: deploy must not
    sit out its timeout saying 'waiting for the Deployment controller', but name the first missing piece."""
    import time

    directory = project(tmp_path, name="stranded")
    started = time.monotonic()
    result = kmcp("deploy", "--file", directory / "kmcp.yaml", "--image", "stranded:1", "-n", namespace,
                  "--no-inspector", "--timeout", "120s", "--kubeconfig", kubeconfig, timeout=150)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < 30, f"took {took:.0f}s"
    lines = [line for line in result.stderr.splitlines() if line.startswith("kmcp: error:")]
    assert lines == [f"kmcp: error: mcpserver {namespace}/stranded cannot become Ready: no node: the cluster has no "
                     "kubelet registered (no Node objects), so nothing can run its pod"], result.stderr
    assert "kubectl get nodes" in result.stderr
    assert "Traceback" not in result.stderr
    assert kube.read("kagent.dev/v1alpha1", "MCPServer", "stranded", namespace) is not None  # left applied
