"""kmcp.kubehttp, the controller's HTTP/1.1 client, against a small server on 127.0.0.1 that answers as the
apiserver does: Content-Length and chunked bodies, keep-alive, watch streams, closed idle connections."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trio

from kmcp import kube, kubehttp

Handler = Callable[[trio.SocketStream, bytes], Awaitable[bool]]  # -> keep the connection open


async def _read_request(stream: trio.SocketStream, buffer: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(buffer) < end + length:
        buffer += await stream.receive_some(65536)
    request = bytes(buffer[:end + length])
    del buffer[:end + length]
    return request


async def _serve(nursery: trio.Nursery, handler: Handler) -> tuple[str, list[int]]:
    """Start the server; the URL, and the number of requests each accepted connection carried."""
    connections: list[int] = []

    async def connection(stream: trio.SocketStream) -> None:
        index = len(connections)
        connections.append(0)
        buffer = bytearray()
        async with stream:
            while (request := await _read_request(stream, buffer)) is not None:
                connections[index] += 1
                if not await handler(stream, request):
                    return

    listeners = await nursery.start(functools.partial(trio.serve_tcp, connection, 0, host="127.0.0.1"))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", connections


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def test_bodies_by_length_and_by_chunks_on_one_kept_alive_connection() -> None:
    async def handler(stream: trio.SocketStream, request: bytes) -> bool:
        if request.startswith(b"GET /length"):
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"a\": \"b\"}\n")
        elif request.startswith(b"POST /echo"):
            body = request.split(b"\r\n\r\n", 1)[1]
            await stream.send_all(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  + _chunked(body[:3], body[3:]))
        else:
            await stream.send_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True

    async with trio.open_nursery() as nursery:
        url, connections = await _serve(nursery, handler)
        client = kubehttp.Client(url, None, headers={"User-Agent": "t"})
        assert await client.request("GET", "/length") == (200, b'{"a": "b"}\n')
        assert await client.request("POST", "/echo", body=b'{"x": 1}') == (201, b'{"x": 1}')
        assert await client.request("GET", "/nothing") == (404, b"")
        assert client.opened == 1 and connections == [3]
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_a_pooled_connection_the_server_closed_is_not_used() -> None:
    async def handler(stream: trio.SocketStream, request: bytes) -> bool:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return False  # closes after each answer, without saying Connection: close

    async with trio.open_nursery() as nursery:
        url, connections = await _serve(nursery, handler)
        client = kubehttp.Client(url, None)
        for _ in range(3):
            assert await client.request("GET", "/") == (200, b"ok")
            await trio.sleep(0.05)
        assert connections == [1, 1, 1]
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_a_watch_stream_comes_as_lines_and_a_break_is_a_kube_error() -> None:
    async def handler(stream: trio.SocketStream, request: bytes) -> bool:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        events = [b'{"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}}\n',
                  b'{"type": "MODIFIED", ', b'"object": {"metadata": {"name": "b"}}}\n']
        for piece in events:
            await stream.send_all(b"%x\r\n%s\r\n" % (len(piece), piece))
            await trio.sleep(0.01)
        return False  # the connection breaks mid-stream (no last chunk)

    async with trio.open_nursery() as nursery:
        url, _ = await _serve(nursery, handler)
        client = kube.Kube(kube.KubeConfig(url, ssl.create_default_context()))
        seen = []
        with pytest.raises(kube.ApiUnavailable, match="closed"):
            async for event in client.watch(kube.SECRETS, "ns", resource_version="1"):
                seen.append((event.type, event.object["metadata"]["name"]))
        assert seen == [("ADDED", "a"), ("MODIFIED", "b")]
        assert client.counter.counts == {("watch", "secrets", 200): 1}
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_errors_are_typed_kube_errors() -> None:
    async def handler(stream: trio.SocketStream, request: bytes) -> bool:
        if request.startswith(b"GET /slow"):
            await trio.sleep(10)
        body = b'{"kind": "Status", "reason": "NotFound", "message": "secrets \\"s\\" not found"}'
        await stream.send_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    async with trio.open_nursery() as nursery:
        url, _ = await _serve(nursery, handler)
        client = kube.Kube(kube.KubeConfig(url, ssl.create_default_context()), timeout=0.3)
        with pytest.raises(kube.NotFound, match='secrets "s" not found'):
            await client.get(kube.SECRETS, "s", "ns")
        with pytest.raises(kube.ApiTimeout):
            await client.request("GET", "/slow")
        with pytest.raises(kube.NotFound):  # the timed-out connection was dropped; a new one serves this
            await client.get(kube.SECRETS, "s", "ns")
        await client.aclose()
        nursery.cancel_scope.cancel()
    with trio.socket.socket() as unused:
        await unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    refused = kube.Kube(kube.KubeConfig(f"https://127.0.0.1:{port}", ssl.create_default_context()))
    with pytest.raises(kube.ApiUnreachable) as raised:
        await refused.get(kube.SECRETS, "s", "ns")
    assert raised.value.status == 0 and isinstance(raised.value.__cause__, kubehttp.ConnectError)
    assert refused.counter.counts == {("get", "secrets", 0): 1}


def test_a_proxy_in_the_environment_means_httpx() -> None:
    server = "https://10.0.0.1:443"
    assert not kube._proxied(server, {})
    assert kube._proxied(server, {"HTTPS_PROXY": "http://proxy:3128"})
    assert kube._proxied(server, {"all_proxy": "http://proxy:3128"})
    assert not kube._proxied(server, {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "localhost,10.0.0.1"})
    assert not kube._proxied("https://api.example.com", {"HTTPS_PROXY": "http://p", "no_proxy": ".example.com"})
    assert not kube._proxied(server, {"HTTP_PROXY": "http://proxy:3128"})
