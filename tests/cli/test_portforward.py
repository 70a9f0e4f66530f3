"""The port-forward WebSocket framing, against a test server that speaks the kubelet's websocket port-forward
protocol (channel byte; data 0, error 1; first message per channel = the port, 2 bytes little-endian).
Not a real kubelet: this cluster has none."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
import trio_websocket

from kmcp.commands.portforward import (
    SUBPROTOCOLS,
    Data,
    PortForwardChannels,
    PortForwardProtocolError,
    RemoteError,
    forward_connection,
    port_header,
    portforward_url,
    serve_forward,
)

POD_PORT = 3000


def test_channels_parse_port_headers_then_data_and_errors() -> None:
    channels = PortForwardChannels(POD_PORT)
    assert port_header(0, POD_PORT) == b"\x00\xb8\x0b"
    assert channels.receive(port_header(0, POD_PORT)) == []
    assert channels.receive(port_header(1, POD_PORT)) == []
    assert channels.receive(b"\x00hello") == [Data(b"hello")]
    assert channels.receive(b"\x00\xb8\x0b") == [Data(b"\xb8\x0b")]  # after the header, bytes are just data
    assert channels.receive(b"\x01connection refused") == [RemoteError("connection refused")]
    assert channels.data_message(b"GET /") == b"\x00GET /"


def test_channels_accept_a_header_with_data_and_reject_bad_framing() -> None:
    assert PortForwardChannels(POD_PORT).receive(port_header(0, POD_PORT) + b"x") == [Data(b"x")]
    with pytest.raises(PortForwardProtocolError, match="expected 3000"):
        PortForwardChannels(POD_PORT).receive(port_header(0, 8080))
    with pytest.raises(PortForwardProtocolError, match="too short"):
        PortForwardChannels(POD_PORT).receive(b"\x00\x01")
    with pytest.raises(PortForwardProtocolError, match="unknown channel 4"):
        PortForwardChannels(POD_PORT).receive(b"\x04abc")


def test_url_uses_websocket_schemes() -> None:
    assert portforward_url("https://10.0.0.1:6443/", "ns", "pod-1", 3000) == \
        "wss://10.0.0.1:6443/api/v1/namespaces/ns/pods/pod-1/portforward?ports=3000"
    assert portforward_url("http://127.0.0.1:8001", "ns", "p", 80).startswith("ws://127.0.0.1:8001/api/v1/")


async def fake_kubelet(request: trio_websocket.WebSocketRequest) -> None:
    """Accept like the kubelet, announce the port on both channels, then upper-case and echo data; 'fail' gets an
    error on channel 1 and a close."""
    assert request.path == f"/api/v1/namespaces/ns/pods/pod-1/portforward?ports={POD_PORT}"
    assert "v4.channel.k8s.io" in request.proposed_subprotocols
    ws = await request.accept(subprotocol="v4.channel.k8s.io")
    await ws.send_message(port_header(0, POD_PORT))
    await ws.send_message(port_header(1, POD_PORT))
    with contextlib.suppress(trio_websocket.ConnectionClosed):
        while True:
            message = await ws.get_message()
            assert isinstance(message, bytes) and message[0] == 0
            if message[1:] == b"fail":
                await ws.send_message(b"\x01" + b"error forwarding port 3000: connection refused")
                await ws.aclose()
                return
            await ws.send_message(b"\x00" + message[1:].upper())


async def test_local_connections_are_forwarded_through_the_websocket() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, fake_kubelet, "127.0.0.1", 0, None)
        url = f"ws://127.0.0.1:{server.port}/api/v1/namespaces/ns/pods/pod-1/portforward?ports={POD_PORT}"

        @contextlib.asynccontextmanager
        async def connect() -> AsyncIterator[trio_websocket.WebSocketConnection]:
            async with trio_websocket.open_websocket_url(url, subprotocols=SUBPROTOCOLS) as ws:
                assert ws.subprotocol == "v4.channel.k8s.io"
                yield ws

        local_port = await nursery.start(serve_forward, connect, POD_PORT, 0, "127.0.0.1")
        for text in (b"hello", b"second connection"):  # one WebSocket per TCP connection
            stream = await trio.open_tcp_stream("127.0.0.1", local_port)
            async with stream:
                await stream.send_all(text)
                with trio.fail_after(5):
                    assert await stream.receive_some(100) == text.upper()

        stream = await trio.open_tcp_stream("127.0.0.1", local_port)
        async with stream:
            await stream.send_all(b"fail")
            with trio.fail_after(5):
                assert await stream.receive_some(100) == b""  # the remote error closes the local connection
        nursery.cancel_scope.cancel()


async def test_forward_connection_ends_when_the_local_side_closes() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, fake_kubelet, "127.0.0.1", 0, None)
        url = f"ws://127.0.0.1:{server.port}/api/v1/namespaces/ns/pods/pod-1/portforward?ports={POD_PORT}"
        left, right = trio.testing.memory_stream_pair()

        @contextlib.asynccontextmanager
        async def connect() -> AsyncIterator[trio_websocket.WebSocketConnection]:
            async with trio_websocket.open_websocket_url(url, subprotocols=SUBPROTOCOLS) as ws:
                yield ws

        done = trio.Event()

        async def run() -> None:
            await forward_connection(right, connect, POD_PORT)
            done.set()

        nursery.start_soon(run)
        await left.send_all(b"abc")
        with trio.fail_after(5):
            assert await left.receive_some(10) == b"ABC"
            await left.aclose()
            await done.wait()
        nursery.cancel_scope.cancel()
