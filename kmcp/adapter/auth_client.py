"""A tiny HTTPS client on trio + h11 for the few calls auth makes (TokenReview, SubjectAccessReview, JWKS).

Not a general client: one request per connection, bounded body, a hard timeout, TLS verified against a CA file (or
the system store). Plain ``http://`` is allowed only to loopback addresses (tests, a local JWKS)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

FETCH_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class FetchError(Exception):
    """The backend could not be reached or answered nonsense: not the client's fault (503, not 401)."""


@dataclass(frozen=True)
class FetchResponse:
    status: int
    body: bytes


async def fetch(url: str, *, method: str = "GET", body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                ca_file: str | None = None) -> FetchResponse:
    try:
        with trio.fail_after(FETCH_TIMEOUT):
            return await _fetch(url, method, body, headers or [], ca_file)
    except trio.TooSlowError:
        raise FetchError(f"{urlsplit(url).netloc}: timed out") from None
    except (OSError, ssl.SSLError, trio.BrokenResourceError, h11.ProtocolError) as error:
        raise FetchError(f"{urlsplit(url).netloc}: {error}") from None


async def _fetch(url: str, method: str, body: bytes, headers: list[tuple[str, str]],
                 ca_file: str | None) -> FetchResponse:
    split = urlsplit(url)
    host = split.hostname or ""
    if split.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(host, split.port or 443, ssl_context=context)
    elif split.scheme == "http" and host in LOOPBACK:
        stream = await trio.open_tcp_stream(host, split.port or 80)
    else:
        raise FetchError(f"{split.scheme}://{host}: only https (or http to loopback) is allowed")
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
    all_headers = [("host", split.netloc), ("connection", "close"), ("content-length", str(len(body))),
                   ("accept", "application/json"), *headers]
    async with stream:
        data = connection.send(h11.Request(method=method, target=target, headers=all_headers))
        data += connection.send(h11.Data(data=body)) if body else b""
        data += connection.send(h11.EndOfMessage())
        await stream.send_all(data)
        status = 0
        chunks: list[bytes] = []
        size = 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_RESPONSE_BYTES:
                    raise FetchError(f"{split.netloc}: response too large")
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return FetchResponse(status, b"".join(chunks))
