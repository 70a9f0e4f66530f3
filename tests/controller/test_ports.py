"""The controller's probe port (plain HTTP) and metrics port (TLS) on the shared HTTP server, over real sockets."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import trio

from kmcp.controller import httpserver, metrics_server, probes


@asynccontextmanager
async def serving(handler: httpserver.Handler, ctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: httpserver.serve(
            handler, "127.0.0.1", 0, ssl_context=ctx, task_status=task_status))
        yield port
        nursery.cancel_scope.cancel()


async def raw_exchange(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
        return received


async def test_probes_answer_liveness_readiness_and_refuse_the_rest() -> None:
    ready = False
    is_ready: Callable[[], bool] = lambda: ready  # noqa: E731
    async with serving(probes.probe_handler(is_ready)) as port, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/healthz")).text == "ok\n"
        response = await client.get("/readyz")
        assert (response.status_code, response.text) == (503, "caches not synced\n")
        ready = True
        assert (await client.get("/readyz")).status_code == 200
        head = await client.head("/healthz")
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "3")
        assert (await client.get("/nope")).status_code == 404
        refused = await client.post("/healthz", content=b"x")
        assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")


async def test_a_malformed_request_gets_400_and_the_port_serves_on() -> None:
    async with serving(probes.probe_handler(lambda: True)) as port:
        answer = await raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")
        keep_alive = await raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                              b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert keep_alive.count(b"HTTP/1.1 200 OK\r\n") == 2


async def test_metrics_over_tls_keep_alive_and_a_plain_http_client_does_not_hurt() -> None:
    handler = metrics_server.metrics_handler(lambda: "kmcp_up 1\n", None)
    async with serving(handler, metrics_server.self_signed_context()) as port:
        refused = await raw_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # not TLS: dropped
        assert not refused.startswith(b"HTTP/1.1 200")
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=False) as client:
            first, second = await client.get("/metrics"), await client.get("/metrics")
            assert first.text == second.text == "kmcp_up 1\n"
            assert first.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert (await client.get("/other")).status_code == 404
            body = "x" * (128 * 1024)  # past the port's 64 KiB body limit
            assert (await client.post("/metrics", content=body)).status_code == 413
