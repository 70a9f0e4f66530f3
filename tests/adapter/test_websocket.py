"""MCP over WebSocket at /ws with trio-websocket as the client."""

from __future__ import annotations

import msgspec
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.adapter.rawhttp import running_adapter

pytestmark = pytest.mark.slow

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


async def test_websocket_session_round_trip_with_mcp_subprotocol() -> None:
    async with running_adapter() as adapter, open_websocket_url(
            f"ws://127.0.0.1:{adapter.port}/ws", subprotocols=["mcp"]) as ws:
        assert ws.subprotocol == "mcp"
        await ws.send_message(msgspec.json.encode(INIT).decode())
        with trio.fail_after(5):
            init = msgspec.json.decode(await ws.get_message())
        assert init["result"]["protocolVersion"] == "2025-06-18"
        await ws.send_message('{"jsonrpc":"2.0","method":"notifications/initialized"}')
        await ws.send_message('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"notify",'
                              '"arguments":{"text":"ws"}}}')
        with trio.fail_after(5):
            note = msgspec.json.decode(await ws.get_message())
            answer = msgspec.json.decode(await ws.get_message())
        assert note["method"] == "notifications/message"
        assert answer["id"] == 1
        await ws.send_message("{broken")
        with trio.fail_after(5):
            error = msgspec.json.decode(await ws.get_message())
        assert error["error"]["code"] == -32700


async def test_websocket_closes_when_the_server_process_exits() -> None:
    async with running_adapter() as adapter, open_websocket_url(f"ws://127.0.0.1:{adapter.port}/ws") as ws:
        await ws.send_message(msgspec.json.encode(INIT).decode())
        await ws.get_message()
        await ws.send_message('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"exit"}}')
        with trio.fail_after(5):
            failed = msgspec.json.decode(await ws.get_message())
            assert failed["error"]["code"] == -32000
            with pytest.raises(ConnectionClosed):
                await ws.get_message()


async def test_plain_get_on_ws_gets_426() -> None:
    async with running_adapter() as adapter:
        assert (await adapter.request("GET", "/ws")).status == 426
