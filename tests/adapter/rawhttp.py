"""A tiny HTTP/1.1 client on h11 for adapter tests: exact bytes in, status/headers/body out, SSE events."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h11
import msgspec
import trio

from kmcp.adapter.app import serve_adapter
from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import LocalLauncher

SERVERS = Path(__file__).resolve().parent.parent / "servers"
RAW_SERVER = [sys.executable, str(SERVERS / "raw_server.py")]
FASTMCP_SERVER = [sys.executable, str(SERVERS / "fastmcp_server.py")]
ACCEPT_BOTH = "application/json, text/event-stream"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        value = msgspec.json.decode(self.body)
        assert isinstance(value, dict), value
        return value


@dataclass
class Adapter:
    port: int
    shutdown: trio.Event
    settings: AdapterSettings
    session_headers: dict[str, str] = field(default_factory=dict)

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                      ) -> Response:
        return await request(self.port, method, path, body, headers)

    async def post_mcp(self, message: object, session: str | None = None, headers: dict[str, str] | None = None,
                       accept: str = ACCEPT_BOTH) -> Response:
        all_headers = {"content-type": "application/json", "accept": accept, **(headers or {})}
        if session:
            all_headers["mcp-session-id"] = session
        return await self.request("POST", "/mcp", msgspec.json.encode(message), all_headers)

    async def initialize(self, version: str = "2025-06-18") -> str:
        response = await self.post_mcp({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        assert response.status == 200, response
        session = response.headers["mcp-session-id"]
        notified = await self.post_mcp({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        assert notified.status == 202, notified
        return session

    async def call_tool(self, session: str, name: str, arguments: dict[str, object] | None = None,
                        id: int = 1) -> Response:
        return await self.post_mcp({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                    "params": {"name": name, "arguments": arguments or {}}}, session)


@asynccontextmanager
async def running_adapter(command: Sequence[str] = tuple(RAW_SERVER), **overrides: object) -> AsyncIterator[Adapter]:
    settings = AdapterSettings(host="127.0.0.1", port=0, **overrides)  # type: ignore[arg-type]
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_adapter, settings, LocalLauncher(list(command), kill_grace=1.0), shutdown)
        yield Adapter(port, shutdown, settings)
        nursery.cancel_scope.cancel()


def _encode_request(connection: h11.Connection, method: str, path: str, body: bytes,
                    headers: dict[str, str] | None) -> bytes:
    all_headers = {"host": "127.0.0.1", **(headers or {})}
    if body or method in ("POST", "PUT"):
        all_headers.setdefault("content-length", str(len(body)))
    data = connection.send(h11.Request(method=method, target=path, headers=list(all_headers.items()))) or b""
    if body:
        data += connection.send(h11.Data(data=body)) or b""
    return data + (connection.send(h11.EndOfMessage()) or b"")


async def _read_response(stream: trio.abc.Stream, connection: h11.Connection) -> Response:
    head: h11.Response | None = None
    chunks: list[bytes] = []
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some(65536))
            continue
        if isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    assert head is not None
    headers = {k.decode().lower(): v.decode() for k, v in head.headers}
    return Response(head.status_code, headers, b"".join(chunks))


async def request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                  host: str = "127.0.0.1") -> Response:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        connection = h11.Connection(h11.CLIENT)
        await stream.send_all(_encode_request(connection, method, path, body, headers))
        return await _read_response(stream, connection)


@dataclass
class SseStream:
    status: int
    headers: dict[str, str]
    _stream: trio.abc.Stream
    _connection: h11.Connection
    _buffer: bytes = b""

    async def next_event(self) -> dict[str, str]:
        """The next SSE event as a dict of its fields (comments skipped)."""
        while True:
            if b"\n\n" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\n\n", 1)
                fields: dict[str, str] = {}
                for line in raw.decode().split("\n"):
                    if not line or line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    fields[name] = f"{fields[name]}\n{value}" if name in fields else value
                if fields:
                    return fields
                continue
            event = self._connection.next_event()
            if event is h11.NEED_DATA:
                self._connection.receive_data(await self._stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                self._buffer += bytes(event.data).replace(b"\r\n", b"\n")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                raise EOFError("stream ended")

    async def next_message(self) -> dict[str, object]:
        event = await self.next_event()
        value = msgspec.json.decode(event["data"])
        assert isinstance(value, dict)
        return value


@asynccontextmanager
async def open_sse(port: int, method: str, path: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> AsyncIterator[SseStream]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        connection = h11.Connection(h11.CLIENT)
        await stream.send_all(_encode_request(connection, method, path, body, headers))
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some(65536))
                continue
            assert isinstance(event, h11.Response), event
            break
        headers_out = {k.decode().lower(): v.decode() for k, v in event.headers}
        yield SseStream(event.status_code, headers_out, stream, connection)


async def eventually(check: Callable[[], Awaitable[bool]], interval: float = 0.05) -> None:
    """Poll ``check`` until it holds (for state the adapter changes on its own: reaping, process exit)."""
    with trio.fail_after(5):
        while True:
            if await check():
                return
            await trio.sleep(interval)
