"""The HTTP fast path against h11: whatever it accepts, h11 accepts and reads the same way; what it declines,
the connection hands to h11. And its responses are ones h11 (as a client) reads back exactly."""

from __future__ import annotations

import h11
import pytest
import trio

from kmcp.adapter.protocol import httpfast
from kmcp.adapter.server.http import HttpServer, Request, Responder
from kmcp.adapter.settings import AdapterSettings

SESSION = b"mcp-session-id: 0123456789abcdef0123456789abcdef\r\n"
PLAIN = (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 5\r\n"
         b"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n" + SESSION +
         b"Accept-Encoding: gzip\r\n\r\n")

ACCEPTED = [
    PLAIN,
    b"GET /mcp HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
    b"DELETE /mcp HTTP/1.1\r\nhost: x\r\n" + SESSION + b"\r\n",
    b"GET /health?x=1&y=%20 HTTP/1.1\r\nhost: x\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nx-a: 1\r\nX-A: 2\r\n\r\n",  # joined with ", "
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length:5\r\nx-pad:    spaced  value\t\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 0005\r\nconnection: keep-alive\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nx-empty:\r\nx-latin: caf\xe9\r\n\r\n",
    b"OPTIONS /mcp HTTP/1.1\r\nhost: x\r\norigin: http://localhost\r\n\r\n",
]

DECLINED = [
    b"POST /mcp HTTP/1.0\r\nhost: x\r\ncontent-length: 5\r\n\r\n",  # HTTP/1.0: h11 handles keep-alive rules
    b"HEAD /mcp HTTP/1.1\r\nhost: x\r\n\r\n",  # a HEAD response has no body
    b"POST http://x/mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n",  # absolute-form target
    b"POST /mcp HTTP/1.1\r\ncontent-length: 5\r\n\r\n",  # no Host: h11 answers 400
    b"POST /mcp HTTP/1.1\r\nhost: x\r\nhost: y\r\ncontent-length: 5\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",  # smuggling
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: -5\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 5 5\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: \xd9\xa5\r\n\r\n",  # a non-ASCII digit
    b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 5\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\nx-fold: a\r\n  folded\r\ncontent-length: 5\r\n\r\n",  # obs-fold
    b"POST /mcp HTTP/1.1\r\nhost: x\r\nbad name: y\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\nx-nul: a\x00b\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\nx-ctl: a\x01b\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost: x\r\nx-cr: a\rb\r\n\r\n",
    b"POST  /mcp HTTP/1.1\r\nhost: x\r\n\r\n",
    b"post /mcp HTTP/1.1\r\nhost: x\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nhost : x\r\n\r\n",
    b"BREW /pot HTTP/1.1\r\nhost: x\r\n\r\n",
]


def h11_read(head: bytes, body: bytes = b"") -> tuple[str, str, dict[str, str], bytes]:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(head + body)
    event = connection.next_event()
    assert isinstance(event, h11.Request)
    headers: dict[str, str] = {}
    for raw_name, raw_value in event.headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    data = b""
    while True:
        item = connection.next_event()
        if isinstance(item, h11.EndOfMessage):
            break
        assert isinstance(item, h11.Data)
        data += item.data
    return event.method.decode(), event.target.decode("latin-1"), headers, data


@pytest.mark.parametrize("head", ACCEPTED)
def test_what_the_fast_path_accepts_h11_reads_the_same_way(head: bytes) -> None:
    assert httpfast.find_head_end(head + b"hello") == len(head)
    parsed = httpfast.parse_head(head)
    assert parsed is not None
    body = b"hello"[:parsed.content_length]
    assert (parsed.method, parsed.target, parsed.headers, body) == h11_read(head, body)


@pytest.mark.parametrize("head", DECLINED)
def test_anything_else_is_left_to_h11(head: bytes) -> None:
    assert httpfast.parse_head(head) is None


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\nhost: x\n\n", b"\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n",
                                  b"GET / HTTP/1.1\r\nhost: x\n\r\n"])
def test_bare_lf_and_leading_blank_lines_go_to_h11(data: bytes) -> None:
    assert httpfast.find_head_end(data) == -2


def test_an_incomplete_head_waits() -> None:
    assert httpfast.find_head_end(PLAIN[:-2]) == -1
    assert httpfast.find_head_end(b"") == -1


