"""Streamable HTTP flows against a real (small) stdio server process."""

from __future__ import annotations

import msgspec
import pytest
import trio

from kmcp.adapter.protocol import jsonrpc
from tests.adapter.rawhttp import ACCEPT_BOTH, RAW_SERVER, eventually, open_sse, running_adapter
from tests.procs import alive

pytestmark = pytest.mark.slow


def text_of(message: dict[str, object]) -> str:
    result = message["result"]
    assert isinstance(result, dict)
    return str(result["content"][0]["text"])


async def test_initialize_issues_a_session_and_calls_are_answered_with_json() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        assert len(session) >= 16
        response = await adapter.call_tool(session, "echo", {"text": "héllo"})
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        assert text_of(response.json()) == "héllo"


async def test_sse_only_client_gets_an_sse_stream() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        body = msgspec.json.encode({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                    "params": {"name": "echo", "arguments": {"text": "sse"}}})
        async with open_sse(adapter.port, "POST", "/mcp", body, {
                "content-type": "application/json", "accept": "text/event-stream",
                "mcp-session-id": session}) as stream:
            assert stream.status == 200
            assert stream.headers["content-type"] == "text/event-stream"
            event = await stream.next_event()
            assert event["id"]
            assert text_of(msgspec.json.decode(event["data"])) == "sse"


async def test_notification_before_the_response_switches_to_sse() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        body = msgspec.json.encode({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                    "params": {"name": "notify", "arguments": {"text": "note"}}})
        async with open_sse(adapter.port, "POST", "/mcp", body, {
                "content-type": "application/json", "accept": ACCEPT_BOTH, "mcp-session-id": session}) as stream:
            assert stream.headers["content-type"] == "text/event-stream"
            note = await stream.next_message()
            assert note["method"] == "notifications/message"
            answer = await stream.next_message()
            assert answer["id"] == 2
            assert text_of(answer) == "notified"


async def test_notifications_and_responses_get_202() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        response = await adapter.post_mcp({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}, session)
        assert response.status == 202
        assert response.body == b""
        answer = await adapter.post_mcp({"jsonrpc": "2.0", "id": "s-1", "result": {}}, session)
        assert answer.status == 202


async def test_discover_probe_gets_method_not_found_at_once() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        with trio.fail_after(2):
            response = await adapter.post_mcp({"jsonrpc": "2.0", "id": 3, "method": "server/discover"}, session)
        assert response.status == 200
        assert response.json()["error"]["code"] == jsonrpc.METHOD_NOT_FOUND  # type: ignore[index]


async def test_batches_only_for_2025_03_26() -> None:
    batch = [{"jsonrpc": "2.0", "id": 10, "method": "ping"},
             {"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "echo",
                                                                           "arguments": {"text": "b"}}}]
    async with running_adapter() as adapter:
        session = await adapter.initialize("2025-03-26")
        response = await adapter.post_mcp(batch, session, headers={"mcp-protocol-version": "2025-03-26"})
        assert response.status == 200
        answers = msgspec.json.decode(response.body)
        assert sorted(a["id"] for a in answers) == [10, 11]
        refused = await adapter.post_mcp(batch, session, headers={"mcp-protocol-version": "2025-06-18"})
        assert refused.status == 400
        assert refused.json()["error"]["code"] == jsonrpc.INVALID_REQUEST  # type: ignore[index]


async def test_each_session_gets_its_own_process() -> None:
    async with running_adapter() as adapter:
        first, second = await adapter.initialize(), await adapter.initialize()
        pid_one = text_of((await adapter.call_tool(first, "pid")).json())
        pid_two = text_of((await adapter.call_tool(second, "pid")).json())
        assert pid_one != pid_two


async def test_delete_ends_the_session_and_its_process() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        pid = int(text_of((await adapter.call_tool(session, "pid")).json()))
        deleted = await adapter.request("DELETE", "/mcp", headers={"mcp-session-id": session})
        assert deleted.status == 200
        assert (await adapter.call_tool(session, "echo")).status == 404

        async def exited() -> bool:
            return not alive(pid)

        await eventually(exited)


async def test_child_garbage_on_stdout_is_skipped() -> None:
    async with running_adapter([*RAW_SERVER, "--banner"]) as adapter:
        session = await adapter.initialize()
        response = await adapter.call_tool(session, "garbage", {"text": "still fine"})
        assert response.status == 200
        assert text_of(response.json()) == "still fine"


async def test_child_that_exits_mid_call_fails_the_call_and_ends_the_session() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        with trio.fail_after(10):
            response = await adapter.call_tool(session, "exit", {"code": 3}, id=42)
        assert response.status == 200
        message = response.json()
        assert message["id"] == 42
        error = message["error"]
        assert isinstance(error, dict)
        assert error["code"] == jsonrpc.SERVER_GONE
        assert "exit code 3" in str(error["message"])
        assert (await adapter.call_tool(session, "echo")).status == 404
        metrics = (await adapter.request("GET", "/metrics")).body
        assert b"kmcp_adapter_child_exits_total 1" in metrics
        assert b"kmcp_adapter_active_sessions 0" in metrics


