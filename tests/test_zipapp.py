"""dist/kmcp is one executable file that runs with only a Python interpreter and behaves like `python -m kmcp`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.adapter.rawhttp import RAW_SERVER, request
from tests.adapter.test_tracing import HEADERS, INITIALIZE, collector

ROOT = Path(__file__).resolve().parent.parent
INTERPRETER = os.path.realpath(sys.executable)  # the real one, not the venv's: nothing of the venv may help

pytestmark = pytest.mark.slow


def run(zipapp: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: no venv on PATH, a fresh SHIV_ROOT, so nothing outside the file can help it.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "SHIV_ROOT": str(tmp / "shiv")}
    interpreter = os.path.realpath(sys.executable)
    return subprocess.run([interpreter, "-I", str(zipapp), *args], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=120)


def test_zipapp_is_a_single_executable_file(zipapp: Path) -> None:
    assert zipapp.is_file() and os.access(zipapp, os.X_OK)
    assert zipapp.read_bytes()[:2] == b"#!"


def test_zipapp_version_and_render_match_the_package(zipapp: Path, tmp_path: Path) -> None:
    version = run(zipapp, "--version", tmp=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "kmcp 0.1.0"
    example = str(ROOT / "examples/mcpservers/06-custom-volumes.yaml")
    packaged = run(zipapp, "render", "-f", example, tmp=tmp_path)
    source = subprocess.run([sys.executable, "-m", "kmcp", "render", "-f", example], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert packaged.returncode == 0, packaged.stderr
    assert packaged.stdout == source.stdout


def test_zipapp_bad_input_exit_code(zipapp: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: kagent.dev/v1alpha1\nkind: MCPServer\nmetadata: {name: a}\nspec: {deployment: {}}\n")
    result = run(zipapp, "validate", "-f", str(bad), tmp=tmp_path)
    assert result.returncode == 2
    assert "spec.deployment.image: required" in result.stderr


@asynccontextmanager
async def zipapp_adapter(zipapp: Path, tmp: Path, *args: str, env: dict[str, str] | None = None,
                         python_flags: tuple[str, ...] = ()) -> AsyncIterator[tuple[int, list[bytes]]]:
    """`kmcp adapter` from the zipapp in a clean environment: (port, stderr so far, complete once it exited)."""
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "SHIV_ROOT": str(tmp / "shiv"), **(env or {})}
    process = await trio.lowlevel.open_process(
        [INTERPRETER, "-I", *python_flags, str(zipapp), "adapter", "--listen", "127.0.0.1:0",
         *args, "--", *RAW_SERVER], stderr=subprocess.PIPE, env=clean, cwd=tmp)
    assert process.stderr is not None
    log = [b""]
    try:
        with trio.fail_after(60):
            while (found := re.search(rb"http://127\.0\.0\.1:(\d+)", log[0])) is None:
                chunk = await process.stderr.receive_some(65536)
                assert chunk, log[0][-3000:]
                log[0] += chunk
        yield int(found.group(1)), log
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            while chunk := await process.stderr.receive_some(65536):
                log[0] += chunk
            assert await process.wait() == 0, log[0][-3000:]
    finally:
        if process.returncode is None:
            process.kill()


async def test_zipapp_adapter_traces_with_the_bundled_extra(zipapp: Path, tmp_path: Path) -> None:
    """The image's adapter can trace: the zipapp carries the tracing extra. Resource attributes come from the
    standard OTEL_* variables, as the controller renders them."""
    async with collector() as receiver:
        env = {"OTEL_SERVICE_NAME": "weather", "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=tools"}
        async with zipapp_adapter(zipapp, tmp_path, "--otlp-endpoint", f"http://127.0.0.1:{receiver.port}",
                                  env=env) as (port, _log):
            assert (await request(port, "POST", "/mcp", INITIALIZE, HEADERS)).status == 200
        # SIGTERM exports the last batch before the process exits
        spans = receiver.spans()
    assert [span.name for _, span in spans] == ["initialize"]
    resource = spans[0][0]
    assert (resource["service.name"], resource["service.namespace"]) == ("weather", "tools")


async def test_zipapp_adapter_without_tracing_imports_none_of_it(zipapp: Path, tmp_path: Path) -> None:
    async with zipapp_adapter(zipapp, tmp_path, python_flags=("-X", "importtime")) as (port, log):
        assert (await request(port, "POST", "/mcp", INITIALIZE, HEADERS)).status == 200
    imported = [line for line in log[0].decode().splitlines() if line.startswith("import time:")]
    assert any("kmcp.adapter.app" in line for line in imported)  # the log is the adapter's own imports
    assert not [line for line in imported if "opentelemetry" in line or "google.protobuf" in line]


async def test_zipapp_adapter_serves_websocket_with_the_bundled_wsproto(zipapp: Path, tmp_path: Path) -> None:
    """/ws from the image's adapter: wsproto is bundled, and a frame sent with the upgrade request is answered."""
    from tests.adapter.test_websocket_protocol import INIT, connect, frame

    async with zipapp_adapter(zipapp, tmp_path) as (port, _log):
        peer = await connect(port, frame(0x1, INIT))
        opcode, payload = await peer.next_frame()
        assert opcode == 0x1 and b'"protocolVersion"' in payload
        await peer.stream.send_all(frame(0x1, b"\xff"))
        assert await peer.close_code() == 1007


def test_zipapp_port_forward_has_its_websocket_client(zipapp: Path, tmp_path: Path) -> None:
    """kmcp port-forward (the guide's troubleshooting step) speaks the Kubernetes port-forward WebSocket through
    trio-websocket: the zipapp must carry it, so a bad kubeconfig is the one-line error, not an ImportError."""
    done = run(zipapp, "port-forward", "echo", "--kubeconfig", str(tmp_path / "missing"), tmp=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert "kubeconfig" in done.stderr
