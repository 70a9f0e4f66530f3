"""Optional OpenTelemetry tracing: one SERVER span per JSON-RPC request, sent as OTLP/HTTP protobuf to a real
HTTP receiver in the test (decoded with the OTLP protobuf types); off, nothing of it is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

from kmcp.adapter.cli import parse_settings, tracing_settings
from kmcp.adapter.settings import TracingSettings
from tests.adapter.rawhttp import FASTMCP_SERVER, eventually, request, running_adapter

pytest.importorskip("opentelemetry.sdk")
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

CLIENT = Path(__file__).with_name("sdk_client.py")
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


class Collector:
    """An OTLP/HTTP receiver: keeps every ExportTraceServiceRequest POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Any] = []
        self.headers: list[dict[str, str]] = []

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        for export in self.requests:
            for resource_spans in export.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    out.extend((resource, span) for span in scope_spans.spans)
        return out

    async def handle(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        body = b""
        head: h11.Request | None = None
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        assert head is not None and head.target == b"/v1/traces"
        headers = {k.decode(): v.decode() for k, v in head.headers}
        assert headers["content-type"] == "application/x-protobuf"
        self.headers.append(headers)
        self.requests.append(trace_service.ExportTraceServiceRequest.FromString(body))
        await stream.send_all(connection.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                              + connection.send(h11.EndOfMessage()))


@asynccontextmanager
async def collector() -> AsyncIterator[Collector]:
    receiver = Collector()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1"))
        receiver.port = listeners[0].socket.getsockname()[1]
        yield receiver
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_each_request_of_the_official_client_becomes_a_server_span() -> None:
    async with collector() as receiver:
        settings = TracingSettings(traces_url=f"http://127.0.0.1:{receiver.port}/v1/traces", export_interval=0.2,
                                   service_name="kmcp-adapter-test", headers=(("x-tenant", "t1"),))
        async with running_adapter(FASTMCP_SERVER, tracing=settings) as adapter:
            url = f"http://127.0.0.1:{adapter.port}/mcp"
            with trio.fail_after(60):
                done = await trio.run_process([sys.executable, str(CLIENT), url, "streamable"],
                                              capture_stdout=True, capture_stderr=True, check=False)
            assert done.returncode == 0, done.stderr.decode()[-3000:]
            assert json.loads(done.stdout.decode().strip().splitlines()[-1])["echo"] == "hello"

            async def all_exported() -> bool:
                return sum(s.name == "tools/call" for _, s in receiver.spans()) >= 5

            with trio.fail_after(10):
                await eventually(all_exported)
        spans = receiver.spans()
        names = [span.name for _, span in spans]
        # what sdk_client.py sends: five tool calls (echo, count, ask, pid twice), every other request once
        for method in ("initialize", "tools/list", "resources/list", "resources/read", "prompts/get", "ping"):
            assert names.count(method) == 1, names
        assert names.count("tools/call") == 5, names
        for resource, span in spans:
            assert resource["service.name"] == "kmcp-adapter-test"
            assert span.kind == span.SPAN_KIND_SERVER
            attributes = {a.key: a.value.string_value for a in span.attributes}
            assert attributes == {"rpc.system": "jsonrpc", "rpc.method": span.name, "mcp.method.name": span.name}
            assert 0 < span.start_time_unix_nano <= span.end_time_unix_nano
            assert len(span.trace_id) == 16 and len(span.span_id) == 8
        # the SDK client's requests each wait for their answer: spans do not overlap and keep the client's order
        ordered = sorted(spans, key=lambda pair: pair[1].start_time_unix_nano)
        assert ordered[0][1].name == "initialize"
        assert all(receiver_headers["x-tenant"] == "t1" for receiver_headers in receiver.headers)


@pytest.mark.slow
async def test_an_unreachable_collector_drops_spans_and_never_delays_requests() -> None:
    async with collector() as receiver:
        dead_port = receiver.port
    settings = TracingSettings(traces_url=f"http://127.0.0.1:{dead_port}/v1/traces", export_interval=0.05)
    async with running_adapter(FASTMCP_SERVER, tracing=settings) as adapter:
        with trio.fail_after(30):
            for _ in range(3):
                assert (await request(adapter.port, "POST", "/mcp", INITIALIZE, HEADERS)).status == 200

            async def all_dropped() -> bool:
                text = (await request(adapter.port, "GET", "/metrics")).body.decode()
                counted = [float(line.split()[1]) for line in text.splitlines()
                           if line.startswith("kmcp_adapter_spans_dropped_total ")]
                return bool(counted) and counted[0] >= 3

            await eventually(all_dropped)


def test_tracing_is_configured_by_flag_or_otel_environment() -> None:
    assert tracing_settings("", {}) == TracingSettings()
    assert tracing_settings("http://c:4318/", {}).traces_url == "http://c:4318/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SERVICE_NAME": "svc",
           "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b,x=1"}
    settings = tracing_settings("", env)
    assert (settings.traces_url, settings.service_name) == ("http://c:4318/v1/traces", "svc")
    assert settings.headers == (("api-key", "a b"), ("x", "1"))
    traces_only = {**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t.example/otlp/traces"}
    assert tracing_settings("", traces_only).traces_url == "https://t.example/otlp/traces"
    assert tracing_settings("http://flag:4318", traces_only).traces_url == "http://flag:4318/v1/traces"
    assert tracing_settings("", {**env, "OTEL_SDK_DISABLED": "true"}) == TracingSettings()
    settings, _ = parse_settings(["--otlp-endpoint", "http://c:4318", "--", "true"])
    assert settings.tracing.traces_url == "http://c:4318/v1/traces"


def test_tracing_off_imports_nothing_of_it() -> None:
    code = ("import sys; from kmcp.adapter.cli import parse_settings; "
            "parse_settings(['--', 'true']); from kmcp.adapter import app, metrics; "
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'kmcp.adapter.tracing', "
            "'google.protobuf'))))")
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "[]"
