"""The 2026-07-28 rules at the adapter (kmcp/adapter/protocol/era.py, bridge.py, continuations.py), driven with
messages: every error path of the revision's HTTP rules, and the bridge's rewriting and sealed state."""

from __future__ import annotations

import base64

import msgspec
import pytest

from kmcp.adapter.protocol import bridge, continuations, era, jsonrpc, param_headers, subscriptions
from kmcp.adapter.protocol.era import EraError, ModernRequest

META = {era.META_VERSION: "2026-07-28", era.META_CAPABILITIES: {}}
HEADERS = {"mcp-protocol-version": "2026-07-28"}


def request(method: str, params: dict[str, object] | None = None, id: object = 7) -> jsonrpc.Message:
    body: dict[str, object] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        body["params"] = params
    return jsonrpc.parse_message(msgspec.json.encode(body))


def headers(method: str, **extra: str) -> dict[str, str]:
    return {**HEADERS, "mcp-method": method, **extra}


def refused(result: ModernRequest | EraError) -> EraError:
    assert isinstance(result, EraError), result
    assert result.id == 7  # every error names the request
    return result


def test_modern_is_told_by_meta_or_a_later_header_version() -> None:
    assert era.is_modern({}, request("tools/list", {"_meta": META}))
    assert era.is_modern({"mcp-protocol-version": "2026-07-28"}, request("tools/list", {}))
    assert era.is_modern({"mcp-protocol-version": "v999.0.0"}, request("tools/list", {}))
    assert not era.is_modern({"mcp-protocol-version": "2025-11-25"}, request("tools/list", {}))
    assert not era.is_modern({"mcp-protocol-version": "1999-01-01"}, request("tools/list", {}))  # old: handshake 400
    assert not era.is_modern({}, request("tools/list", {"arguments": {era.META_VERSION: 1}}))


def test_a_full_envelope_passes_and_is_read() -> None:
    meta = {**META, era.META_CLIENT_INFO: {"name": "c", "version": "1"}, era.META_LOG_LEVEL: "info"}
    checked = era.check_modern(headers("tools/call", **{"mcp-name": "echo"}),
                               request("tools/call", {"name": "echo", "_meta": meta}))
    assert isinstance(checked, ModernRequest)
    assert checked.envelope.version == "2026-07-28"
    assert checked.envelope.capabilities == b"{}"
    assert checked.envelope.log_level == "info"


@pytest.mark.parametrize("params", [{}, {"_meta": {era.META_CAPABILITIES: {}}},
                                    {"_meta": {era.META_VERSION: "2026-07-28"}}],
                         ids=["no-meta", "no-version", "no-capabilities"])
def test_a_bad_envelope_is_400_invalid_params(params: dict[str, object]) -> None:
    error = refused(era.check_modern(headers("server/discover"), request("server/discover", params)))
    assert (error.status, error.code) == (400, jsonrpc.INVALID_PARAMS)


def test_header_and_meta_versions_must_agree_before_the_version_is_judged() -> None:
    meta = {**META, era.META_VERSION: "v999.0.0"}
    error = refused(era.check_modern(headers("tools/list"), request("tools/list", {"_meta": meta})))
    assert (error.status, error.code) == (400, era.HEADER_MISMATCH)


def test_an_unsupported_version_is_32022_with_supported_and_requested() -> None:
    meta = {**META, era.META_VERSION: "v999.0.0"}
    error = refused(era.check_modern({"mcp-protocol-version": "v999.0.0", "mcp-method": "tools/list"},
                                     request("tools/list", {"_meta": meta})))
    assert (error.status, error.code) == (400, era.UNSUPPORTED_VERSION)
    body = msgspec.json.decode(error.body())
    assert body["id"] == 7
    assert body["error"]["data"]["requested"] == "v999.0.0"
    assert "2026-07-28" in body["error"]["data"]["supported"]


@pytest.mark.parametrize(("method", "extra", "params"), [
    ("tools/list", {}, {}),  # Mcp-Method missing is tested below
    ("tools/call", {"mcp-name": "other"}, {"name": "echo"}),
    ("tools/call", {}, {"name": "echo"}),
    ("resources/read", {"mcp-name": "test://a"}, {"uri": "test://b"}),
    ("prompts/get", {"mcp-name": "=?base64?!!?="}, {"name": "p"}),
])
def test_mcp_method_and_mcp_name_must_mirror_the_body(method: str, extra: dict[str, str],
                                                       params: dict[str, object]) -> None:
    sent = {**HEADERS, **extra} if method == "tools/list" else headers(method, **extra)
    error = refused(era.check_modern(sent, request(method, {**params, "_meta": META})))
    assert (error.status, error.code) == (400, era.HEADER_MISMATCH)


