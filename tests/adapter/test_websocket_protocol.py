"""/ws at the byte level: RFC 6455 close codes for protocol violations, the message size limit, and frames that
arrive in the same packet as the upgrade request. Exact bytes over a raw socket to a real adapter."""

from __future__ import annotations

import base64
import os
import socket
import struct

import msgspec
import pytest
import trio

from tests.adapter.rawhttp import running_adapter

INIT = msgspec.json.encode({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
KEY = base64.b64encode(b"0123456789abcdef").decode()
HANDSHAKE = (f"GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
             f"sec-websocket-key: {KEY}\r\nsec-websocket-version: 13\r\nsec-websocket-protocol: mcp\r\n\r\n").encode()


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True,
          length: int | None = None) -> bytes:
    """A client frame; ``length`` overrides the announced payload length."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Peer:
    def __init__(self, stream: trio.SocketStream, buffer: bytes) -> None:
        self.stream = stream
        self.buffer = buffer

    async def _need(self, size: int) -> None:
        while len(self.buffer) < size:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError(f"connection closed with {self.buffer!r} buffered")
            self.buffer += data

    async def next_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame; server frames are unmasked and unfragmented here."""
        with trio.fail_after(5):
            await self._need(2)
            first, second = self.buffer[0], self.buffer[1]
            assert not second & 0x80, "a server frame must not be masked"
            size, offset = second & 0x7F, 2
            if size == 126:
                await self._need(4)
                size, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
            elif size == 127:
                await self._need(10)
                size, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
            await self._need(offset + size)
            payload = self.buffer[offset:offset + size]
            self.buffer = self.buffer[offset + size:]
            return first & 0x0F, payload

    async def close_code(self) -> int:
        """Skip data frames up to the server's close frame; its code."""
        while True:
            opcode, payload = await self.next_frame()
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])

    async def assert_closed(self) -> None:
        with trio.fail_after(5):
            while await self.stream.receive_some(65536):
                pass


async def connect(port: int, after_handshake: bytes = b"") -> Peer:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(HANDSHAKE + after_handshake)  # one write: one packet on loopback
    buffer = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some(65536)
            assert data, buffer
            buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"sec-websocket-protocol: mcp" in head.lower()
    return Peer(stream, rest)


async def test_frames_sent_with_the_upgrade_request_are_processed() -> None:
    async with running_adapter() as adapter:
        peer = await connect(adapter.port, frame(0x1, INIT) + frame(0x9, b"hi"))
        opcode, payload = await peer.next_frame()
        if opcode == 0xA:  # the pong may come first
            assert payload == b"hi"
            opcode, payload = await peer.next_frame()
        assert opcode == 0x1
        assert msgspec.json.decode(payload)["result"]["protocolVersion"] == "2025-06-18"


VIOLATIONS = {
    "unmasked client frame": (frame(0x1, INIT, mask=False), 1002),
    "invalid UTF-8 text": (frame(0x1, b'{"x": "\xff"}'), 1007),
    "overlong UTF-8 text": (frame(0x1, b"\xc0\xaf"), 1007),
    "reserved opcode": (frame(0x3, b"x"), 1002),
    "reserved control opcode": (frame(0xB, b"x"), 1002),
    "RSV1 bit": (frame(0x1, INIT, rsv=4), 1002),
    "RSV3 bit": (frame(0x1, INIT, rsv=1), 1002),
    "ping over 125 bytes": (frame(0x9, b"p" * 126), 1002),
    "fragmented ping": (frame(0x9, b"p", fin=False), 1002),
    "close code 999": (frame(0x8, struct.pack("!H", 999)), 1002),
    "continuation with nothing to continue": (frame(0x0, b"x"), 1002),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
async def test_protocol_violation_gets_its_close_code_then_the_connection_closes(name: str) -> None:
    data, code = VIOLATIONS[name]
    async with running_adapter() as adapter:
        peer = await connect(adapter.port)
        await peer.stream.send_all(data)
        assert await peer.close_code() == code
        await peer.assert_closed()
        assert await adapter.request("GET", "/health") is not None  # the adapter is still up


async def test_violation_sent_with_the_upgrade_request_gets_its_close_code() -> None:
    async with running_adapter() as adapter:
        peer = await connect(adapter.port, frame(0x1, b"\xff"))
        assert await peer.close_code() == 1007


async def test_message_over_the_limit_gets_1009_before_it_is_all_sent() -> None:
    async with running_adapter(max_body_bytes=1024) as adapter:
        peer = await connect(adapter.port)
        # Announce 100 MB, send a little over the limit: the adapter must not wait for (or buffer) the rest.
        data = frame(0x1, b"a" * 2048, length=100_000_000)
        await peer.stream.send_all(data[:2 + 8 + 4 + 2048])
        assert await peer.close_code() == 1009
        await peer.assert_closed()


async def test_fragmented_message_over_the_limit_gets_1009() -> None:
    async with running_adapter(max_body_bytes=1024) as adapter:
        peer = await connect(adapter.port)
        await peer.stream.send_all(frame(0x1, b"[" * 600, fin=False) + frame(0x0, b"[" * 600, fin=False))
        assert await peer.close_code() == 1009


async def test_message_at_the_limit_is_accepted_in_fragments() -> None:
    async with running_adapter(max_body_bytes=len(INIT)) as adapter:
        peer = await connect(adapter.port)
        await peer.stream.send_all(frame(0x1, INIT[:10], fin=False) + frame(0x9, b"mid") + frame(0x0, INIT[10:]))
        frames = [await peer.next_frame(), await peer.next_frame()]
        assert (0xA, b"mid") in frames
        text = next(payload for opcode, payload in frames if opcode == 0x1)
        assert msgspec.json.decode(text)["id"] == 0


async def test_client_close_is_echoed_and_the_connection_closes() -> None:
    async with running_adapter() as adapter:
        peer = await connect(adapter.port)
        await peer.stream.send_all(frame(0x8, struct.pack("!H", 1000) + b"bye"))
        assert await peer.close_code() == 1000
        await peer.assert_closed()


@pytest.mark.parametrize(("header", "status"), [("sec-websocket-version: 8", 426), ("sec-websocket-key: short", 400)])
async def test_bad_handshake_is_refused(header: str, status: int) -> None:
    name = header.split(":")[0]
    lines = [line for line in HANDSHAKE.decode().split("\r\n") if not line.startswith(name)]
    request = "\r\n".join([*lines[:2], header, *lines[2:]]).encode()
    async with running_adapter() as adapter:
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            await stream.send_all(request)
            with trio.fail_after(5):
                reply = await stream.receive_some(65536)
        assert reply.startswith(f"HTTP/1.1 {status}".encode()), reply


async def test_client_that_never_reads_has_its_session_ended_and_its_connection_closed() -> None:
    async with running_adapter(stream_buffer_bytes=64 * 1024) as adapter:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", adapter.port))
        stream = trio.SocketStream(sock)
        await stream.send_all(HANDSHAKE + frame(0x1, INIT))
        text = "x" * (256 * 1024)
        with trio.move_on_after(10):  # the adapter stops reading once the session ends: sends may block
            try:
                for i in range(60):
                    call = {"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                            "params": {"name": "echo", "arguments": {"text": text}}}
                    await stream.send_all(frame(0x1, msgspec.json.encode(call)))
            except trio.BrokenResourceError:  # closed (reset) under our sends: what the test waits for
                pass
        with trio.fail_after(15):  # 5 s flush grace, then the once-a-second sweep
            try:
                while await stream.receive_some(1 << 20):
                    pass
            except trio.BrokenResourceError:
                pass
        assert await adapter.request("GET", "/health") is not None
