"""A lean HTTP/1.1 client for the Kubernetes API on trio: what :mod:`kmcp.kube` sends, and nothing else.

Why not httpx: at N=2,000 MCPServers py-spy put about 45% of the controller's CPU in httpx, httpcore and h11 -- the
request and response models, URL parsing, header validation, the connection pool's bookkeeping and anyio's layers,
per request. The apiserver needs none of it: one host, keep-alive HTTP/1.1 over TLS, JSON bodies with a
Content-Length or chunked, watch streams of newline-separated JSON. This client writes a request in one
``send_all``, parses the status line and headers itself and reads the body by Content-Length or chunks.

Connections are kept alive and reused (most recently used first). A pooled connection the server has closed is
noticed before it is used (it polls readable while idle); a request that fails on a reused connection before any
byte of the answer came is sent once more on a new one, as Go's transport does. Proxies are not supported:
:mod:`kmcp.kube` uses httpx when the environment names one.

Errors are this module's: :class:`ConnectError` (no connection: refused, no route, TLS handshake),
:class:`Timeout` and :class:`ConnectionBroken` (the connection failed or the answer was not HTTP).
"""

from __future__ import annotations

import select
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import trio

CHUNK = 65536
MAX_HEAD = 1 << 20
NO_BODY_STATUS = frozenset({204, 304})


class HttpError(Exception):
    """The request got no (complete) answer."""


class ConnectError(HttpError):
    """The connection could not be opened."""


class Timeout(HttpError):
    """No answer in time."""


class ConnectionBroken(HttpError):
    """The connection closed or broke mid-request, or the answer was not HTTP/1.1."""


class _Closed(ConnectionBroken):
    """The server closed the connection before the answer's first byte (a reused connection: retry once)."""


