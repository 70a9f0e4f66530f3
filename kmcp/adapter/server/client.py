"""The adapter's one HTTP/1.1 client: forwarding to another replica, auth's TokenReview/SAR/JWKS calls and the
OTLP span export all go through it.

A request is framed directly (``httpfast.request_bytes``). A final answer framed by Content-Length is read by the
fast path (``httpfast.parse_response_head``); anything else (a chunked SSE stream, a body delimited by the close
of the connection, a 1xx) goes through an ``h11`` client connection that is told about the request already sent
and fed the bytes read so far, as the server side hands unusual requests to h11. Like h11 itself this module
holds no pool; :class:`~kmcp.adapter.server.forwarding.Forwarder` keeps its connections alive itself.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import h11
import trio

from kmcp.adapter.protocol import httpfast

Headers = list[tuple[str, str]]
ERRORS = (OSError, ssl.SSLError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError)
"""What a connection that failed or answered nonsense raises."""


class Closed(trio.BrokenResourceError):
    """The server closed the connection before its answer was complete."""


class ClientConnection:
    """One connection to one server (TCP or TLS), one exchange at a time."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()  # read from the server, not yet used by an answer
        self.since = 0.0  # when it last went idle (for a caller that keeps connections alive)

    async def request(self, method: str, target: str, headers: Headers, body: bytes = b"") -> Response:
        """Send a request (``headers`` without Content-Length, which is added) and read its answer's head."""
        await self.stream.send_all(httpfast.request_bytes(method, target, headers, body))
        return await self.response(method, target, headers, body)

    async def response(self, method: str, target: str, headers: Headers, body: bytes) -> Response:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = httpfast.parse_response_head(bytes(self.buffer[:end + 4]))
        if head is not None and method != "HEAD":
            del self.buffer[:end + 4]
            return Response(self, head.status, head.headers, head.content_length, None, head.close)
        # Outside the fast path's subset: h11 reads this answer, from what arrived so far on.
        connection = h11.Connection(h11.CLIENT)
        connection.send(h11.Request(method=method, target=target,
                                    headers=[*headers, ("content-length", str(len(body)))]))
        if body:
            connection.send(h11.Data(data=body))
        connection.send(h11.EndOfMessage())
        connection.receive_data(bytes(self.buffer))
        self.buffer.clear()
        while True:
            event = await self._next_h11(connection)
            if isinstance(event, h11.Response):
                return Response(self, event.status_code, [(bytes(n), bytes(v)) for n, v in event.headers], None,
                                connection, True)
            if not isinstance(event, h11.InformationalResponse):
                raise Closed("the server closed the connection without answering")

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)

    def close_idle(self) -> None:
        """Close an idle plain-TCP connection at once (nothing to flush; no TLS close_notify owed)."""
        if isinstance(self.stream, trio.SocketStream):
            self.stream.socket.close()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise Closed("the server closed the connection")
        self.buffer += data

    async def _next_h11(self, connection: h11.Connection) -> object:
        while (event := connection.next_event()) is h11.NEED_DATA:
            connection.receive_data(bytes(await self.stream.receive_some(65536)))
        return event


class Response:
    """An answer's status and headers (names lower-case); its body is read with :meth:`read` or :meth:`chunks`.
    ``reusable``: the connection can carry another request once the body is read."""

    def __init__(self, connection: ClientConnection, status: int, headers: list[tuple[bytes, bytes]],
                 length: int | None, h11_connection: h11.Connection | None, close: bool) -> None:
        self._connection = connection
        self.status = status
        self.headers = headers  # lower-case already: parse_response_head lowers names, and h11 always does
        self.length = length  # the Content-Length of a fast-path answer; None when h11 frames it
        self._h11 = h11_connection
        self.reusable = not close and h11_connection is None

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)

    async def read(self, limit: int) -> bytes:
        """The whole body; raises ``Closed`` past ``limit`` bytes or when the connection ends early."""
        if self.length is not None and self.length > limit:
            raise Closed(f"answer larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise Closed(f"answer larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        connection = self._connection
        if self.length is not None:
            left = self.length
            while left:
                if not connection.buffer:
                    await connection._fill()
                chunk = bytes(connection.buffer[:left])
                del connection.buffer[:len(chunk)]
                left -= len(chunk)
                yield chunk
            return
        assert self._h11 is not None
        while isinstance(event := await connection._next_h11(self._h11), h11.Data):
            yield bytes(event.data)
        if not isinstance(event, h11.EndOfMessage):
            raise Closed("the server closed the connection mid-answer")


async def connect(scheme: str, host: str, port: int, *, ca_file: str | None = None) -> ClientConnection:
    """A connection to ``host:port``, TLS (verified against ``ca_file`` or the system store) for https."""
    if scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        return ClientConnection(await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context))
    return ClientConnection(await trio.open_tcp_stream(host, port))


async def fetch(url: str, *, method: str = "GET", body: bytes = b"", headers: Headers | None = None,
                limit: int = 4 * 1024 * 1024, ca_file: str | None = None) -> tuple[int, bytes]:
    """One exchange on a fresh connection (closed after): the status and the body (at most ``limit`` bytes).
    Raises one of :data:`ERRORS`."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise OSError(f"not an http(s) URL: {url}")
    connection = await connect(split.scheme, split.hostname, split.port or (443 if split.scheme == "https" else 80),
                               ca_file=ca_file)
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    try:
        response = await connection.request(method, target, [("host", split.netloc), ("connection", "close"),
                                                             *(headers or [])], body)
        return response.status, await response.read(limit)
    finally:
        await connection.aclose()