def h11_client_read(data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[(b"host", b"x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    response = client.next_event()
    assert isinstance(response, h11.Response)
    body = b""
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data)
        body += event.data
    return response.status_code, list(response.headers), body


def test_responses_read_back_through_h11() -> None:
    head, length, close = httpfast.response_head(200, b"OK", [(b"content-type", b"application/json"),
                                                              (b"content-length", b"2")])
    assert (length, close) == (2, False)
    assert h11_client_read(head + b"{}") == (200, [(b"content-type", b"application/json"),
                                                   (b"content-length", b"2")], b"{}")
    head, length, close = httpfast.response_head(200, b"OK", [(b"content-type", b"text/event-stream"),
                                                              (b"connection", b"close")])
    assert (length, close) == (None, True)
    chunks = httpfast.chunk(b"data: 1\n\n") + httpfast.chunk(b"") + httpfast.chunk(b"x" * 300) + httpfast.LAST_CHUNK
    status, headers, body = h11_client_read(head + chunks)
    assert (status, body) == (200, b"data: 1\n\n" + b"x" * 300)
    assert (b"transfer-encoding", b"chunked") in headers


@pytest.mark.parametrize("header", [(b"x-bad", b"a\r\nset-cookie: evil"), (b"x-bad", b"a\x00"),
                                    (b"bad name", b"v"), (b"content-length", b"1x"),
                                    (b"transfer-encoding", b"chunked")])
def test_response_headers_h11_would_refuse_are_refused(header: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError):
        httpfast.response_head(200, b"OK", [header])


async def test_fast_and_h11_exchanges_share_one_connection_in_order(nursery: trio.Nursery) -> None:
    """Pipelined on one keep-alive connection: a plain request (fast path), a chunked one (h11), a plain one
    again and a bad one; each is answered in order, and the bad one ends the connection with h11's 400."""

    async def handler(request: Request, responder: Responder) -> None:
        await responder.respond(200, [(b"content-type", b"text/plain")],
                                f"{request.method} {request.path} {request.query} ".encode() + request.body)

    server = HttpServer(handler, AdapterSettings(host="127.0.0.1", port=0))
    port = await nursery.start(server.serve)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"POST /a?x=1 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\none"
                              b"POST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"
                              b"POST /c HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nthree"
                              b"POST /d HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n")
        client = h11.Connection(h11.CLIENT)
        bodies: list[tuple[int, bytes]] = []
        with trio.fail_after(5):
            while len(bodies) < 4:
                client.send(h11.Request(method="GET", target="/", headers=[(b"host", b"x")]))
                client.send(h11.EndOfMessage())
                status, body = 0, b""
                while True:
                    event = client.next_event()
                    if event is h11.NEED_DATA:
                        client.receive_data(await stream.receive_some(4096))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                bodies.append((status, body))
                if status == 400:
                    break
                client.start_next_cycle()
            assert await stream.receive_some(4096) == b""  # closed after the 400
    assert bodies[:3] == [(200, b"POST /a {'x': '1'} one"), (200, b"POST /b {} two"), (200, b"POST /c {} three")]
    assert bodies[3][0] == 400


RESPONSES_ACCEPTED = [
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: abc\r\ncontent-length: 5\r\n\r\n",
    b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 404 \r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx-pad:   spaced  value\t\r\nx-latin: caf\xe9\r\nx-empty:\r\ncontent-length: 0005\r\n\r\n",
]

RESPONSES_DECLINED = [
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n",  # a stream
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",  # no framing: read until close
    b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx-fold: a\r\n  folded\r\ncontent-length: 5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx-nul: a\x00b\r\ncontent-length: 5\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\ncontent-length: 5\r\n\r\n",
]


def h11_read_response(head: bytes, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="POST", target="/mcp", headers=[("host", "x"), ("content-length", "0")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(head + body)
    event = connection.next_event()
    assert isinstance(event, h11.Response)
    data = b""
    while isinstance(item := connection.next_event(), h11.Data):
        data += item.data
    assert isinstance(item, h11.EndOfMessage)
    return event.status_code, [(bytes(name), bytes(value)) for name, value in event.headers], data


@pytest.mark.parametrize("head", RESPONSES_ACCEPTED)
def test_a_response_head_the_forwarder_reads_itself_reads_as_h11_reads_it(head: bytes) -> None:
    parsed = httpfast.parse_response_head(head)
    assert parsed is not None
    body = b"hello"[:parsed.content_length]
    status, headers, data = h11_read_response(head, body)
    assert (parsed.status, parsed.headers, body) == (status, headers, data)
    assert parsed.close == (b"close" in dict(headers).get(b"connection", b"").lower())


@pytest.mark.parametrize("head", RESPONSES_DECLINED)
def test_any_other_response_is_left_to_h11(head: bytes) -> None:
    assert httpfast.parse_response_head(head) is None


def test_a_forwarded_request_reads_back_through_h11_as_sent() -> None:
    headers = [("host", "10.0.0.7:3000"), ("mcp-session-id", "abc"), ("x-latin", "caf\xe9"), ("x-kmcp-forwarded", "1")]
    data = httpfast.request_bytes("POST", "/mcp?x=1", headers, b'{"a":1}')
    assert h11_read(data) == ("POST", "/mcp?x=1", {**dict(headers), "content-length": "7"}, b'{"a":1}')
