"""Faults a black-box probe found (issue 18): bad input from a client or a child never ends the adapter, and
every request still gets an answer. Each test sends the exact bytes the probe sent."""

from __future__ import annotations

import base64

import msgspec
import pytest
import trio

from kmcp.adapter.protocol import jsonrpc
from tests.adapter.rawhttp import ACCEPT_BOTH, Adapter, Response, running_adapter

JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}


def call(name: str, arguments: dict[str, object] | None = None, id: int = 1, **params: object) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                "params": {"name": name, "arguments": arguments or {}, **params}})


async def post(adapter: Adapter, session: str, body: bytes) -> Response:
    return await adapter.request("POST", "/mcp", body, {**JSON_HEADERS, "mcp-session-id": session})


def text_of(response: Response) -> str:
    result = response.json()["result"]
    assert isinstance(result, dict), response
    return str(result["content"][0]["text"])


def error_of(response: Response) -> dict[str, object]:
    error = response.json()["error"]
    assert isinstance(error, dict), response
    return error


async def still_serves(adapter: Adapter, session: str) -> None:
    response = await post(adapter, session, call("echo", {"text": "still here"}, id=999))
    assert response.status == 200, response
    assert text_of(response) == "still here"


# -- a child's "id": null error ----------------------------------------------------------------------------------

async def test_null_id_error_is_delivered_to_the_only_pending_request() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        response = await post(adapter, session, call("null_error", id=7))
        assert response.status == 200
        assert response.json()["id"] == 7
        assert error_of(response)["code"] == jsonrpc.PARSE_ERROR
        await still_serves(adapter, session)


async def test_null_id_error_with_two_pending_is_dropped_and_both_requests_still_end() -> None:
    async with running_adapter(request_timeout=1.0) as adapter:
        session = await adapter.initialize()
        answers: dict[int, Response] = {}

        async def send(name: str, id: int) -> None:
            answers[id] = await post(adapter, session, call(name, id=id))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, "silent", 1)
                await trio.sleep(0.2)  # silent is pending when null_error's "id": null answer arrives
                nursery.start_soon(send, "null_error", 2)
        for id in (1, 2):  # nobody can tell whose the null-id error was: both time out rather than hang
            assert answers[id].json()["id"] == id
            assert error_of(answers[id])["code"] == jsonrpc.REQUEST_TIMEOUT
        await still_serves(adapter, session)


# -- what a client sends must reach the child as one valid UTF-8 JSON line --------------------------------------

