"""A rendered stdio MCPServer pod, run as local processes: the adapter sidecar (--bridge) and the mcp-server
container running serve.sh, talking over FIFOs in a temp dir that stands in for /kmcp. The official MCP SDK
client then uses it over Streamable HTTP and legacy SSE, as kagent would through the Service."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from kmcp import render, spec
from kmcp.devcluster import podrunner

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mcpserver(mode: str = "isolated", **deployment: Any) -> spec.MCPServer:
    return spec.validated({
        "apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer",
        "metadata": {"name": "local", "namespace": "default"},
        "spec": {"transportType": "stdio", "stdioTransport": {"warmPoolSize": 1, "sessionMode": mode}, "deployment": {
            "image": "unused:local", "cmd": sys.executable,
            "args": [str(ROOT / "tests/servers/fastmcp_server.py")], **deployment}},
    })


def sdk_client(url: str, kind: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(ROOT / "tests/adapter/sdk_client.py"), url, kind],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_translate_maps_the_pod_onto_loopback_and_a_local_bridge(tmp_path: Path) -> None:
    deployment = render.render_deployment(mcpserver(env={"GREETING": "hi"}), render.RenderSettings())
    pod = podrunner.translate(deployment, tmp_path, 4321, secret_env={})
    assert pod.adapter.argv[pod.adapter.argv.index("--listen") + 1] == "127.0.0.1:4321"
    assert pod.adapter.argv[pod.adapter.argv.index("--bridge") + 1] == str(tmp_path / "kmcp")
    assert pod.server.argv == ["/bin/sh", str(tmp_path / "kmcp/serve.sh"), sys.executable,
                               str(ROOT / "tests/servers/fastmcp_server.py")]
    assert pod.server.env == {"GREETING": "hi"}


def test_translate_expands_the_pod_ip_and_the_session_key_like_a_kubelet(tmp_path: Path) -> None:
    deployment = render.render_deployment(mcpserver(), render.RenderSettings())
    alone = podrunner.translate(deployment, tmp_path, 4321, secret_env={})
    assert alone.adapter.argv[alone.adapter.argv.index("--peer-address") + 1] == "127.0.0.1"
    assert alone.adapter.env == {render.POD_IP_ENV: "127.0.0.1"}  # optional key absent: the adapter runs alone
    keyed = podrunner.translate(deployment, tmp_path, 4321,
                                secret_env={"local-session-key": {"key": "k" * 40}, "other": {"key": "no"}})
    assert keyed.adapter.env[render.SESSION_KEY_ENV] == "k" * 40


def test_http_mcpservers_cannot_run_locally(tmp_path: Path) -> None:
    server = spec.validated({
        "apiVersion": "kagent.dev/v1alpha1", "kind": "MCPServer", "metadata": {"name": "h"},
        "spec": {"transportType": "http", "httpTransport": {"targetPort": 8080}, "deployment": {"image": "x"}}})
    with pytest.raises(podrunner.PodSpecError, match="only stdio MCPServers run locally"):
        podrunner.translate(render.render_deployment(server, render.RenderSettings()), tmp_path, 1)


@pytest.mark.parametrize("mode", ["isolated", "shared"])
async def test_sdk_clients_use_the_rendered_pod(tmp_path: Path, mode: str) -> None:
    port = free_port()
    deployment = render.render_deployment(mcpserver(mode), render.RenderSettings())
    pod = podrunner.translate(deployment, tmp_path, port)
    async with trio.open_nursery() as nursery:
        state = await nursery.start(podrunner.run_pod, pod)
        assert state.ready
        session_pids: list[str] = []
        for kind, path in (("streamable", "/mcp"), ("sse", "/sse")):
            seen = await trio.to_thread.run_sync(sdk_client, f"http://127.0.0.1:{port}{path}", kind)
            assert seen["echo"] == "hello"
            assert seen["progress"] == [1.0, 2.0, 3.0]
            assert seen["ask"] == "model said: echo:meaning of life"  # sampling round trip through the FIFOs
            assert len(seen["pids"]) == 1
            session_pids += seen["pids"]
        if mode == "isolated":
            assert session_pids[0] != session_pids[1]  # one server process per MCP session
        else:
            assert session_pids[0] == session_pids[1]  # one long-lived process for every session
        # Each session had its own server process, started by serve.sh in the 'mcp-server container'.
        assert state.server_starts == 1 and state.adapter_starts == 1
        nursery.cancel_scope.cancel()


def test_the_local_kubelet_reads_what_a_kubelet_reads_for_env() -> None:
    from kmcp.commands import devpod

    deployment = {"spec": {"template": {"spec": {
        "initContainers": [{"name": "mcp-adapter", "env": [
            {"name": "KMCP_SESSION_KEY", "valueFrom": {"secretKeyRef": {"name": "s-key", "key": "key"}}}]}],
        "containers": [{"name": "mcp-server", "envFrom": [{"secretRef": {"name": "creds"}},
                                                          {"configMapRef": {"name": "settings"}}],
                        "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "m"}}}]}],
    }}}}
    assert devpod.referenced_sources(deployment) == ({"s-key", "creds"}, {"settings", "flags"})
    secret = {"data": {"key": "c2VjcmV0", "bin": "//79"}, "stringData": {"extra": "x"}}
    assert devpod.secret_values(secret) == {"key": "secret", "extra": "x"}  # binary data is no env value
    from kmcp.devcluster import podrunner

    env = podrunner._env(deployment["spec"]["template"]["spec"]["containers"][0],
                         {"creds": {"TOKEN": "t"}, "settings": {"LEVEL": "debug"}, "flags": {"m": "fast"}})
    assert env == {"TOKEN": "t", "LEVEL": "debug", "MODE": "fast"}
