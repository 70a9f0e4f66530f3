"""--session-mode shared: many MCP sessions, one server process, and no session sees another's traffic."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from kmcp.adapter.app import serve_adapter
from kmcp.adapter.sessions.shared import SharedLauncher
from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import LocalLauncher
from tests.adapter.rawhttp import FASTMCP_SERVER, Adapter
from tests.adapter.test_sdk_clients import check_full_session, run_client

# -- the multiplexer, driven with messages (no processes) ------------------------------------------------------


class FakeServer:
    """An in-memory 'server process': records what it was sent, replies when the test says so."""

    def __init__(self) -> None:
        self.to_server_send, self.to_server_recv = trio.open_memory_channel[bytes](100)
        self.from_server_send, self.from_server_recv = trio.open_memory_channel[bytes](100)
        self.exited = trio.Event()
        self.sent: list[dict[str, Any]] = []

    @property
    def send_stream(self) -> trio.abc.SendStream:
        server = self

        class Stdin(trio.abc.SendStream):
            async def send_all(self, data: bytes | bytearray | memoryview) -> None:
                for line in bytes(data).splitlines():
                    server.sent.append(json.loads(line))

            async def wait_send_all_might_not_block(self) -> None:
                pass

            async def aclose(self) -> None:
                pass

        return Stdin()

    @property
    def receive_stream(self) -> trio.abc.ReceiveStream:
        server = self

        class Stdout(trio.abc.ReceiveStream):
            async def receive_some(self, max_bytes: int | None = None) -> bytes:
                try:
                    return await server.from_server_recv.receive()
                except trio.EndOfChannel:
                    return b""

            async def aclose(self) -> None:
                pass

        return Stdout()

    async def wait(self) -> int:
        await self.exited.wait()
        return 0

    async def say(self, message: dict[str, Any]) -> None:
        await self.from_server_send.send(json.dumps(message).encode() + b"\n")


class FakeLauncher:
    def __init__(self) -> None:
        self.server = FakeServer()
        self.launches = 0

    @asynccontextmanager
    async def launch(self, session_id: str) -> AsyncIterator[FakeServer]:
        self.launches += 1
        yield self.server


async def read_message(stream: trio.abc.ReceiveStream) -> dict[str, Any]:
    with trio.fail_after(5):
        data = b""
        while not data.endswith(b"\n"):
            data += await stream.receive_some()
    result: dict[str, Any] = json.loads(data)
    return result


async def send(process: Any, message: dict[str, Any]) -> None:
    await process.send_stream.send_all(json.dumps(message).encode() + b"\n")


async def settle() -> None:
    for _ in range(5):
        await trio.lowlevel.checkpoint()


def ids(sent: list[dict[str, Any]]) -> Iterator[Any]:
    return (m.get("id") for m in sent)


async def test_same_request_ids_from_two_sessions_never_cross() -> None:
    inner = FakeLauncher()
    shared = SharedLauncher(inner)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(shared.run)
        async with shared.launch("a") as a, shared.launch("b") as b:
            await send(a, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}})
            await send(b, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "y"}})
            await settle()
            first, second = inner.server.sent
            assert first["id"] != second["id"]  # rewritten to unique ids on the shared process
            await inner.server.say({"jsonrpc": "2.0", "id": second["id"], "result": {"for": "b"}})
            await inner.server.say({"jsonrpc": "2.0", "id": first["id"], "result": {"for": "a"}})
            assert await read_message(b.receive_stream) == {"jsonrpc": "2.0", "id": 1, "result": {"for": "b"}}
            assert await read_message(a.receive_stream) == {"jsonrpc": "2.0", "id": 1, "result": {"for": "a"}}
        assert inner.launches == 1
        nursery.cancel_scope.cancel()


async def test_initialize_is_forwarded_once_and_reused() -> None:
    inner = FakeLauncher()
    shared = SharedLauncher(inner)  # type: ignore[arg-type]
    init = {"jsonrpc": "2.0", "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}
    async with trio.open_nursery() as nursery:
        await nursery.start(shared.run)
        async with shared.launch("a") as a, shared.launch("b") as b:
            await send(a, {**init, "id": "a-init"})
            await send(b, {**init, "id": 7})  # arrives while the first is in flight
            await settle()
            assert [m["method"] for m in inner.server.sent] == ["initialize"]
            result = {"protocolVersion": "2025-06-18", "serverInfo": {"name": "s"}}
            await inner.server.say({"jsonrpc": "2.0", "id": inner.server.sent[0]["id"], "result": result})
            assert (await read_message(a.receive_stream))["id"] == "a-init"
            assert await read_message(b.receive_stream) == {"jsonrpc": "2.0", "id": 7, "result": result}
            for process in (a, b):
                await send(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            async with shared.launch("c") as c:
                await send(c, {**init, "id": 1})
                assert (await read_message(c.receive_stream))["result"] == result
            await settle()
            methods = [m.get("method") for m in inner.server.sent]
            assert methods == ["initialize", "notifications/initialized"]
        nursery.cancel_scope.cancel()


async def test_progress_cancel_and_server_requests_reach_the_right_session() -> None:
    inner = FakeLauncher()
    shared = SharedLauncher(inner)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(shared.run)
        async with shared.launch("a") as a, shared.launch("b") as b:
            await send(a, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "slow", "_meta": {"progressToken": 5}}})
            await send(b, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "slow", "_meta": {"progressToken": 5}}})
            await settle()
            to_a, to_b = inner.server.sent
            token_b = to_b["params"]["_meta"]["progressToken"]
            assert to_a["params"]["_meta"]["progressToken"] != token_b
            await inner.server.say({"jsonrpc": "2.0", "method": "notifications/progress",
                                    "params": {"progressToken": token_b, "progress": 1}})
            got = await read_message(b.receive_stream)
            assert got["params"] == {"progressToken": 5, "progress": 1}
            # b cancels its request: the server hears the shared id
            await send(b, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
            await settle()
            assert inner.server.sent[-1]["params"]["requestId"] == to_b["id"]
            # a list_changed goes to everyone
            await inner.server.say({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            assert (await read_message(a.receive_stream))["method"] == "notifications/tools/list_changed"
            assert (await read_message(b.receive_stream))["method"] == "notifications/tools/list_changed"
            # a sampling request goes to a session with a request in flight, and its answer comes back
            await inner.server.say({"jsonrpc": "2.0", "id": "srv-1", "method": "sampling/createMessage",
                                    "params": {}})
            asked = await read_message(a.receive_stream)
            assert asked["id"] == "srv-1"
            await send(a, {"jsonrpc": "2.0", "id": "srv-1", "result": {"text": "ok"}})
            await settle()
            assert inner.server.sent[-1] == {"jsonrpc": "2.0", "id": "srv-1", "result": {"text": "ok"}}
        nursery.cancel_scope.cancel()


async def test_a_dying_server_ends_every_attached_session() -> None:
    inner = FakeLauncher()
    shared = SharedLauncher(inner, restart_delay=0.01)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(shared.run)
        async with shared.launch("a") as a:
            inner.server.exited.set()
            await inner.server.from_server_send.aclose()
            with trio.fail_after(5):
                assert await a.wait() == 0
            assert await a.receive_stream.receive_some() == b""
        nursery.cancel_scope.cancel()


# -- real clients, a real server ----------------------------------------------------------------------------


@asynccontextmanager
async def shared_adapter() -> AsyncIterator[Adapter]:
    settings = AdapterSettings(host="127.0.0.1", port=0)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        shared = SharedLauncher(LocalLauncher(list(FASTMCP_SERVER), kill_grace=1.0))
        await nursery.start(shared.run)
        port = await nursery.start(serve_adapter, settings, shared, shutdown)
        yield Adapter(port, shutdown, settings)
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_sdk_clients_share_one_process_without_cross_talk() -> None:
    async with shared_adapter() as adapter:
        results: dict[str, dict[str, object]] = {}

        async def client(kind: str, path: str) -> None:
            results[kind] = await run_client(f"http://127.0.0.1:{adapter.port}{path}", kind)

        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(client, "streamable", "/mcp")
            nursery.start_soon(client, "sse", "/sse")
        for seen in results.values():
            check_full_session(seen)  # progress and the sampling round trip reached the right session
        assert results["streamable"]["pids"] == results["sse"]["pids"]  # one process served them all


def test_shared_mode_is_accepted_and_needs_no_warm_pool() -> None:
    from kmcp.adapter.cli import parse_settings

    settings, args = parse_settings(["--session-mode", "shared", "--warm-pool", "3", "--", "server"])
    assert args.session_mode == "shared"
    assert settings.warm_pool == 0
