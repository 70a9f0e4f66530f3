"""The sans-IO server connection driven with bytes, as h11's own tests drive h11: no sockets, no clock."""

from __future__ import annotations

from kmcp.adapter.protocol import http11
from kmcp.adapter.protocol.http11 import CLOSED, NEED_DATA, Phase, Reject, Request, ServerConnection

POST = b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"


def connection(max_body: int = 1024) -> ServerConnection:
    return ServerConnection(max_header_bytes=4096, max_body_bytes=max_body)


def test_a_request_in_pieces_says_which_part_it_waits_for() -> None:
    conn = connection()
    conn.receive_data(POST[:10])
    assert (conn.next_event(), conn.phase) == (NEED_DATA, Phase.HEAD)
    conn.receive_data(POST[10:-3])
    assert (conn.next_event(), conn.phase, conn.body_received) == (NEED_DATA, Phase.BODY, 2)
    conn.receive_data(POST[-3:])
    request = conn.next_event()
    assert isinstance(request, Request)
    assert (request.method, request.path, request.body, request.headers["host"]) == ("POST", "/mcp", b"hello", "x")
    assert conn.phase is Phase.HEAD and not conn.buffer


def test_pipelined_requests_come_out_one_at_a_time() -> None:
    conn = connection()
    conn.receive_data(POST + b"GET /health?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    first = conn.next_event()
    assert isinstance(first, Request) and first.body == b"hello"
    assert conn.send((200, [(b"content-length", b"2")]), b"ok", end=True) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert conn.start_next_cycle()
    second = conn.next_event()
    assert isinstance(second, Request) and (second.path, second.query) == ("/health", {"x": "1"})
    assert conn.next_event() is NEED_DATA


def test_a_chunked_body_is_read_by_h11_and_the_next_request_goes_back_to_the_fast_path() -> None:
    conn = connection()
    conn.receive_data(b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    assert (conn.next_event(), conn.phase) == (NEED_DATA, Phase.BODY)
    conn.receive_data(b"lo\r\n0\r\n\r\n" + POST)
    request = conn.next_event()
    assert isinstance(request, Request) and request.body == b"hello"
    streamed = conn.send((200, [(b"content-type", b"text/event-stream")]), b"data: 1\n\n")
    assert b"transfer-encoding: chunked" in streamed.lower() and streamed.endswith(b"9\r\ndata: 1\n\n\r\n")
    assert conn.send(None, end=True) == b"0\r\n\r\n"
    assert conn.start_next_cycle() and conn.buffer == bytearray(POST)  # h11's unread bytes came back
    assert isinstance(conn.next_event(), Request)


def test_expect_continue_is_answered_before_the_body_and_forgotten_once_it_is_in() -> None:
    conn = connection()
    conn.receive_data(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.take_outgoing().startswith(b"HTTP/1.1 100 ")
    conn.receive_data(b"hello")
    assert isinstance(conn.next_event(), Request) and conn.outgoing == b""


def test_bad_requests_are_rejected_with_the_status_the_spec_names() -> None:
    cases = {
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n": 400,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n": 413,
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n": 400,
        b"GET / HTTP/1.1\r\n\r\n": 400,  # no Host
    }
    for data, status in cases.items():
        conn = connection()
        conn.receive_data(data)
        event = conn.next_event()
        assert isinstance(event, Reject) and event.status == status, (data, event)
        answer = conn.error(event.status, event.message)
        assert answer.startswith(b"HTTP/1.1 %d " % status) and b"connection: close" in answer


def test_a_chunked_body_past_the_limit_is_rejected_while_it_arrives() -> None:
    conn = connection(max_body=8)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n")
    event = conn.next_event()
    assert isinstance(event, Reject) and event.status == 413


def test_the_end_of_the_stream() -> None:
    between = connection()
    between.receive_data(b"")
    assert between.next_event() is CLOSED
    mid_head = connection()
    mid_head.receive_data(b"GET / HT")
    mid_head.receive_data(b"")
    assert mid_head.next_event() is CLOSED
    mid_chunked = connection()
    mid_chunked.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe")
    assert mid_chunked.next_event() is NEED_DATA
    mid_chunked.receive_data(b"")
    assert isinstance(mid_chunked.next_event(), Reject | http11.Event)


def test_connection_close_in_a_response_ends_the_connection() -> None:
    conn = connection()
    conn.receive_data(POST)
    assert isinstance(conn.next_event(), Request)
    conn.send((200, [(b"content-length", b"0"), (b"connection", b"close")]), end=True)
    assert not conn.start_next_cycle()


def test_switching_protocols_hands_over_what_followed_the_head() -> None:
    conn = connection()
    conn.receive_data(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00")
    request = conn.next_event()
    assert isinstance(request, Request) and conn.upgrade
    head, leftover = conn.switch_protocols([(b"upgrade", b"websocket")])
    assert head == b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
    assert leftover == b"\x81\x00"
