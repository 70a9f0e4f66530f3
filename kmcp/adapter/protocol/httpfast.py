"""A strict, sans-IO HTTP/1.1 fast path for the common request, beside h11.

Every request costs h11 a regex pass per header, several event objects and a state machine walk; on the
adapter's hot path (``POST /mcp`` with a small JSON body, answered with a small JSON body) that was a large
share of the adapter's CPU. ``parse_head`` accepts only a plain subset of HTTP/1.1 that it can check in one
regular-expression match: an origin-form target, ``HTTP/1.1``, one ``Host``, no ``Transfer-Encoding``,
``Expect``, ``Upgrade`` or ``Connection`` other than keep-alive, at most one decimal ``Content-Length``, no
obsolete line folding, CRLF line ends. Anything else returns None and the connection hands the bytes to h11,
which stays the parser and state machine for every request outside that subset (and decides how to reject
bad ones). Whatever the fast path accepts, h11 accepts too and reads the same way (tests/adapter/
test_httpfast.py checks that against h11 on a corpus of requests).

The response side frames what the handler writes: a status line and headers (refusing CR, LF and NUL as
h11 does), then the body by Content-Length when the handler set one, else chunked.
"""

from __future__ import annotations

import re

import msgspec

# RFC 9110 token; a field value of visible bytes (and obs-text) with single inner spaces or tabs.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?"
_HEAD = re.compile(
    rb"(GET|POST|DELETE|PUT|PATCH|OPTIONS) (/[\x21-\x7e]*) HTTP/1\.1\r\n"
    rb"((?:" + _TOKEN + rb":[ \t]*" + _VALUE + rb"[ \t]*\r\n)*)\r\n")
# Each field of a head ``_HEAD`` accepted, over its latin-1 text: the name, and the value with any trailing
# whitespace (the syntax is checked already, so this only splits). ``findall`` yields the pairs in C, where
# splitting and stripping each line in Python cost twice the validating match.
_FIELD = re.compile("([^:]+):[ \t]*([^\r]*)\r\n")
_RESPONSE_FIELDS = re.compile(rb"(?:" + _TOKEN + rb": [^\r\n\x00]*\r\n)*")
_MAX_LENGTH_DIGITS = 18


class Head(msgspec.Struct, frozen=True, gc=False):
    """A request head the fast path accepted."""

    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    content_length: int


def find_head_end(buffer: bytes | bytearray) -> int:
    """The index just past the head's blank line; -1 while it is incomplete; -2 when the bytes are not for the
    fast path (a bare-LF line end, or a leading empty line) and h11 must read them."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if b"\n\n" in buffer or b"\n\r\n" in buffer or buffer.startswith((b"\r", b"\n")):
            return -2
        return -1
    if buffer.startswith((b"\r", b"\n")):
        return -2
    return end + 4


def parse_head(head: bytes) -> Head | None:
    """Parse a complete head (through its blank line), or None if it is outside the fast path's subset."""
    match = _HEAD.fullmatch(head)
    if match is None:
        return None
    headers: dict[str, str] = {}
    # Names are ASCII tokens; values keep obs-text bytes as h11 does. The match above checked the block's syntax.
    for name, value in _FIELD.findall(match.group(3).decode("latin-1")):
        name = name.lower()
        if value[-1:] in (" ", "\t"):
            value = value.rstrip(" \t")
        if name in headers:
            if name in ("host", "content-length"):
                return None  # h11 rejects (or must judge) a repeated Host / Content-Length
            headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value
    if "host" not in headers or "transfer-encoding" in headers or "expect" in headers or "upgrade" in headers:
        return None
    connection = headers.get("connection")
    if connection is not None and connection.lower() != "keep-alive":
        return None
    length = headers.get("content-length", "0")
    if not length.isdigit() or not length.isascii() or len(length) > _MAX_LENGTH_DIGITS:
        return None
    return Head(match.group(1).decode("ascii"), match.group(2).decode("ascii"), headers, int(length))


_RESPONSE_HEAD = re.compile(
    rb"HTTP/1\.1 ([2-5][0-9][0-9]) [\x20-\x7e\x80-\xff]*\r\n"
    rb"((?:" + _TOKEN + rb":[ \t]*" + _VALUE + rb"[ \t]*\r\n)*)\r\n")


class ResponseHead(msgspec.Struct, frozen=True, gc=False):
    """A response head the fast path accepted (what another adapter replica answers a forwarded request with)."""

    status: int
    headers: list[tuple[bytes, bytes]]  # as received (names lower-cased), in order
    content_length: int
    close: bool  # the server asked to close the connection after this response


def parse_response_head(head: bytes) -> ResponseHead | None:
    """Parse a complete response head, or None when it is outside the subset this client reads itself: a final
    (2xx-5xx) ``HTTP/1.1`` response framed by one decimal Content-Length and no Transfer-Encoding. Anything
    else (a chunked SSE stream, say) is for h11."""
    match = _RESPONSE_HEAD.fullmatch(head)
    if match is None:
        return None
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    close = False
    for name_text, value_text in _FIELD.findall(match.group(2).decode("latin-1")):
        name, value = name_text.lower().encode("latin-1"), value_text.rstrip(" \t").encode("latin-1")
        if name == b"content-length":
            if length is not None or not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            return None
        elif name == b"connection" and b"close" in value.lower():
            close = True
        headers.append((name, value))
    if length is None:
        return None
    return ResponseHead(int(match.group(1)), headers, length, close)


def request_bytes(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """A request as bytes, framed by Content-Length (which must not be in ``headers``). The names and values
    must come from a request one of the two parsers accepted (no CR, LF or NUL in them)."""
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"{method} {target} HTTP/1.1\r\n{fields}content-length: {len(body)}\r\n\r\n".encode("latin-1") + body


def response_head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, int | None, bool]:
    """The bytes of a response head, the body length it declares (None: chunked, which is added), and whether
    it asks to close the connection. Raises ValueError for a header h11 would refuse to send."""
    parts = []
    length: int | None = None
    close = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            if length is not None or not value.isdigit():
                raise ValueError("bad or repeated content-length in a response")
            length = int(value)
        elif lower == b"transfer-encoding":
            raise ValueError("the fast path frames bodies itself")
        elif lower == b"connection" and b"close" in value.lower():
            close = True
        parts.append(name + b": " + value + b"\r\n")
    if length is None:
        parts.append(b"transfer-encoding: chunked\r\n")
    fields = b"".join(parts)
    if _RESPONSE_FIELDS.fullmatch(fields) is None or fields.count(b"\n") != len(parts):  # (a CRLF in a value)
        raise ValueError("a response header is not valid HTTP (bad name, or CR, LF or NUL in a value)")
    return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, fields), length, close


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (nothing for empty data: an empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"
