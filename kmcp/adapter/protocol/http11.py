"""One HTTP/1.1 server connection, sans-IO: bytes in, requests out; responses in, bytes out.

Like ``h11.Connection`` (whose ``receive_data`` / ``next_event`` / ``send`` shape it keeps) but with two parsers
behind it: the common, plain request is read by :mod:`~kmcp.adapter.protocol.httpfast` straight from the buffer,
anything outside its subset by a fresh ``h11.Connection`` for that one exchange, which then decides how to reject
a bad request. The caller owns the socket and every clock: it feeds what it reads, asks for the next event,
and sends the bytes the framing methods return. ``phase`` and ``body_received`` tell it which deadline applies
while an event needs more data (the head's, or the body's).
"""

from __future__ import annotations

import enum
from urllib.parse import parse_qsl, urlsplit

import h11
import msgspec

from kmcp.adapter.protocol import httpfast

Headers = list[tuple[bytes, bytes]]

REASONS = {200: b"OK", 202: b"Accepted", 204: b"No Content", 400: b"Bad Request", 401: b"Unauthorized",
           403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed", 406: b"Not Acceptable",
           408: b"Request Timeout", 409: b"Conflict", 413: b"Content Too Large", 415: b"Unsupported Media Type",
           426: b"Upgrade Required", 500: b"Internal Server Error", 503: b"Service Unavailable"}


class Request(msgspec.Struct, gc=False):
    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    http_version: bytes = b"1.1"

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


class Reject(msgspec.Struct, frozen=True, gc=False):
    """The request cannot be served: answer ``error(status, message)`` and close the connection."""

    status: int
    message: str


class Event(enum.Enum):
    NEED_DATA = "need data"  # feed more bytes (or the end of the stream) first
    CLOSED = "closed"  # the client ended the connection between requests (or mid-head): close without a word


class Phase(enum.Enum):
    HEAD = "head"  # waiting for (the rest of) a request head
    BODY = "body"  # the head is in; the body is arriving


NEED_DATA = Event.NEED_DATA
CLOSED = Event.CLOSED