async def test_max_sessions_gets_503_with_retry_after() -> None:
    async with running_adapter(max_sessions=1) as adapter:
        await adapter.initialize()
        response = await adapter.post_mcp({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        assert response.status == 503
        assert response.headers["retry-after"]


async def test_idle_session_is_reaped() -> None:
    async with running_adapter(session_idle_timeout=0.5) as adapter:
        session = await adapter.initialize()
        assert (await adapter.call_tool(session, "echo")).status == 200

        async def reaped() -> bool:
            return (await adapter.call_tool(session, "echo")).status == 404

        await trio.sleep(0.6)  # longer than the idle timeout, without a request that would keep it alive
        await eventually(reaped)


async def test_get_stream_receives_standalone_messages_even_those_sent_before_it_opened() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        assert (await adapter.call_tool(session, "changed", id=1)).status == 200
        headers = {"accept": "text/event-stream", "mcp-session-id": session}
        async with open_sse(adapter.port, "GET", "/mcp", headers=headers) as stream:
            assert stream.status == 200
            with trio.fail_after(5):
                first = await stream.next_message()
            assert first["method"] == "notifications/tools/list_changed"
            assert (await adapter.call_tool(session, "changed", id=2)).status == 200
            with trio.fail_after(5):
                second = await stream.next_message()
            assert second["method"] == "notifications/tools/list_changed"


async def test_dropped_post_stream_resumes_with_last_event_id() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        body = msgspec.json.encode({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                                    "params": {"name": "notify", "arguments": {"text": "before"}}})
        async with open_sse(adapter.port, "POST", "/mcp", body, {
                "content-type": "application/json", "accept": "text/event-stream",
                "mcp-session-id": session}) as stream:
            first = await stream.next_event()
        assert msgspec.json.decode(first["data"])["method"] == "notifications/message"
        # The client hung up after the first event; it resumes the stream from there.
        headers = {"accept": "text/event-stream", "mcp-session-id": session, "last-event-id": first["id"]}
        async with open_sse(adapter.port, "GET", "/mcp", headers=headers) as resumed:
            with trio.fail_after(5):
                answer = await resumed.next_message()
            assert answer["id"] == 9
            assert text_of(answer) == "notified"
            with pytest.raises(EOFError):  # the stream ends with its last response
                await resumed.next_event()


async def test_drain_lets_in_flight_requests_finish() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        results: list[int] = []

        async def slow_call() -> None:
            results.append((await adapter.call_tool(session, "sleep", {"seconds": 0.5})).status)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_call)
            await trio.sleep(0.2)
            adapter.shutdown.set()
        assert results == [200]


async def test_warm_pool_hands_out_a_prestarted_process_and_starts_a_replacement() -> None:
    async with running_adapter(warm_pool=1) as adapter:
        async def warmed() -> bool:
            return b"kmcp_adapter_child_starts_total 1" in (await adapter.request("GET", "/metrics")).body

        await eventually(warmed)
        metrics = (await adapter.request("GET", "/metrics")).body
        assert b"kmcp_adapter_active_sessions 0" in metrics  # warm processes are not sessions yet
        session = await adapter.initialize()
        assert text_of((await adapter.call_tool(session, "echo", {"text": "warm"})).json()) == "warm"

        async def replaced() -> bool:
            return b"kmcp_adapter_child_starts_total 2" in (await adapter.request("GET", "/metrics")).body

        await eventually(replaced)
        other = await adapter.initialize()
        assert text_of((await adapter.call_tool(other, "pid")).json()) != text_of(
            (await adapter.call_tool(session, "pid")).json())


async def test_json_only_client_hears_server_messages_on_its_get_stream() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        headers = {"accept": "text/event-stream", "mcp-session-id": session}
        async with open_sse(adapter.port, "GET", "/mcp", headers=headers) as stream:
            response = await adapter.post_mcp({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
                "name": "notify", "arguments": {"text": "for the GET stream"}}}, session, accept="application/json")
            assert response.headers["content-type"] == "application/json"
            assert response.json()["id"] == 7
            with trio.fail_after(5):
                note = await stream.next_message()
            assert note["method"] == "notifications/message"
            assert note["params"] == {"level": "info", "data": "for the GET stream"}


async def test_idle_sse_stream_gets_keepalive_comments() -> None:
    async with running_adapter(sse_keepalive_interval=0.1) as adapter:
        session = await adapter.initialize()
        stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        async with stream:
            await stream.send_all(b"GET /mcp HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n"
                                  b"mcp-session-id: " + session.encode() + b"\r\n\r\n")
            received = b""
            with trio.fail_after(5):
                while received.count(b": keep-alive") < 2:
                    received += await stream.receive_some(4096)
            assert received.startswith(b"HTTP/1.1 200")


async def test_large_messages_cross_both_ways_intact() -> None:
    async with running_adapter() as adapter:
        session = await adapter.initialize()
        text = "x" * 2_000_000 + "é"
        with trio.fail_after(20):
            response = await adapter.call_tool(session, "echo", {"text": text})
        assert response.status == 200
        assert text_of(response.json()) == text
