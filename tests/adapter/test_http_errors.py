"""Bad input at the HTTP level gets the status and JSON-RPC error the spec asks for, never a hang or a crash."""

from __future__ import annotations

import msgspec
import pytest
import trio

from kmcp.adapter.protocol import jsonrpc
from tests.adapter.rawhttp import ACCEPT_BOTH, running_adapter

JSON_HEADERS = {"content-type": "application/json", "accept": ACCEPT_BOTH}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


async def test_malformed_json_gets_400_parse_error() -> None:
    async with running_adapter() as adapter:
        response = await adapter.request("POST", "/mcp", b'{"jsonrpc": "2.0", "id": 1, "meth', JSON_HEADERS)
        assert response.status == 400
        assert response.json()["error"]["code"] == jsonrpc.PARSE_ERROR  # type: ignore[index]


@pytest.mark.parametrize("body", [b"42", b'"hello"', b"null", b'{"id": 1, "method": "ping"}'])
async def test_non_object_or_invalid_message_gets_400_invalid_request(body: bytes) -> None:
    async with running_adapter() as adapter:
        response = await adapter.request("POST", "/mcp", body, JSON_HEADERS)
        assert response.status == 400
        assert response.json()["error"]["code"] == jsonrpc.INVALID_REQUEST  # type: ignore[index]


async def test_wrong_content_type_gets_415() -> None:
    async with running_adapter() as adapter:
        response = await adapter.request("POST", "/mcp", msgspec.json.encode(PING),
                                         {"content-type": "text/plain", "accept": ACCEPT_BOTH})
        assert response.status == 415


async def test_body_over_the_limit_gets_413() -> None:
    async with running_adapter(max_body_bytes=1024) as adapter:
        body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * 2000 + b'"}}'
        response = await adapter.request("POST", "/mcp", body, JSON_HEADERS)
        assert response.status == 413


async def test_chunked_body_over_the_limit_gets_413() -> None:
    async with running_adapter(max_body_bytes=1024) as adapter:
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            await stream.send_all(b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                                  b"transfer-encoding: chunked\r\n\r\n")
            for _ in range(3):
                await stream.send_all(b"200\r\n" + b"a" * 512 + b"\r\n")
            reply = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" not in reply:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    reply += chunk
        assert reply.startswith(b"HTTP/1.1 413")


async def test_missing_session_gets_400() -> None:
    async with running_adapter() as adapter:
        response = await adapter.post_mcp(PING)
        assert response.status == 400
        assert "Mcp-Session-Id" in str(response.json()["error"])


async def test_unknown_session_gets_404() -> None:
    async with running_adapter() as adapter:
        response = await adapter.post_mcp(PING, session="no-such-session")
        assert response.status == 404


async def test_unsupported_protocol_version_gets_400() -> None:
    async with running_adapter() as adapter:
        response = await adapter.post_mcp(PING, session="x", headers={"mcp-protocol-version": "1999-01-01"})
        assert response.status == 400
        assert "1999-01-01" in str(response.json()["error"])


async def test_foreign_origin_gets_403_but_localhost_and_allow_listed_pass() -> None:
    async with running_adapter(allowed_origins=("https://app.example",)) as adapter:
        evil = await adapter.post_mcp(PING, headers={"origin": "https://evil.example"})
        assert evil.status == 403
        for origin in ("http://localhost:6274", "http://127.0.0.1", "https://app.example"):
            allowed = await adapter.post_mcp(PING, headers={"origin": origin})
            assert allowed.status == 400, origin  # past the Origin check: stopped by the missing session id
        sse = await adapter.request("GET", "/sse", headers={"origin": "https://evil.example"})
        assert sse.status == 403


async def test_accept_without_json_or_sse_gets_406() -> None:
    async with running_adapter() as adapter:
        response = await adapter.post_mcp(PING, accept="text/html")
        assert response.status == 406
        get = await adapter.request("GET", "/mcp", headers={"accept": "application/json", "mcp-session-id": "x"})
        assert get.status == 406


async def test_unknown_path_gets_404_and_unknown_method_405() -> None:
    async with running_adapter() as adapter:
        assert (await adapter.request("GET", "/nope")).status == 404
        response = await adapter.request("PUT", "/mcp", b"{}", JSON_HEADERS)
        assert response.status == 405
        assert "POST" in response.headers["allow"]


async def test_get_stream_disabled_gets_405() -> None:
    async with running_adapter(enable_get_stream=False) as adapter:
        response = await adapter.request("GET", "/mcp", headers={"accept": "text/event-stream"})
        assert response.status == 405


async def test_slowloris_client_is_dropped() -> None:
    async with running_adapter(header_timeout=0.5) as adapter:
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            await stream.send_all(b"POST /mcp HTTP/1.1\r\nhost: x\r\n")
            reply = b""
            with trio.fail_after(5):
                for _ in range(20):
                    await trio.sleep(0.1)
                    try:
                        await stream.send_all(b"x-slow: y\r\n")
                    except trio.BrokenResourceError:
                        break
                while True:  # the server answered 408 and closed
                    try:
                        chunk = await stream.receive_some(4096)
                    except trio.BrokenResourceError:
                        break
                    if not chunk:
                        break
                    reply += chunk
        assert reply.startswith(b"HTTP/1.1 408")


async def test_idle_keepalive_connection_is_closed() -> None:
    async with running_adapter(keepalive_timeout=0.3) as adapter:
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            with trio.fail_after(5):
                assert await stream.receive_some(100) == b""


async def test_health_and_metrics() -> None:
    async with running_adapter() as adapter:
        health = await adapter.request("GET", "/health")
        assert (health.status, health.json()) == (200, {"status": "ok"})
        metrics = await adapter.request("GET", "/metrics")
        assert metrics.status == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert b"kmcp_adapter_active_sessions 0" in metrics.body
        # The health request above was counted.
        assert b'kmcp_adapter_http_responses_total{endpoint="/health",status="200"} 1' in metrics.body


async def test_keepalive_and_pipelined_requests_are_answered_in_order() -> None:
    async with running_adapter() as adapter:
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            one = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
            two = b"GET /nope HTTP/1.1\r\nhost: x\r\n\r\n"
            await stream.send_all(one + two)
            reply = b""
            with trio.fail_after(5):
                while reply.count(b"HTTP/1.1 ") < 2 or not reply.endswith(b"not found"):
                    reply += await stream.receive_some(4096)
        assert reply.index(b"HTTP/1.1 200") < reply.index(b"HTTP/1.1 404")


async def test_expect_100_continue_is_honoured() -> None:
    async with running_adapter() as adapter:
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            body = msgspec.json.encode(PING)
            await stream.send_all(b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                                  b"accept: application/json\r\nexpect: 100-continue\r\n"
                                  b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
            with trio.fail_after(5):
                interim = await stream.receive_some(4096)
            assert interim.startswith(b"HTTP/1.1 100 ")
            await stream.send_all(body)
            reply = b""
            with trio.fail_after(5):
                while b"Mcp-Session-Id" not in reply:
                    reply += await stream.receive_some(4096)
            assert b" 400 " in reply.split(b"\r\n", 1)[0]  # the request went through to the session check