class _Connection:
    __slots__ = ("buffer", "fd", "read_timeout", "received", "stream")

    def __init__(self, stream: trio.abc.Stream, fd: int) -> None:
        self.stream = stream
        self.fd = fd
        self.buffer = bytearray()
        self.received = 0  # bytes of the current answer
        self.read_timeout: float | None = None  # per read (a watch); a plain request has one deadline instead

    def stale(self) -> bool:
        """Readable while idle: the server closed it (or sent what no request asked for). Either way, unusable."""
        poller = select.poll()
        try:
            poller.register(self.fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    async def fill(self, *, eof_ok: bool = False) -> bool:
        """Read more into the buffer; False at the end of the stream when ``eof_ok``."""
        try:
            if self.read_timeout is None:
                data = await self.stream.receive_some(CHUNK)
            else:
                with trio.fail_after(self.read_timeout):
                    data = await self.stream.receive_some(CHUNK)
        except trio.TooSlowError:
            raise Timeout(f"no data within {self.read_timeout:g} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError) as error:
            if self.received == 0:
                raise _Closed(f"connection closed: {error.__cause__ or error}") from error
            raise ConnectionBroken(f"connection broken: {error.__cause__ or error}") from error
        if not data:
            if eof_ok:
                return False
            if self.received == 0:
                raise _Closed("server closed the connection")
            raise ConnectionBroken("server closed the connection mid-answer")
        self.received += len(data)
        self.buffer += data
        return True

    def take(self, n: int) -> bytes:
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise ConnectionBroken("answer line too long")
            await self.fill()
        out = self.take(end)
        del self.buffer[:2]
        return out

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self.fill()
        return self.take(n)

    async def head(self) -> tuple[int, dict[str, str]]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise ConnectionBroken("answer head too long")
            await self.fill()
        lines = self.take(end).decode("latin-1").split("\r\n")
        del self.buffer[:4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ConnectionBroken(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        status = int(parts[1])
        if 100 <= status < 200:  # 100 Continue and friends: the real answer follows
            return await self.head()
        return status, headers


class Response:
    """An answer whose body is read on demand: :meth:`read` all of it, or :meth:`lines` as they come."""

    def __init__(self, connection: _Connection, status: int, headers: dict[str, str], method: str) -> None:
        self.status = status
        self.headers = headers
        self._connection = connection
        self.keep_alive = headers.get("connection", "").lower() != "close"
        self.complete = False
        self._left = 0
        if method == "HEAD" or status in NO_BODY_STATUS:
            self._mode = "none"
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode = "chunked"
        elif "content-length" in headers:
            self._mode, self._left = "length", int(headers["content-length"])
        else:
            self._mode, self.keep_alive = "eof", False

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    async def _upto(self, n: int) -> bytes:
        """Up to ``n`` bytes of the body: what is buffered, else what the next read brings."""
        c = self._connection
        if not c.buffer:
            await c.fill()
        return c.take(min(n, len(c.buffer)))

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives."""
        c = self._connection
        if self._mode == "length":
            while self._left > 0:
                data = await self._upto(self._left)
                self._left -= len(data)
                yield data
        elif self._mode == "chunked":
            while True:
                size_line = await c.line()
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ConnectionBroken(f"bad chunk size {size_line[:20]!r}") from None
                if size == 0:
                    while await c.line():  # trailers, until the empty line
                        pass
                    break
                while size > 0:
                    data = await self._upto(size)
                    size -= len(data)
                    yield data
                if await c.exactly(2) != b"\r\n":
                    raise ConnectionBroken("chunk not followed by CRLF")
        elif self._mode == "eof":
            while c.buffer or await c.fill(eof_ok=True):
                yield c.take(len(c.buffer))
        self.complete = True

    async def read(self) -> bytes:
        if self._mode == "length":
            data = await self._connection.exactly(self._left)
            self._left, self.complete = 0, True
            return data
        return b"".join([piece async for piece in self.chunks()])

    async def lines(self) -> AsyncIterator[bytes]:
        """The body split at newlines (a watch stream: one JSON event per line), as lines complete."""
        pending = b""
        async for piece in self.chunks():
            pending += piece
            if b"\n" not in piece:
                continue
            *done, pending = pending.split(b"\n")
            for line in done:
                yield line
        if pending:
            yield pending


class Client:
    """Keep-alive HTTP/1.1 to one server (``https://host:port[/prefix]``)."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext | None, *, timeout: float = 30.0,
                 headers: Mapping[str, str] | None = None, max_idle: int = 32) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.tls = ssl_context if url.scheme == "https" else None
        if url.scheme == "https" and self.tls is None:
            self.tls = ssl.create_default_context()
        self.prefix = url.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = self.port == (443 if url.scheme == "https" else 80)
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self.opened = 0  # connections opened, for tests and the curious

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await trio.aclose_forcefully(connection.stream)

    async def _open(self) -> _Connection:
        try:
            tcp = await trio.open_tcp_stream(self.host, self.port)
        except OSError as error:
            raise ConnectError(f"could not connect to {self.host}:{self.port}: {error}") from error
        fd = tcp.socket.fileno()
        stream: trio.abc.Stream = tcp
        if self.tls is not None:
            tls = trio.SSLStream(tcp, self.tls, server_hostname=self.host, https_compatible=True)
            try:
                await tls.do_handshake()
            except (trio.BrokenResourceError, OSError, ssl.SSLError) as error:
                await trio.aclose_forcefully(tcp)
                cause = error.__cause__ or error
                raise ConnectError(f"TLS handshake with {self.host}:{self.port} failed: {cause}") from error
            stream = tls
        self.opened += 1
        return _Connection(stream, fd)

    async def _connection(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if not connection.stale():
                return connection, True
            await trio.aclose_forcefully(connection.stream)
        return await self._open(), False

    def _release(self, connection: _Connection, response: Response) -> None:
        if response.keep_alive and response.complete and not connection.buffer and len(self._idle) < self.max_idle:
            connection.read_timeout = None
            self._idle.append(connection)
        else:
            _close_now(connection)

    def _message(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
        lines = [f"{method} {self.prefix}{target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")

    async def _start(self, method: str, target: str, headers: Mapping[str, str],
                     body: bytes | None) -> tuple[_Connection, Response]:
        """Send the request and read the answer's head, on a pooled connection when one is open (retried once on
        a new one if that pooled connection turns out closed)."""
        message = self._message(method, target, headers, body)
        for attempt in (0, 1):
            connection, reused = await self._connection()
            try:
                connection.received = 0
                try:
                    await connection.stream.send_all(message)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError) as error:
                    raise _Closed(f"connection closed: {error}") from error
                status, response_headers = await connection.head()
            except _Closed:
                _close_now(connection)
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                _close_now(connection)
                raise
            return connection, Response(connection, status, response_headers, method)
        raise AssertionError("unreachable")

    async def request(self, method: str, target: str, *, headers: Mapping[str, str] | None = None,
                      body: bytes | None = None, within: float | None = None) -> tuple[int, bytes]:
        """(status, body) of one request, all of it ``within`` seconds (default: the client's timeout); ``target``
        is the path and query."""
        limit = self.timeout if within is None else within
        with trio.move_on_after(limit):
            connection, response = await self._start(method, target, headers or {}, body)
            try:
                data = await response.read()
            except BaseException:
                _close_now(connection)
                raise
            self._release(connection, response)
            return response.status, data
        raise Timeout(f"{method} {target}: no answer within {limit:g} s")

    @asynccontextmanager
    async def stream(self, method: str, target: str, *, headers: Mapping[str, str] | None = None,
                     within: float | None = None, read_timeout: float | None = None) -> AsyncIterator[Response]:
        """An answer whose body the caller reads (a watch): its head ``within`` seconds, then each read of the body
        within ``read_timeout``. The connection goes back to the pool only when the body was read to its end."""
        limit = self.timeout if within is None else within
        started: tuple[_Connection, Response] | None = None
        with trio.move_on_after(limit):
            started = await self._start(method, target, headers or {}, None)
        if started is None:
            raise Timeout(f"{method} {target}: no answer within {limit:g} s")
        connection, response = started
        connection.read_timeout = read_timeout
        try:
            yield response
        except BaseException:
            _close_now(connection)
            raise
        if response.complete:
            self._release(connection, response)
        else:
            _close_now(connection)


def _close_now(connection: _Connection) -> None:
    """Drop a connection without the TLS goodbye (nothing waits on it): close the socket under the stream."""
    stream: Any = connection.stream
    transport = getattr(stream, "transport_stream", stream)
    with suppress(AttributeError, OSError):
        transport.socket.close()


def query(params: Mapping[str, Any] | None) -> str:
    return "?" + urllib.parse.urlencode(params) if params else ""
