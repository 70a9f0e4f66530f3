"""The few calls auth makes (TokenReview, SubjectAccessReview, JWKS), on the adapter's HTTP client.

One request per connection, bounded body, a hard timeout, TLS verified against a CA file (or the system store).
Plain ``http://`` is allowed only to loopback addresses (tests, a local JWKS)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import trio

from kmcp.adapter.server import client

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
    split = urlsplit(url)
    host = split.hostname or ""
    if not (split.scheme == "https" or (split.scheme == "http" and host in LOOPBACK)):
        raise FetchError(f"{split.scheme}://{host}: only https (or http to loopback) is allowed")
    try:
        with trio.fail_after(FETCH_TIMEOUT):
            status, data = await client.fetch(url, method=method, body=body, limit=MAX_RESPONSE_BYTES,
                                              headers=[("accept", "application/json"), *(headers or [])],
                                              ca_file=ca_file)
    except trio.TooSlowError:
        raise FetchError(f"{split.netloc}: timed out") from None
    except client.ERRORS as error:
        raise FetchError(f"{split.netloc}: {error}") from None
    return FetchResponse(status, data)
