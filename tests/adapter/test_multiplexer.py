"""The sans-IO multiplexer, driven with messages: many clients on one server process never see each other."""

from __future__ import annotations

import msgspec

from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.multiplexer import NULL_ID, Multiplexer, ToClient, ToServer


def msg(**fields: object) -> jsonrpc.Message:
    return jsonrpc.parse_message(msgspec.json.encode({"jsonrpc": "2.0", **fields}))


def decoded(output: ToServer | ToClient) -> dict[str, object]:
    data = output.data if isinstance(output, ToServer) else output.message.raw
    value = msgspec.json.decode(data)
    assert isinstance(value, dict)
    return value


def test_same_ids_from_two_clients_get_distinct_process_ids_and_their_own_back() -> None:
    mux = Multiplexer()
    a, b = mux.attach(), mux.attach()
    [to_a] = mux.from_client(a, msg(id=1, method="tools/call", params={"name": "x"}))
    [to_b] = mux.from_client(b, msg(id=1, method="tools/call", params={"name": "y"}))
    id_a, id_b = decoded(to_a)["id"], decoded(to_b)["id"]
    assert id_a != id_b
    assert decoded(to_b)["params"] == {"name": "y"}
    [answer] = mux.from_server(msg(id=id_b, result={"v": "b"}))
    assert answer.client == b and decoded(answer) == {"jsonrpc": "2.0", "id": 1, "result": {"v": "b"}}
    [answer] = mux.from_server(msg(id=id_a, error={"code": -1, "message": "no"}))
    assert answer.client == a and decoded(answer)["error"] == {"code": -1, "message": "no"}
    assert mux.in_flight == 0


def test_params_and_results_are_reframed_byte_for_byte() -> None:
    mux = Multiplexer()
    client = mux.attach()
    raw = b'{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"b": 1.50, "a": [ 1 ]}}'
    [out] = mux.from_client(client, jsonrpc.parse_message(raw))
    assert isinstance(out, ToServer)
    assert out.data.endswith(b'"params":{"b": 1.50, "a": [ 1 ]}}')
    shared = decoded(out)["id"]
    [answer] = mux.from_server(jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":%d,"result":{"z": 1e3}}' % shared))
    assert answer.message.raw == b'{"jsonrpc":"2.0","id":"q","result":{"z": 1e3}}'


def test_initialize_reaches_the_server_once_and_later_clients_reuse_its_result() -> None:
    mux = Multiplexer()
    a, b, c = mux.attach(), mux.attach(), mux.attach()
    [first] = mux.from_client(a, msg(id=0, method="initialize", params={"protocolVersion": "2025-06-18"}))
    assert mux.from_client(b, msg(id=5, method="initialize", params={})) == []  # waits for the same answer
    outputs = mux.from_server(msg(id=decoded(first)["id"], result={"protocolVersion": "2025-06-18"}))
    assert sorted((o.client, decoded(o)["id"]) for o in outputs) == [(a, 0), (b, 5)]
    [late] = mux.from_client(c, msg(id="i", method="initialize", params={}))
    assert isinstance(late, ToClient) and decoded(late)["id"] == "i"
    assert mux.initialize_result == b'{"protocolVersion":"2025-06-18"}'
    assert len(mux.from_client(a, msg(method="notifications/initialized"))) == 1
    assert mux.from_client(b, msg(method="notifications/initialized")) == []


def test_progress_tokens_and_cancellation_are_rewritten_both_ways() -> None:
    mux = Multiplexer()
    a, b = mux.attach(), mux.attach()
    mux.from_client(a, msg(id=1, method="tools/call", params={"_meta": {"progressToken": 7}}))
    [out] = mux.from_client(b, msg(id=1, method="tools/call", params={"_meta": {"progressToken": 7}}))
    params = decoded(out)["params"]
    assert isinstance(params, dict)
    token = params["_meta"]["progressToken"]
    assert token != 7
    [progress] = mux.from_server(msg(method="notifications/progress", params={"progressToken": token, "progress": 1}))
    assert progress.client == b and decoded(progress)["params"] == {"progressToken": 7, "progress": 1}
    [cancel] = mux.from_client(b, msg(method="notifications/cancelled", params={"requestId": 1}))
    assert decoded(cancel)["params"] == {"requestId": decoded(out)["id"]}
    assert mux.from_client(b, msg(method="notifications/cancelled", params={"requestId": 99})) == []


def test_server_requests_go_to_the_busy_client_and_broadcasts_to_all() -> None:
    mux = Multiplexer()
    a, b = mux.attach(), mux.attach()
    mux.from_client(a, msg(id=1, method="tools/call"))
    [sampling] = mux.from_server(msg(id="s1", method="sampling/createMessage", params={}))
    assert sampling.client == a
    [back] = mux.from_client(a, msg(id="s1", result={"role": "assistant"}))
    assert isinstance(back, ToServer) and decoded(back)["id"] == "s1"
    changed = mux.from_server(msg(method="notifications/tools/list_changed"))
    assert sorted(o.client for o in changed) == [a, b]


def test_server_requests_go_to_the_named_asker_even_when_another_client_sent_last() -> None:
    mux = Multiplexer()
    asker, other = mux.attach(), mux.attach()
    mux.asker = asker
    mux.from_client(asker, msg(id=1, method="tools/call"))
    mux.from_client(other, msg(id=1, method="tools/list"))
    [elicitation] = mux.from_server(msg(id="e1", method="elicitation/create", params={}))
    assert elicitation.client == asker
    mux.detach(asker)
    assert mux.asker is None
    [next_one] = mux.from_server(msg(id="e2", method="elicitation/create", params={}))
    assert next_one.client == other


def test_a_null_id_error_goes_to_the_only_request_in_flight_else_it_is_counted() -> None:
    mux = Multiplexer()
    a, b = mux.attach(), mux.attach()
    mux.from_client(a, msg(id=3, method="ping"))
    [only] = mux.from_server(msg(id=None, error={"code": -32700, "message": "Parse error"}))
    assert only.client == a and decoded(only)["id"] == 3
    mux.from_client(a, msg(id=4, method="ping"))
    mux.from_client(b, msg(id=4, method="ping"))
    assert mux.from_server(msg(id=None, error={"code": -32700, "message": "Parse error"})) == []
    assert mux.problems[NULL_ID] == 1


def test_detach_and_reset_forget_what_a_client_waited_for() -> None:
    mux = Multiplexer()
    a, b = mux.attach(), mux.attach()
    [out] = mux.from_client(a, msg(id=1, method="tools/call"))
    mux.detach(a)
    assert mux.from_server(msg(id=decoded(out)["id"], result={})) == []  # a late answer for a gone client
    mux.from_client(b, msg(id=1, method="tools/call"))
    assert mux.reset() == [b]
    assert mux.in_flight == 0 and mux.clients == 0
