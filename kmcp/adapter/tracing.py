"""OpenTelemetry spans for the JSON-RPC requests through the adapter, exported as OTLP/HTTP protobuf.

Imported only when a traces URL is configured (``--otlp-endpoint`` or the OTEL_EXPORTER_OTLP_* variables), so the
adapter's start-up and hot path do not change when tracing is off. The opentelemetry SDK and its OTLP encoder are
an optional extra (``pip install kmcp[tracing]``).

The SDK's own exporters block (SimpleSpanProcessor) or run a thread (BatchSpanProcessor); here a span processor
only puts finished spans on a bounded Trio channel, and a Trio task batches them and POSTs each batch (with the
adapter's HTTP client, ``server/client.py``), so a slow or absent collector never delays a request: when the queue
is full, spans are dropped and counted.
"""

from __future__ import annotations

import sys
import time

import trio
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind

from kmcp.adapter.metrics import Metrics
from kmcp.adapter.server import client
from kmcp.adapter.settings import TracingSettings

POST_TIMEOUT = 10.0


class _ChannelProcessor(SpanProcessor):
    """Hands each finished span to the export task; never blocks (a full queue drops the span)."""

    def __init__(self, send: trio.MemorySendChannel[ReadableSpan], metrics: Metrics) -> None:
        self._send = send
        self._metrics = metrics

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._send.send_nowait(span)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._metrics.spans_dropped += 1

    def shutdown(self) -> None:
        self._send.close()


class RequestTracing:
    """``record`` makes one SERVER span per answered JSON-RPC request (hooked to Metrics.on_response); ``export``
    is the task that sends them; ``close`` ends the stream so ``export`` sends the last batch and returns."""

    def __init__(self, settings: TracingSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        send, self._receive = trio.open_memory_channel[ReadableSpan](settings.max_queue)
        self._provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}),
                                        shutdown_on_exit=False)
        self._provider.add_span_processor(_ChannelProcessor(send, metrics))
        self._tracer = self._provider.get_tracer("kmcp.adapter")
        self.exported = trio.Event()  # set when ``export`` has returned
        self._warned = False

    def record(self, method: str, seconds: float) -> None:
        """The request took ``seconds`` and was just answered: a span from then to now."""
        end = time.time_ns()
        span = self._tracer.start_span(
            method, kind=SpanKind.SERVER, start_time=end - int(seconds * 1e9),
            attributes={"rpc.system": "jsonrpc", "rpc.method": method, "mcp.method.name": method})
        span.end(end_time=end)

    def close(self) -> None:
        self._provider.shutdown()

    async def export(self) -> None:
        try:
            while True:
                try:
                    batch = [await self._receive.receive()]
                except trio.EndOfChannel:
                    return
                with trio.move_on_after(self.settings.export_interval):
                    while len(batch) < self.settings.max_batch:
                        try:
                            batch.append(await self._receive.receive())
                        except trio.EndOfChannel:
                            break
                await self._send_batch(batch)
        finally:
            self.exported.set()

    async def _send_batch(self, batch: list[ReadableSpan]) -> None:
        body = encode_spans(batch).SerializeToString()
        try:
            with trio.fail_after(POST_TIMEOUT):
                status = await post(self.settings.traces_url, body, self.settings.headers)
        except (*client.ERRORS, trio.TooSlowError) as error:
            self._failed(len(batch), f"{type(error).__name__}: {error}")
            return
        if not 200 <= status < 300:
            self._failed(len(batch), f"HTTP {status}")

    def _failed(self, spans: int, why: str) -> None:
        self.metrics.spans_dropped += spans
        if not self._warned:  # once: a missing collector must not flood the container log
            print(f"kmcp adapter: could not export spans to {self.settings.traces_url}: {why}", file=sys.stderr)
            self._warned = True


async def post(url: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> int:
    """One OTLP/HTTP protobuf POST on a fresh connection (a batch per export interval at most); the status code."""
    status, _ = await client.fetch(url, method="POST", body=body, limit=1 << 20,
                                   headers=[("content-type", "application/x-protobuf"), *headers])
    return status