def test_a_base64_header_value_is_decoded_before_comparing() -> None:
    name = "eu-west ü"
    encoded = "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
    checked = era.check_modern(headers("tools/call", **{"mcp-name": encoded}),
                               request("tools/call", {"name": name, "_meta": META}))
    assert isinstance(checked, ModernRequest)


@pytest.mark.parametrize("method", sorted(era.REMOVED_METHODS - {"notifications/initialized"}))
def test_removed_methods_are_404_method_not_found(method: str) -> None:
    error = refused(era.check_modern(headers(method), request(method, {"_meta": META})))
    assert (error.status, error.code) == (404, jsonrpc.METHOD_NOT_FOUND)


# -- the bridge --------------------------------------------------------------------------------------------------

def test_discover_is_made_from_initialize_and_lists_both_eras() -> None:
    init = msgspec.json.encode({"protocolVersion": "2025-11-25", "serverInfo": {"name": "s", "version": "2"},
                                "capabilities": {"tools": {"listChanged": True}, "logging": {}},
                                "instructions": "be kind"})
    result = msgspec.json.decode(bridge.discover_result(init))
    assert result["resultType"] == "complete"
    assert result["supportedVersions"][0] == "2026-07-28" and "2025-11-25" in result["supportedVersions"]
    assert result["capabilities"] == {"tools": {"listChanged": True}}  # delivered on listen, by the bridge
    assert result["_meta"][era.META_SERVER_INFO] == {"name": "s", "version": "2"}
    assert result["instructions"] == "be kind"
    assert (result["ttlMs"], result["cacheScope"]) == (0, "private")


def test_results_become_complete_with_caching_hints_on_lists_and_reads() -> None:
    assert msgspec.json.decode(bridge.complete_result("tools/call", b'{"content":[]}')) == {
        "resultType": "complete", "content": []}
    listed = msgspec.json.decode(bridge.complete_result("tools/list", b"{ }", ttl_ms=5))
    assert listed == {"resultType": "complete", "ttlMs": 5, "cacheScope": "private"}


def test_an_unknown_resource_becomes_32602_with_the_uri() -> None:
    error = msgspec.json.decode(bridge.modern_error("resources/read", b'{"uri":"test://x"}',
                                                    b'{"code":0,"message":"Unknown resource: test://x"}'))
    assert error == {"code": -32602, "message": "Unknown resource: test://x", "data": {"uri": "test://x"}}
    other = b'{"code":-32603,"message":"boom"}'
    assert bridge.modern_error("resources/read", b'{"uri":"test://x"}', other) == other


def test_error_statuses() -> None:
    assert bridge.http_status(b'{"code":-32021,"message":"x"}') == 400
    assert bridge.http_status(b'{"code":-32601,"message":"x"}') == 404
    assert bridge.http_status(b'{"code":-32602,"message":"x"}') == 200


# -- sealed request state ----------------------------------------------------------------------------------------

def test_a_sealed_state_opens_only_for_its_call_unaltered_and_in_time() -> None:
    sealer = continuations.Sealer(b"k" * 32, ttl=60)
    state = sealer.seal("h1", "tools/call", "ask", now=1000)
    assert sealer.open(state, "tools/call", "ask", now=1010) == "h1"
    for bad, method, name, now in [(state + "-TAMPERED", "tools/call", "ask", 1010),
                                   (state, "tools/call", "other", 1010),
                                   (state, "tools/call", "ask", 1061),
                                   ("forged", "tools/call", "ask", 1010)]:
        with pytest.raises(continuations.StateError):
            sealer.open(bad, method, name, now=now)
    with pytest.raises(continuations.StateError):
        continuations.Sealer(b"x" * 32, ttl=60).open(state, "tools/call", "ask", now=1010)