class ServerConnection:
    """The parsing and framing state of one client connection (one request at a time; pipelined requests wait
    in ``buffer``)."""

    def __init__(self, *, max_header_bytes: int, max_body_bytes: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.buffer = bytearray()  # received bytes not yet given to a request (or to h11)
        self.eof = False
        self.phase = Phase.HEAD
        self.body_received = 0  # body bytes in so far, while ``phase`` is BODY
        self.upgrade = False  # the request being answered asked to switch protocols (h11 read it)
        self.outgoing = b""  # bytes to send before waiting for more (an interim 100 Continue)
        self._h11: h11.Connection | None = None  # only while an exchange runs on the h11 path
        self._h11_eof = False  # h11 was told about the end of the stream
        self._head: h11.Request | None = None  # the h11 path's request head, once read
        self._chunks: list[bytes] = []
        # Fast-path framing of the current response.
        self._chunked = False
        self._left = 0
        self._close_after = False

    # -- receiving ---------------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; ``b""`` for the end of the stream."""
        if data:
            self.buffer += data
        else:
            self.eof = True

    def next_event(self) -> Request | Reject | Event:
        """The next complete request, a ``Reject`` to answer, NEED_DATA or CLOSED."""
        if self._h11 is not None:
            return self._next_h11()
        buffer = self.buffer
        if not buffer:
            return CLOSED if self.eof else NEED_DATA
        head_end = httpfast.find_head_end(buffer)
        if head_end == -1:
            if len(buffer) > self.max_header_bytes:
                return self._fall_back()  # h11 answers 431
            self.phase = Phase.HEAD
            return CLOSED if self.eof else NEED_DATA
        if head_end == -2 or head_end > self.max_header_bytes:
            return self._fall_back()
        head = httpfast.parse_head(bytes(buffer[:head_end]))
        if head is None or head.content_length > self.max_body_bytes:
            return self._fall_back()
        size = head_end + head.content_length
        if len(buffer) < size:
            self.phase, self.body_received = Phase.BODY, len(buffer) - head_end
            return CLOSED if self.eof else NEED_DATA
        data = bytes(buffer[:size])
        del buffer[:size]
        self.phase, self._close_after = Phase.HEAD, False
        return _request(head.method, head.target, head.headers, data[head_end:], b"1.1")

    def _fall_back(self) -> Request | Reject | Event:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header_bytes)
        self._h11_eof = False
        self._head = None
        self._chunks = []
        self.phase, self.body_received = Phase.HEAD, 0
        return self._next_h11()

    def _next_h11(self) -> Request | Reject | Event:
        assert self._h11 is not None
        try:
            while True:
                event = self._h11.next_event()
                if event is h11.NEED_DATA:
                    if self.buffer:
                        self._h11.receive_data(bytes(self.buffer))
                        self.buffer.clear()
                    elif self.eof and not self._h11_eof:
                        self._h11_eof = True
                        self._h11.receive_data(b"")
                    else:
                        return NEED_DATA
                elif isinstance(event, h11.Request):
                    if (reject := self._start_body(event)) is not None:
                        return reject
                elif isinstance(event, h11.Data):
                    self.body_received += len(event.data)
                    if self.body_received > self.max_body_bytes:
                        return Reject(413, f"request body larger than {self.max_body_bytes} bytes")
                    self._chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage) and self._head is not None:
                    return self._h11_request(self._head)
                else:  # ConnectionClosed (or PAUSED, which cannot come before EndOfMessage): nothing to answer
                    return CLOSED
        except h11.RemoteProtocolError as error:
            return Reject(error.error_status_hint, f"bad request: {error}")

    def _start_body(self, head: h11.Request) -> Reject | None:
        assert self._h11 is not None
        names = {name.lower() for name, _ in head.headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            # Two framings: a proxy in front may have read the other one (request smuggling). RFC 9112 §6.1 lets a
            # server refuse such a request, and it must close the connection either way.
            return Reject(400, "bad request: both Content-Length and Transfer-Encoding")
        length = next((value for name, value in head.headers if name == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return Reject(413, f"request body larger than {self.max_body_bytes} bytes")
        if self._h11.they_are_waiting_for_100_continue:
            self.outgoing += self._h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
        self._head = head
        self.phase = Phase.BODY
        return None

    def _h11_request(self, head: h11.Request) -> Request:
        headers: dict[str, str] = {}
        for raw_name, raw_value in head.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.upgrade = "upgrade" in headers
        self.phase, self.outgoing = Phase.HEAD, b""  # (a 100 Continue not sent yet is moot: the body is in)
        return _request(head.method.decode("ascii"), head.target.decode("latin-1"), headers, b"".join(self._chunks),
                        head.http_version)

    def take_outgoing(self) -> bytes:
        out, self.outgoing = self.outgoing, b""
        return out

    # -- sending -----------------------------------------------------------------------------------------------

    def send(self, head: tuple[int, Headers] | None, data: bytes = b"", *, end: bool = False) -> bytes:
        """The bytes of a response's head (if given), a part of its body, and its end (if ``end``)."""
        if self._h11 is None:
            return self._frame(head, data, end)
        parts = []
        if head is not None:
            status, headers = head
            parts.append(self._h11.send(h11.Response(status_code=status, headers=headers,
                                                     reason=REASONS.get(status, b""))))
        if data:
            parts.append(self._h11.send(h11.Data(data=data)))
        if end:
            parts.append(self._h11.send(h11.EndOfMessage()))
        return b"".join(p for p in parts if p)

    def _frame(self, head: tuple[int, Headers] | None, data: bytes, end: bool) -> bytes:
        out = b""
        if head is not None:
            status, headers = head
            out, length, close = httpfast.response_head(status, REASONS.get(status, b""), headers)
            self._close_after = self._close_after or close
            self._chunked = length is None
            self._left = length or 0
        if self._chunked:
            out += httpfast.chunk(data)
            if end:
                out += httpfast.LAST_CHUNK
        else:
            if len(data) > self._left:
                raise RuntimeError("response body longer than its content-length")
            self._left -= len(data)
            out += data
            if end and self._left:
                raise RuntimeError("response body shorter than its content-length")
        return out

    def error(self, status: int, message: str) -> bytes:
        """A plain-text error answer that closes the connection; empty when a response has begun already."""
        body = message.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        if self._h11 is None:
            return httpfast.response_head(status, REASONS.get(status, b""), headers)[0] + body
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return b""
        try:
            return self.send((status, headers), body, end=True)
        except h11.LocalProtocolError:
            return b""

    def discard_received(self) -> int:
        """Drop what the client sent that no request will use (after an error answer); how many bytes."""
        dropped = len(self.buffer)
        self.buffer.clear()
        return dropped

    def start_next_cycle(self) -> bool:
        """After a complete response: whether the connection can carry another request (the client finished
        its body and neither side asked to close). The bytes h11 did not use go back to ``buffer``."""
        if self._h11 is None:
            return not self._close_after
        if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            return False
        self._h11.start_next_cycle()
        self.buffer[:0] = self._h11.trailing_data[0]
        self._h11 = None
        self.upgrade = False
        return True

    def switch_protocols(self, headers: Headers) -> tuple[bytes, bytes]:
        """A 101 answer's bytes, and what the client sent after its request head (the new protocol's first
        bytes: frames in the same packet as the upgrade request). HTTP is done on this connection afterwards."""
        pending = self._h11.trailing_data[0] if self._h11 is not None else b""
        leftover = pending + bytes(self.buffer)
        self.buffer.clear()
        head = b"".join([b"HTTP/1.1 101 Switching Protocols\r\n",
                         *(name + b": " + value + b"\r\n" for name, value in headers), b"\r\n"])
        return head, leftover


def _request(method: str, target: str, headers: dict[str, str], body: bytes, http_version: bytes) -> Request:
    if "?" in target or "#" in target or not target.startswith("/"):
        split = urlsplit(target)
        return Request(method=method, target=target, path=split.path or "/", query=dict(parse_qsl(split.query)),
                       headers=headers, body=body, http_version=http_version)
    return Request(method=method, target=target, path=target, query={}, headers=headers, body=body,
                   http_version=http_version)
