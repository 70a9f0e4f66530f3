"""The 2024-11-05 HTTP+SSE transport: /sse hands out a /message endpoint; answers come on the stream."""

from __future__ import annotations

import msgspec
import pytest
import trio

from tests.adapter.rawhttp import eventually, open_sse, running_adapter

pytestmark = pytest.mark.slow


async def test_endpoint_event_then_messages_flow_on_the_stream() -> None:
    async with running_adapter() as adapter, open_sse(adapter.port, "GET", "/sse",
                                                      headers={"accept": "text/event-stream"}) as stream:
        assert stream.status == 200
        endpoint = await stream.next_event()
        assert endpoint["event"] == "endpoint"
        assert endpoint["data"].startswith("/message?sessionId=")
        post = {"content-type": "application/json"}
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        accepted = await adapter.request("POST", endpoint["data"], msgspec.json.encode(init), post)
        assert accepted.status == 202
        with trio.fail_after(5):
            event = await stream.next_event()
        assert event["event"] == "message"
        result = msgspec.json.decode(event["data"])
        assert result["id"] == 1
        assert result["result"]["protocolVersion"] == "2024-11-05"
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo",
                                                                             "arguments": {"text": "legacy"}}}
        assert (await adapter.request("POST", endpoint["data"], msgspec.json.encode(call), post)).status == 202
        with trio.fail_after(5):
            answer = await stream.next_message()
        assert answer["result"]["content"][0]["text"] == "legacy"  # type: ignore[index]


async def test_message_post_errors() -> None:
    async with running_adapter() as adapter:
        body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
        assert (await adapter.request("POST", "/message", body, {"content-type": "application/json"})).status == 400
        unknown = await adapter.request("POST", "/message?sessionId=nope", body, {"content-type": "application/json"})
        assert unknown.status == 404
        async with open_sse(adapter.port, "GET", "/sse") as stream:
            endpoint = (await stream.next_event())["data"]
            assert (await adapter.request("POST", endpoint, body, {"content-type": "text/plain"})).status == 415
            bad = await adapter.request("POST", endpoint, b"{oops", {"content-type": "application/json"})
            assert bad.status == 400
            assert bad.json()["error"]["code"] == -32700  # type: ignore[index]


async def test_closing_the_stream_ends_the_session() -> None:
    async with running_adapter() as adapter:
        async with open_sse(adapter.port, "GET", "/sse") as stream:
            endpoint = (await stream.next_event())["data"]
        body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'

        async def gone() -> bool:
            reply = await adapter.request("POST", endpoint, body, {"content-type": "application/json"})
            return reply.status == 404

        async def reaped() -> bool:  # the process is stopped and reaped a little later
            return b"kmcp_adapter_active_sessions 0" in (await adapter.request("GET", "/metrics")).body

        await eventually(gone)
        await eventually(reaped)