def test_a_state_names_the_replica_holding_its_call_and_no_client_can_change_it() -> None:
    a = continuations.Sealer(b"k" * 32, ttl=60, owner=("10.0.0.1", 3000))
    b = continuations.Sealer(b"k" * 32, ttl=60, owner=("10.0.0.2", 3000))
    state = a.seal("h1", "tools/call", "ask", now=1000)
    assert a.open(state, "tools/call", "ask", now=1010) == "h1"
    with pytest.raises(continuations.HeldElsewhere) as held:
        b.open(state, "tools/call", "ask", now=1010)
    assert held.value.owner == ("10.0.0.1", 3000)
    assert b.verifies(state) and not b.verifies(state + "-TAMPERED")
    # The owner is inside the MAC: a state edited to name another address does not open anywhere.
    body, mac = state.removeprefix(continuations.STATE_PREFIX).split(".")
    decoded = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert b'"o":["10.0.0.1",3000]' in decoded
    redirected = base64.urlsafe_b64encode(decoded.replace(b"10.0.0.1", b"10.9.9.9")).rstrip(b"=").decode()
    for sealer in (a, b):
        with pytest.raises(continuations.StateError):
            sealer.open(f"{continuations.STATE_PREFIX}{redirected}.{mac}", "tools/call", "ask", now=1010)
    # Expired or for another call, a foreign state is refused here, not forwarded.
    for method, name, now in [("tools/call", "ask", 1061), ("tools/call", "other", 1010)]:
        with pytest.raises(continuations.StateError):
            b.open(state, method, name, now=now)
    # A replica running alone (no address) keeps the old rule: its own lookup decides.
    assert continuations.Sealer(b"k" * 32, ttl=60).open(state, "tools/call", "ask", now=1010) == "h1"


def test_input_keys_are_the_servers_hint_or_numbered_by_kind() -> None:
    ask = request("elicitation/create", {"message": "?"})
    hinted = request("elicitation/create", {"_meta": {continuations.INPUT_KEY_META: "user_name"}})
    assert continuations.input_key(ask, set()) == "elicitation_1"
    assert continuations.input_key(ask, {"elicitation_1"}) == "elicitation_2"
    assert continuations.input_key(hinted, set()) == "user_name"
    assert continuations.input_key(request("roots/list", {}), set()) == "roots_1"


@pytest.mark.parametrize("responses", [b'{"user_name":12345}', b"null", b"[1]"])
def test_malformed_input_responses_are_invalid_params(responses: bytes) -> None:
    with pytest.raises(jsonrpc.JsonRpcError) as raised:
        continuations.read_retry(b'{"name":"t","inputResponses":' + responses + b"}")
    assert raised.value.code == jsonrpc.INVALID_PARAMS


def test_a_retry_is_read_and_stripped_for_the_server() -> None:
    params = b'{"name":"t","arguments":{},"inputResponses":{"k":{"action":"accept"}},"requestState":"s"}'
    retry = continuations.read_retry(params)
    assert (retry.state, retry.name, retry.responses) == ("s", "t", {"k": b'{"action":"accept"}'})
    assert msgspec.json.decode(continuations.strip_retry(params)) == {"name": "t", "arguments": {}}


# -- subscriptions/listen ----------------------------------------------------------------------------------------

def test_a_listen_filter_is_honoured_as_far_as_the_server_advertises() -> None:
    wanted = subscriptions.read_filter(msgspec.json.encode({"notifications": {
        "toolsListChanged": True, "promptsListChanged": True, "resourceSubscriptions": ["test://a"],
        "someLaterKind": True}, "_meta": META}))
    init = msgspec.json.encode({"capabilities": {"tools": {"listChanged": True}, "prompts": {},
                                                 "resources": {"subscribe": True}}})
    granted = subscriptions.honoured(wanted, init)
    assert granted == subscriptions.Filter(tools_list_changed=True, resource_subscriptions=["test://a"])
    assert subscriptions.honoured(wanted, b"{}") == subscriptions.Filter()
    ack = msgspec.json.decode(subscriptions.acknowledgement("L1", granted).raw)
    assert ack == {"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": {
        "_meta": {era.META_SUBSCRIPTION: "L1"},
        "notifications": {"toolsListChanged": True, "resourceSubscriptions": ["test://a"]}}}


def test_a_filter_passes_only_what_it_names() -> None:
    only_a = subscriptions.Filter(resource_subscriptions=["test://a"])
    assert only_a.wants("notifications/resources/updated", b'{"uri":"test://a"}')
    assert not only_a.wants("notifications/resources/updated", b'{"uri":"test://b"}')
    assert not only_a.wants("notifications/tools/list_changed", b"")
    assert not subscriptions.Filter(tools_list_changed=True).wants("notifications/prompts/list_changed", b"")
    assert not subscriptions.Filter(tools_list_changed=True).wants("notifications/message", b"{}")


