"""Bounded memory and connection hygiene: clients that never read, sessions that end under an unread stream,
idle and trickling connections. Exact bytes over raw sockets to a real adapter."""

from __future__ import annotations

import gc
import socket

import msgspec
import pytest
import trio

from kmcp.adapter.server import httputil
from kmcp.adapter.sessions.runtime import Session
from tests.adapter.rawhttp import Adapter, open_sse, running_adapter

pytestmark = pytest.mark.slow


def http(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return head.encode() + b"\r\n" + body


async def slow_reader(port: int, request: bytes) -> tuple[trio.SocketStream, bytes]:
    """A connection with a tiny receive buffer (so the adapter's side fills fast) that sent ``request`` and read
    only the response head."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    await stream.send_all(request)
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(4096)
    return stream, data


async def read_to_end(stream: trio.SocketStream, seconds: float) -> bool:
    """Read until the response ends (its last chunk) or the adapter closes the connection (True), or ``seconds``
    pass (False)."""
    tail = b""
    with trio.move_on_after(seconds):
        try:
            while data := await stream.receive_some(1 << 20):
                tail = (tail + data)[-7:]
                if tail.endswith(b"\r\n0\r\n\r\n"):
                    break
        except trio.BrokenResourceError:  # reset: closed as well
            pass
        return True
    return False


def echo(request_id: int, size: int) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                                "params": {"name": "echo", "arguments": {"text": "x" * size}}})


def notify(request_id: int, size: int) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                                "params": {"name": "notify", "arguments": {"text": "x" * size}}})


async def post_json_only(adapter: Adapter, session: str, body: bytes) -> int:
    response = await adapter.request("POST", "/mcp", body, {"content-type": "application/json",
                                                            "accept": "application/json", "mcp-session-id": session})
    return response.status


async def test_legacy_sse_session_whose_client_does_not_read_ends_cleanly() -> None:
    async with running_adapter(stream_buffer_bytes=64 * 1024) as adapter:
        stream, data = await slow_reader(adapter.port, http("GET", "/sse", headers={"accept": "text/event-stream"}))
        while b"sessionId=" not in data or b"\n\n" not in data.split(b"sessionId=", 1)[1]:
            data += await stream.receive_some(4096)
        session = data.split(b"sessionId=", 1)[1].split(b"\n", 1)[0].strip().decode()
        statuses = []
        for i in range(200):  # 256 KB replies: the kernel's buffers take a few MB, then the adapter's 64 KiB
            response = await adapter.request("POST", f"/message?sessionId={session}", echo(i + 1, 256 * 1024),
                                             {"content-type": "application/json"})
            statuses.append(response.status)
            if response.status == 404:
                break
            await trio.sleep(0.01)
        assert statuses[-1] == 404, "the session never ended although its client read nothing"
        assert set(statuses[:-1]) == {202}
        assert await read_to_end(stream, 10), "the stream of the ended session stayed open"


async def test_ended_session_under_an_unread_get_stream_is_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httputil, "STREAM_FLUSH_GRACE", 0.2)
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        stream, _ = await slow_reader(adapter.port, http("GET", "/mcp", headers={
            "accept": "text/event-stream", "mcp-session-id": session}))
        for i in range(40):  # 256 KB notifications to the GET stream, which is never read
            assert await post_json_only(adapter, session, notify(i + 1, 256 * 1024)) == 200
        assert (await adapter.request("DELETE", "/mcp", headers={"mcp-session-id": session})).status == 200
        await trio.sleep(2.5)  # the flush grace, then the server's once-a-second sweep
        gc.collect()
        assert not [o for o in gc.get_objects() if isinstance(o, Session) and o.id == session], \
            "the deleted session is still reachable"
        assert await read_to_end(stream, 10)


async def test_client_that_stops_reading_is_disconnected_after_send_timeout() -> None:
    async with running_adapter(send_timeout=0.5) as adapter:
        session = await adapter.initialize()
        stream, _ = await slow_reader(adapter.port, http("GET", "/mcp", headers={
            "accept": "text/event-stream", "mcp-session-id": session}))
        for i in range(40):
            assert await post_json_only(adapter, session, notify(i + 1, 256 * 1024)) == 200
        await trio.sleep(1.5)
        assert await read_to_end(stream, 10), "a stream nobody reads stayed open"
        # The session itself lives on: only the stream was dropped.
        assert (await adapter.call_tool(session, "echo", {"text": "still here"}, id=99)).status == 200


async def test_standalone_messages_nobody_hears_are_bounded_in_bytes() -> None:
    async with running_adapter(stream_buffer_bytes=100_000) as adapter:
        session = await adapter.initialize()
        for i in range(10):  # JSON-only: each notification goes to the standalone stream, which nobody opened
            assert await post_json_only(adapter, session, notify(i + 1, 30_000)) == 200
        async with open_sse(adapter.port, "GET", "/mcp", headers={
                "accept": "text/event-stream", "mcp-session-id": session}) as sse:
            heard = []
            with trio.move_on_after(1):
                while True:
                    heard.append((await sse.next_message())["params"])
        assert 1 <= len(heard) <= 3, len(heard)


async def test_idle_connections_beyond_the_cap_are_closed_oldest_first() -> None:
    async with running_adapter(max_idle_connections=5) as adapter:
        streams = []
        for _ in range(20):
            streams.append(await trio.open_tcp_stream("127.0.0.1", adapter.port))
            await trio.sleep(0.01)
        closed = []
        with trio.move_on_after(3):
            for index, stream in enumerate(streams[:15]):
                assert await stream.receive_some(10) == b""
                closed.append(index)
        assert closed == list(range(15))
        # The newest five stay open and usable.
        await streams[-1].send_all(http("GET", "/health"))
        with trio.fail_after(5):
            assert (await streams[-1].receive_some(4096)).startswith(b"HTTP/1.1 200")
        for stream in streams:
            await stream.aclose()


BODY = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x" * 200_000}})
HEAD = (f"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"accept: application/json, text/event-stream\r\ncontent-length: {len(BODY)}\r\n\r\n").encode()


async def test_trickled_body_gets_408_after_body_timeout() -> None:
    async with running_adapter(body_timeout=0.5, min_body_rate=1000) as adapter:
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            await stream.send_all(HEAD)
            reply = b""
            with trio.fail_after(3):
                for offset in range(0, len(BODY), 10):
                    with trio.move_on_after(0.1):
                        reply = await stream.receive_some(4096)
                    if reply:
                        break
                    await stream.send_all(BODY[offset:offset + 10])
        assert reply.startswith(b"HTTP/1.1 408"), reply


@pytest.mark.parametrize("chunked", [False, True])
async def test_large_body_sent_steadily_has_time_beyond_body_timeout(chunked: bool) -> None:
    async with running_adapter(body_timeout=0.5, min_body_rate=64 * 1024) as adapter:
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            if chunked:
                await stream.send_all(HEAD.replace(f"content-length: {len(BODY)}".encode(),
                                                   b"transfer-encoding: chunked"))
            else:
                await stream.send_all(HEAD)
            for offset in range(0, len(BODY), 20_000):  # ~1 s in all: twice body_timeout, at ~200 KB/s
                part = BODY[offset:offset + 20_000]
                await stream.send_all(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
                await trio.sleep(0.1)
            if chunked:
                await stream.send_all(b"0\r\n\r\n")
            with trio.fail_after(5):
                reply = await stream.receive_some(4096)
        assert reply.startswith(b"HTTP/1.1 400"), reply  # no session id: answered, not timed out
