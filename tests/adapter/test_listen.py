"""``subscriptions/listen`` (2026-07-28) through the adapter, on real servers of both eras.

A legacy server never sees a listen: the bridge acknowledges what the server's ``initialize`` advertises and relays
its broadcast change notifications, tagged. A modern server's listen is opened on every pooled process, so a change
made on a process other than the one the listen first reached still gets to the client.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio

from tests.adapter.test_conformance import free_ports, serving
from tests.adapter.test_conformance_2026 import LEGACY_TWIN, MODERN_SERVER

SUBSCRIPTION = "io.modelcontextprotocol/subscriptionId"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}

pytestmark = pytest.mark.timeout(240)


def headers(method: str, name: str | None = None) -> dict[str, str]:
    sent = {"accept": "application/json, text/event-stream", "content-type": "application/json",
            "mcp-protocol-version": "2026-07-28", "mcp-method": method}
    if name is not None:
        sent["mcp-name"] = name
    return sent


class Listen:
    """One open listen stream: its events, as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next_event(self, seconds: float = 20.0) -> dict[str, Any]:
        with trio.fail_after(seconds):
            async for line in self._lines:
                if line.startswith("data:"):
                    event: dict[str, Any] = msgspec.json.decode(line[5:].strip())
                    return event
        raise AssertionError("the listen stream ended")

    async def quiet_for(self, seconds: float) -> list[dict[str, Any]]:
        """Whatever arrives within ``seconds`` (nothing, when the filter works)."""
        seen: list[dict[str, Any]] = []
        with trio.move_on_after(seconds):
            while True:
                seen.append(await self.next_event(seconds))
        return seen


@asynccontextmanager
async def adapter(server: list[str], tmp_path: Path, *flags: str) -> AsyncIterator[httpx.AsyncClient]:
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}", *flags, "--", *server]
    async with serving(argv, port, tmp_path / "adapter.log"), \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        yield client


@asynccontextmanager
async def listening(client: httpx.AsyncClient, listen_id: str, notifications: dict[str, Any]) -> AsyncIterator[Listen]:
    body = {"jsonrpc": "2.0", "id": listen_id, "method": "subscriptions/listen",
            "params": {"notifications": notifications, "_meta": ENVELOPE}}
    async with client.stream("POST", "/mcp", json=body, headers=headers("subscriptions/listen")) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Listen(response)


async def call(client: httpx.AsyncClient, tool: str, request_id: int, **arguments: object) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": ENVELOPE}}
    response = await client.post("/mcp", json=body, headers=headers("tools/call", tool))
    assert response.status_code == 200, response.text
    text = response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        text = [line for line in text.splitlines() if line.startswith("data:")][-1][5:]
    answer: dict[str, Any] = msgspec.json.decode(text)
    assert answer["id"] == request_id and "result" in answer, answer
    return answer


async def test_the_bridge_serves_listen_for_a_legacy_server_from_its_change_notifications(tmp_path: Path) -> None:
    async with adapter([sys.executable, str(LEGACY_TWIN)], tmp_path) as client:
        watched = {"toolsListChanged": True, "resourceSubscriptions": ["test://watched-resource"]}
        async with listening(client, "L1", watched) as listen:
            ack = await listen.next_event()
            assert ack["method"] == "notifications/subscriptions/acknowledged"
            assert ack["params"] == {"_meta": {SUBSCRIPTION: "L1"}, "notifications": watched}
            await call(client, "test_trigger_tool_change", 1)
            changed = await listen.next_event()
            assert changed == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                               "params": {"_meta": {SUBSCRIPTION: "L1"}}}
            await call(client, "test_trigger_prompt_change", 2)  # not asked for: never on this stream
            await call(client, "test_trigger_resource_update", 3)
            updated = await listen.next_event()
            assert updated["method"] == "notifications/resources/updated", updated
            assert updated["params"]["uri"] == "test://watched-resource"
            assert updated["params"]["_meta"] == {SUBSCRIPTION: "L1"}
            async with listening(client, 7, {"promptsListChanged": True}) as prompts:
                assert (await prompts.next_event())["params"]["_meta"] == {SUBSCRIPTION: 7}
                await call(client, "test_trigger_tool_change", 4)
                assert (await listen.next_event())["method"] == "notifications/tools/list_changed"
                await call(client, "test_trigger_prompt_change", 5)
                event = await prompts.next_event()
                assert (event["method"], event["params"]["_meta"]) == ("notifications/prompts/list_changed",
                                                                       {SUBSCRIPTION: 7})
            assert await listen.quiet_for(0.5) == []  # the prompt changes never reached L1


async def test_a_modern_listen_hears_changes_made_on_every_pooled_process(tmp_path: Path, mcp2_python: Path) -> None:
    async with adapter([str(mcp2_python), str(MODERN_SERVER)], tmp_path, "--stateless-pool", "2") as client, \
            listening(client, "L1", {"toolsListChanged": True}) as listen:
        ack = await listen.next_event()
        assert (ack["method"], ack["params"]["_meta"]) == ("notifications/subscriptions/acknowledged",
                                                           {SUBSCRIPTION: "L1"})
        async with trio.open_nursery() as nursery:
            # The first process is busy with a slow call: the trigger runs on a second one, started for it.
            nursery.start_soon(functools.partial(call, client, "test_slow", 1, seconds=3.0))
            await trio.sleep(0.5)
            await call(client, "test_trigger_tool_change", 2)
            changed = await listen.next_event()
            assert (changed["method"], changed["params"]["_meta"]) == ("notifications/tools/list_changed",
                                                                       {SUBSCRIPTION: "L1"})
        assert await listen.quiet_for(0.5) == []  # one acknowledgement, one change: nothing twice