def test_a_change_is_tagged_with_the_listen_id_keeping_its_params() -> None:
    change = jsonrpc.parse_message(b'{"jsonrpc":"2.0","method":"notifications/resources/updated",'
                                   b'"params":{"uri":"test://a","_meta":{"x":1}}}')
    tagged = msgspec.json.decode(subscriptions.tagged(change, 7).raw)
    assert tagged["params"] == {"uri": "test://a", "_meta": {"x": 1, era.META_SUBSCRIPTION: 7}}
    bare = jsonrpc.parse_message(b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}')
    assert msgspec.json.decode(subscriptions.tagged(bare, "L").raw)["params"] == {"_meta": {era.META_SUBSCRIPTION: "L"}}


def test_a_malformed_listen_filter_is_invalid_params() -> None:
    with pytest.raises(jsonrpc.JsonRpcError) as caught:
        subscriptions.read_filter(b'{"notifications":{"toolsListChanged":"yes"}}')
    assert caught.value.code == jsonrpc.INVALID_PARAMS


@pytest.mark.parametrize(("capabilities", "asks"), [(b'{"elicitation":{}}', True), (b'{"sampling":{"x":1}}', True),
                                                    (b'{"roots":{}}', True), (b"{}", False),
                                                    (b'{"elicitation":null}', False), (b'{"experimental":{}}', False),
                                                    (b"not json", False)])
def test_a_capability_set_that_lets_a_legacy_server_ask(capabilities: bytes, asks: bool) -> None:
    assert bridge.may_ask(capabilities) is asks


# -- Mcp-Param-* -------------------------------------------------------------------------------------------------

TOOLS_WITH_HEADERS = msgspec.json.encode({"tools": [
    {"name": "routed", "inputSchema": {"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"}, "priority": {"type": "integer", "x-mcp-header":
                                                                             "Priority"},
        "verbose": {"type": "boolean", "x-mcp-header": "Verbose"}, "query": {"type": "string"}}}},
    {"name": "plain", "inputSchema": {"type": "object"}}]})


def known_headers() -> param_headers.ToolHeaders:
    known = param_headers.ToolHeaders()
    tools, cursor = param_headers.read_tools(TOOLS_WITH_HEADERS)
    assert cursor is None and tools["plain"] == {}
    known.learn(tools, complete=True)
    return known


def routed(**arguments: object) -> bytes:
    return msgspec.json.encode({"name": "routed", "arguments": arguments})


@pytest.mark.parametrize("headers", [
    {"mcp-param-region": "eu-west1", "mcp-param-priority": "3", "mcp-param-verbose": "true"},
    {"mcp-param-region": "=?base64?ZXUtd2VzdDE=?=", "mcp-param-priority": "3", "mcp-param-verbose": "true"},
])
def test_param_headers_that_mirror_the_arguments_pass(headers: dict[str, str]) -> None:
    assert known_headers().check(headers, routed(region="eu-west1", priority=3, verbose=True, query="x")) is None


def test_an_argument_left_out_needs_no_header_and_unknown_tools_are_not_checked() -> None:
    known = known_headers()
    assert known.check({"mcp-param-region": "a"}, routed(region="a")) is None
    assert known.check({}, msgspec.json.encode({"name": "plain", "arguments": {"region": "x"}})) is None
    assert known.check({}, msgspec.json.encode({"name": "unknown", "arguments": {}})) is None


@pytest.mark.parametrize(("headers", "says"), [
    ({}, "missing"),
    ({"mcp-param-region": "us-east1"}, "is not the request's arguments.region"),
    ({"mcp-param-region": "=?base64?!!!?="}, "not valid"),
    ({"mcp-param-region": "eu\x01west"}, "cannot carry"),
])
def test_param_headers_that_contradict_the_body_are_refused(headers: dict[str, str], says: str) -> None:
    problem = known_headers().check(headers, routed(region="eu-west1"))
    assert problem is not None and says in problem


def test_a_header_without_its_argument_is_a_mismatch() -> None:
    problem = known_headers().check({"mcp-param-region": "eu"}, routed())
    assert problem is not None and "arguments.region" in problem