@pytest.mark.parametrize("raw", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"], ids=["ff", "overlong", "surrogate-bytes"])
async def test_invalid_utf8_in_a_body_gets_400_parse_error_with_its_id(raw: bytes) -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + raw + b'"}}'
        response = await post(adapter, session, body)
        assert response.status == 400
        assert response.json()["id"] == 1
        assert error_of(response)["code"] == jsonrpc.PARSE_ERROR
        assert "UTF-8" in str(error_of(response)["message"])
        await still_serves(adapter, session)


async def test_escaped_lone_surrogate_gets_400_saying_so() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        response = await post(adapter, session, b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":'
                                                b'{"name":"echo","arguments":{"text":"\\ud800"}}}')
        assert response.status == 400
        assert response.json()["id"] == 3
        assert error_of(response)["code"] == jsonrpc.PARSE_ERROR
        assert "surrogate" in str(error_of(response)["message"])
        paired = await post(adapter, session, b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":'
                                              b'{"name":"echo","arguments":{"text":"\\ud83d\\ude00"}}}')
        assert text_of(paired) == "\U0001f600"


@pytest.mark.parametrize("body", [
    b'{\n  "jsonrpc": "2.0",\n  "id": 5,\n  "method": "tools/call",\n  "params": {"name": "echo",\n'
    b'    "arguments": {"text": "a\\nb"}}\n}',
    b'{"jsonrpc":"2.0",\r\n"id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a\\nb"}}}',
], ids=["pretty", "crlf"])
async def test_pretty_printed_json_reaches_a_line_reading_child_as_one_line(body: bytes) -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        response = await post(adapter, session, body)
        assert response.status == 200, response
        assert text_of(response) == "a\nb"


async def test_deep_nesting_gets_400_with_the_request_id() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        for depth in (980, 5000):
            body = (b'{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"x":'
                    + b"[" * depth + b"]" * depth + b"}}}")
            response = await post(adapter, session, body)
            assert response.status == 400
            assert error_of(response)["code"] == jsonrpc.INVALID_REQUEST
            assert "nested" in str(error_of(response)["message"])
        await still_serves(adapter, session)


async def test_null_request_id_gets_invalid_request() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        response = await post(adapter, session, b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}')
        assert response.status == 400
        assert error_of(response)["code"] == jsonrpc.INVALID_REQUEST


# -- what a child prints is delivered, repaired if it must be ----------------------------------------------------

async def test_a_reply_with_a_lone_surrogate_is_delivered_with_a_replacement_character() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        response = await post(adapter, session, call("surrogate"))
        assert response.status == 200
        assert text_of(response) == "\ufffd"


async def test_a_reply_with_invalid_utf8_is_delivered_repaired() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        lines = [base64.b64encode(b'{"jsonrpc":"2.0","method":"notifications/message","params":'
                                  b'{"level":"info","data":"\xff\xfe"}}').decode()]
        response = await adapter.request("POST", "/mcp", call("emit", {"lines": lines}),
                                         {"content-type": "application/json", "accept": ACCEPT_BOTH,
                                          "mcp-session-id": session})
        assert response.status == 200
        assert b"\xff" not in response.body
        assert "\ufffd\ufffd".encode() in response.body
        assert b'"emitted"' in response.body


# -- a per-request timeout -------------------------------------------------------------------------------------

async def test_a_request_the_child_never_answers_times_out_and_the_child_is_told() -> None:
    async with running_adapter(request_timeout=1.0) as adapter:
        session = await adapter.initialize()
        started = trio.current_time()
        with trio.fail_after(5):
            response = await post(adapter, session, call("silent", id=11))
        assert trio.current_time() - started >= 0.9
        assert response.json()["id"] == 11
        assert error_of(response)["code"] == jsonrpc.REQUEST_TIMEOUT
        told = await post(adapter, session, call("cancelled", id=12))
        assert msgspec.json.decode(text_of(told)) == [11]
        metrics = await adapter.request("GET", "/metrics")
        assert b"kmcp_adapter_requests_timed_out_total 1" in metrics.body


async def test_progress_keeps_a_slow_request_alive() -> None:
    async with running_adapter(request_timeout=1.0) as adapter:
        session = await adapter.initialize()
        with trio.fail_after(10):
            response = await post(adapter, session, call("progress", {"seconds": 2.5, "interval": 0.3},
                                                         _meta={"progressToken": "p"}))
        assert response.status == 200
        assert b"steps" in response.body and b"error" not in response.body


# -- HTTP framing and probes -----------------------------------------------------------------------------------

async def test_content_length_with_transfer_encoding_gets_400_and_the_connection_closes() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        body = call("echo", {"text": "smuggled?"})
        request = (b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\n"
                   b"mcp-session-id: " + session.encode() + b"\r\ncontent-length: 5\r\n"
                   b"transfer-encoding: chunked\r\n\r\n"
                   + f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n0\r\n\r\n")
        follow_up = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            await stream.send_all(request + follow_up)
            reply = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    reply += chunk
        assert reply.startswith(b"HTTP/1.1 400")
        assert reply.count(b"HTTP/1.1 ") == 1  # closed after answering: the pipelined request was not served


@pytest.mark.parametrize("method", ["FOO", "TRACE", "DELETE", "POST"])
async def test_health_answers_only_get_and_head(method: str) -> None:
    async with running_adapter() as adapter:
        response = await adapter.request(method, "/health")
        assert response.status == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert (await adapter.request("GET", "/health")).status == 200
        head = await adapter.request("HEAD", "/health")
        assert head.status == 200
        assert head.body == b""


# -- the 2026-07-28 pool: a server that fails its probe ends that process, never the adapter ----------------------

MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {}}
MODERN_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                  "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
MODERN_LIST = msgspec.json.encode({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": MODERN_META}})


@pytest.mark.parametrize("command", [["sh", "-c", "cat > /dev/null"], ["sh", "-c", "exit 3"]],
                         ids=["never-answers", "exits-at-once"])
async def test_a_server_that_fails_the_era_probe_gets_503_and_the_adapter_stays_up(
        command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from kmcp.adapter.sessions import pool

    monkeypatch.setattr(pool, "PROBE_TIMEOUT", 0.3)
    async with running_adapter(command) as adapter:
        with trio.fail_after(20):
            for _ in range(2):  # and again: a failed probe is retried on a new process, not remembered
                response = await adapter.request("POST", "/mcp", MODERN_LIST, MODERN_HEADERS)
                assert response.status == 503, response
                assert response.json()["id"] == 5
        assert (await adapter.request("GET", "/health")).status == 200


async def test_a_server_that_exits_at_once_is_reported_without_waiting_out_the_probe() -> None:
    """Its stdout closing ends what waits on it: no PROBE_TIMEOUT (10 s) per request, and no era guessed from
    an exit (a crashed modern server must not be bridged as a handshake-era one)."""
    from kmcp.adapter.sessions import pool

    async with running_adapter(["sh", "-c", "exit 3"]) as adapter:
        with trio.fail_after(pool.PROBE_TIMEOUT * 0.6):
            response = await adapter.request("POST", "/mcp", MODERN_LIST, MODERN_HEADERS)
        assert response.status == 503, response
        assert "exited" in response.json()["error"]["message"]


async def test_every_transport_refuses_a_session_over_the_limit_the_same_way() -> None:
    """One way to open a session for /mcp, /sse and /ws: 503 with Retry-After at the limit (a JSON-RPC error on
    /mcp, text on the others), and the session that exists keeps working."""
    async with running_adapter(max_sessions=1) as adapter:
        with trio.fail_after(30):
            session = await adapter.initialize()
            refused = await adapter.post_mcp({"jsonrpc": "2.0", "id": 7, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
            assert (refused.status, refused.headers.get("retry-after")) == (503, "5"), refused
            assert "too many sessions (max 1)" in str(refused.json()["error"])
            sse = await adapter.request("GET", "/sse", headers={"accept": "text/event-stream"})
            assert (sse.status, sse.headers.get("retry-after")) == (503, "5"), sse
            assert b"too many sessions (max 1)" in sse.body
            ws = await adapter.request("GET", "/ws", headers={
                "connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
                "sec-websocket-key": base64.b64encode(b"0123456789abcdef").decode()})
            assert (ws.status, ws.headers.get("retry-after")) == (503, "5"), ws
            await still_serves(adapter, session)
