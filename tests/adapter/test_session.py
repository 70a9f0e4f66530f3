"""The session core, driven with bytes: no sockets, no processes, no sleeps."""

from __future__ import annotations

import msgspec
import pytest

from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.jsonrpc import JsonRpcError, Kind
from kmcp.adapter.protocol.session import STANDALONE, SessionClosed, SessionCore, State


def msg(**fields: object) -> jsonrpc.Message:
    return jsonrpc.parse_message(msgspec.json.encode({"jsonrpc": "2.0", **fields}))


def line(**fields: object) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", **fields})


def decoded(data: bytes) -> dict[str, object]:
    value = msgspec.json.decode(data)
    assert isinstance(value, dict)
    return value


def test_parse_classifies_requests_notifications_and_responses() -> None:
    assert msg(id=1, method="ping").kind is Kind.REQUEST
    assert msg(method="notifications/initialized").kind is Kind.NOTIFICATION
    assert msg(id="a", result={}).kind is Kind.RESPONSE
    assert msg(id="a", error={"code": 1, "message": "x"}).is_error


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", jsonrpc.PARSE_ERROR),
    (b"", jsonrpc.PARSE_ERROR),
    (b"42", jsonrpc.INVALID_REQUEST),
    (b'"text"', jsonrpc.INVALID_REQUEST),
    (b"[]", jsonrpc.INVALID_REQUEST),
    (b'{"id":1,"method":"ping"}', jsonrpc.INVALID_REQUEST),  # no "jsonrpc": "2.0"
    (b'{"jsonrpc":"2.0","id":1}', jsonrpc.INVALID_REQUEST),  # neither method nor result
    (b'{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}', jsonrpc.INVALID_REQUEST),
    (b'[{"jsonrpc":"2.0","method":"a"}, 3]', jsonrpc.INVALID_REQUEST),
])
def test_bad_bodies_get_the_right_error_code(body: bytes, code: int) -> None:
    with pytest.raises(JsonRpcError) as caught:
        jsonrpc.parse_body(body)
    assert caught.value.code == code


def test_batch_is_parsed_as_a_list() -> None:
    messages, is_batch = jsonrpc.parse_body(b'[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]')
    assert is_batch
    assert [m.kind for m in messages] == [Kind.REQUEST, Kind.NOTIFICATION]


def test_request_is_forwarded_verbatim_and_its_response_closes_its_stream() -> None:
    core = SessionCore()
    stream = core.open_stream()
    request = msg(id=7, method="tools/list")
    outcome = core.from_client([request], stream, now=1.0)
    assert outcome.to_server == request.raw + b"\n"
    assert core.stream_waiting(stream)
    [delivery] = core.from_server(line(id=7, result={"tools": []}), now=1.5)
    assert delivery.stream == stream
    assert delivery.last and delivery.response
    assert delivery.method == "tools/list"
    assert delivery.elapsed == pytest.approx(0.5)
    assert not core.stream_waiting(stream)


def test_initialize_records_the_negotiated_version() -> None:
    core = SessionCore()
    stream = core.open_stream()
    core.from_client([msg(id=0, method="initialize", params={"protocolVersion": "2025-11-25"})], stream)
    assert core.state is State.INITIALIZING
    assert core.client_protocol_version == "2025-11-25"
    core.from_server(line(id=0, result={"protocolVersion": "2025-06-18", "capabilities": {}}))
    assert core.state is State.READY
    assert core.protocol_version == "2025-06-18"
    core.from_client([msg(method="notifications/initialized")], STANDALONE)
    assert core.client_initialized


def test_progress_goes_to_the_stream_of_the_request_that_asked_for_it() -> None:
    core = SessionCore()
    first, second = core.open_stream(), core.open_stream()
    core.from_client([msg(id=1, method="tools/call", params={"name": "a"})], first)
    core.from_client([msg(id=2, method="tools/call", params={"name": "b", "_meta": {"progressToken": "t2"}})],
                     second)
    [delivery] = core.from_server(line(method="notifications/progress", params={"progressToken": "t2",
                                                                                "progress": 1}))
    assert delivery.stream == second
    assert not delivery.response
    core.from_server(line(id=2, result={}))
    # After the request finished, late progress has nowhere to go but the standalone stream.
    [late] = core.from_server(line(method="notifications/progress", params={"progressToken": "t2", "progress": 2}))
    assert late.stream == STANDALONE


def test_server_request_goes_to_the_oldest_waiting_stream_and_the_answer_goes_to_the_server() -> None:
    core = SessionCore()
    first, second = core.open_stream(), core.open_stream()
    core.from_client([msg(id=1, method="tools/call")], first)
    core.from_client([msg(id=2, method="tools/call")], second)
    [sampling] = core.from_server(line(id="s1", method="sampling/createMessage", params={}))
    assert sampling.stream == first
    answer = msg(id="s1", result={"role": "assistant"})
    assert core.from_client([answer], STANDALONE).to_server == answer.raw + b"\n"


def test_server_messages_without_a_waiting_stream_go_to_the_standalone_stream() -> None:
    core = SessionCore()
    [request] = core.from_server(line(id=5, method="roots/list"))
    assert request.stream == STANDALONE
    stream = core.open_stream()
    core.from_client([msg(id=1, method="tools/call")], stream)
    [changed] = core.from_server(line(method="notifications/tools/list_changed"))
    assert changed.stream == STANDALONE
    [logged] = core.from_server(line(method="notifications/message", params={"level": "info"}))
    assert logged.stream == stream


def test_batch_stream_ends_with_its_last_response() -> None:
    core = SessionCore()
    stream = core.open_stream()
    core.from_client([msg(id=1, method="a"), msg(id=2, method="b")], stream)
    [first] = core.from_server(line(id=2, result={}))
    assert not first.last
    [second] = core.from_server(line(id=1, result={}))
    assert second.last


def test_duplicate_pending_id_is_refused() -> None:
    core = SessionCore()
    core.from_client([msg(id=1, method="a")], core.open_stream())
    with pytest.raises(JsonRpcError) as caught:
        core.from_client([msg(id=1, method="b")], core.open_stream())
    assert caught.value.id == 1


def test_discover_probe_is_answered_locally_with_method_not_found() -> None:
    core = SessionCore()
    stream = core.open_stream()
    outcome = core.from_client([msg(id=9, method="server/discover")], stream)
    assert outcome.to_server == b""
    [delivery] = outcome.deliveries
    assert delivery.last and delivery.stream == stream
    assert decoded(delivery.data)["error"] == {"code": -32601, "message": "Method not found: server/discover"}


def test_garbage_and_unknown_responses_are_dropped() -> None:
    core = SessionCore()
    assert core.from_server(b"Starting server on stdio...") == []
    assert core.from_server(b"[1, 2]") == []
    assert core.garbage_lines == 2
    assert core.from_server(line(id=99, result={})) == []


def test_child_exit_fails_every_pending_request_and_closes_the_session() -> None:
    core = SessionCore()
    first, second = core.open_stream(), core.open_stream()
    core.from_client([msg(id=1, method="a"), msg(id=2, method="b")], first)
    core.from_client([msg(id=3, method="c")], second)
    deliveries = core.child_exited("gone")
    assert sorted(decoded(d.data)["id"] for d in deliveries) == [1, 2, 3]  # type: ignore[type-var]
    assert all(decoded(d.data)["error"] == {"code": jsonrpc.SERVER_GONE, "message": "gone"} for d in deliveries)
    assert [d.last for d in deliveries if d.stream == first] == [False, True]
    assert core.state is State.CLOSED
    with pytest.raises(SessionClosed):
        core.from_client([msg(id=4, method="d")], core.open_stream())


def test_cancelled_request_closes_its_stream_and_a_late_answer_is_dropped() -> None:
    core = SessionCore()
    stream = core.open_stream()
    core.from_client([msg(id=4, method="tools/call", params={"_meta": {"progressToken": 4}})], stream)
    cancel = msg(method="notifications/cancelled", params={"requestId": 4, "reason": "user"})
    outcome = core.from_client([cancel], STANDALONE)
    assert outcome.to_server == cancel.raw + b"\n"  # the server is told too
    [delivery] = outcome.deliveries
    assert (delivery.stream, delivery.last) == (stream, True)
    assert decoded(delivery.data)["error"] == {"code": jsonrpc.REQUEST_CANCELLED, "message": "Request cancelled"}
    assert core.from_server(line(id=4, result={})) == []
    assert core.pending_requests == 0
    # Cancelling something unknown changes nothing.
    assert core.from_client([msg(method="notifications/cancelled", params={"requestId": 99})],
                            STANDALONE).deliveries == []
