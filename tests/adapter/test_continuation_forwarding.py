"""A 2026-07-28 input_required round started on one replica and retried on another: the retry is forwarded to
the replica holding the suspended call (its address is sealed in requestState), on real ``kmcp adapter``
processes bridging the handshake-era conformance twin, with modern requests sent by hand over httpx."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from kmcp.adapter.app import serve_adapter
from kmcp.adapter.server.forwarding import CALL_GONE
from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import LocalLauncher
from tests.adapter.rawhttp import request
from tests.adapter.test_forwarding import KEY, Replica, counter, free_port, wait_healthy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TWIN = [sys.executable, str(ROOT / "tests/servers/legacy_conformance_twin.py")]  # mcp 1.x: asks by elicitation/create
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
MULTI_ROUND = "test_input_required_result_multi_round"
ANSWERS = [{"action": "accept", "content": {"name": "Alice"}}, {"action": "accept", "content": {"color": "blue"}}]


@asynccontextmanager
async def adapter_process(host: str, port: int, tmp: Path) -> AsyncIterator[Replica]:
    """``kmcp adapter`` bridging the twin as one replica of an MCPServer (its key, its pod address)."""
    env = {**os.environ, "KMCP_SESSION_KEY": KEY.decode()}
    command = [sys.executable, "-m", "kmcp", "adapter", "--listen", f"{host}:{port}", "--peer-address", host, "--",
               *TWIN]
    with (tmp / f"adapter-{host}.log").open("wb") as log:
        async with trio.open_nursery() as nursery:
            process = await nursery.start(partial(trio.run_process, command, env=env, cwd=ROOT, check=False,
                                                  stdout=log, stderr=log))
            replica = Replica(host, port, process)
            try:
                await wait_healthy(replica)
                yield replica
            finally:
                process.terminate()
                with trio.fail_after(30):
                    await process.wait()


@asynccontextmanager
async def two_replicas(tmp: Path) -> AsyncIterator[list[Replica]]:
    """Two adapters on one port of two loopback addresses: two pods."""
    port = free_port("127.0.0.1", "127.0.0.2")
    async with adapter_process("127.0.0.1", port, tmp) as a, adapter_process("127.0.0.2", port, tmp) as b:
        yield [a, b]


def url(replica: Replica) -> str:
    return f"http://{replica.host}:{replica.port}/mcp"


async def call(client: httpx.AsyncClient, endpoint: str, request_id: int,
               extra: dict[str, Any] | None = None, accept: str = "application/json, text/event-stream"
               ) -> httpx.Response:
    """A modern tools/call of the multi-round tool, as a 2026-07-28 client sends it (any replica will do)."""
    params = {"name": MULTI_ROUND, "arguments": {}, "_meta": META, **(extra or {})}
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    headers = {"content-type": "application/json", "accept": accept,
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": MULTI_ROUND}
    return await client.post(endpoint, json=body, headers=headers)


def answer_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC response in a JSON body or at the end of an SSE stream."""
    if response.headers["content-type"].startswith("application/json"):
        message: dict[str, Any] = response.json()
        return message
    events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    responses = [event for event in events if "method" not in event]
    assert len(responses) == 1, response.text
    return responses[0]


def retry_of(answer: dict[str, Any], round_number: int) -> dict[str, Any]:
    """inputResponses for every input the round asks, and the round's requestState."""
    result = answer["result"]
    assert result["resultType"] == "input_required", answer
    (key, asked), = result["inputRequests"].items()
    assert asked["method"] == "elicitation/create"
    return {"inputResponses": {key: ANSWERS[round_number]}, "requestState": result["requestState"]}


async def test_a_round_started_on_one_replica_is_finished_through_another(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with two_replicas(tmp_path) as (a, b), httpx.AsyncClient(timeout=60) as client:
            first = answer_of(await call(client, url(a), 1))
            second = await call(client, url(b), 2, retry_of(first, 0), accept="text/event-stream")
            assert second.headers["content-type"].startswith("text/event-stream")  # the owner's stream, relayed
            second_answer = answer_of(second)
            assert second_answer["id"] == 2
            done = answer_of(await call(client, url(b), 3, retry_of(second_answer, 1)))
            assert done["id"] == 3
            assert done["result"]["content"][0]["text"] == "Alice likes blue."
            assert counter(await b.metrics(), 'kmcp_adapter_forwarded_requests_total{result="relayed"}') == 2
            assert "kmcp_adapter_forwarded_requests_total" not in await a.metrics()


async def test_a_tampered_state_is_refused_where_it_lands_and_never_forwarded(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with two_replicas(tmp_path) as (a, b), httpx.AsyncClient(timeout=60) as client:
            retry = retry_of(answer_of(await call(client, url(a), 1)), 0)
            state = retry["requestState"]
            cut = len(state) // 2
            tampered = state[:cut] + ("A" if state[cut] != "A" else "B") + state[cut + 1:]
            refused = answer_of(await call(client, url(b), 2, {**retry, "requestState": tampered}))
            assert refused["id"] == 2
            assert refused["error"]["code"] == -32602, refused
            assert "kmcp_adapter_forwarded_requests_total" not in await b.metrics()
            # The intact state, sent to the same replica, does reach the call: the refusal above was the MAC's.
            going_on = answer_of(await call(client, url(b), 3, retry))
            assert going_on["result"]["resultType"] == "input_required", going_on


async def test_a_retry_for_a_replica_that_is_gone_says_so_under_the_requests_id(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with two_replicas(tmp_path) as (a, b), httpx.AsyncClient(timeout=60) as client:
            retry = retry_of(answer_of(await call(client, url(a), 1)), 0)
            a.process.terminate()  # its pod is gone, and the suspended call with it
            await a.process.wait()
            gone = await call(client, url(b), 7, retry)
            assert gone.status_code == 404
            assert gone.json() == {"jsonrpc": "2.0", "id": 7, "error": {"code": -32000, "message": CALL_GONE}}
            assert counter(await b.metrics(), 'kmcp_adapter_forwarded_requests_total{result="unreachable"}') == 1


async def test_a_replica_that_has_not_met_its_server_yet_forwards_the_retry(tmp_path: Path) -> None:
    """A replica that just started (no process probed, so it does not know the server is handshake-era yet)
    recognizes the state by its key and forwards; it does not start the call afresh on a process of its own."""
    port = free_port("127.0.0.1", "127.0.0.2")
    settings = AdapterSettings(host="127.0.0.2", port=port, peer_address=("127.0.0.2", port), session_key=KEY,
                               stateless_warm=False, warm_pool=0)
    launcher = LocalLauncher(TWIN, kill_grace=1.0)
    shutdown = trio.Event()
    with trio.fail_after(120):
        async with adapter_process("127.0.0.1", port, tmp_path) as a, httpx.AsyncClient(timeout=60) as client, \
                trio.open_nursery() as nursery:
            await nursery.start(serve_adapter, settings, launcher, shutdown)
            cold = f"http://127.0.0.2:{port}/mcp"
            first = answer_of(await call(client, url(a), 1))
            second = answer_of(await call(client, cold, 2, retry_of(first, 0)))
            done = answer_of(await call(client, cold, 3, retry_of(second, 1)))
            assert done["result"]["content"][0]["text"] == "Alice likes blue.", done
            metrics = (await request(port, "GET", "/metrics", host="127.0.0.2")).body.decode()
            assert counter(metrics, 'kmcp_adapter_forwarded_requests_total{result="relayed"}') == 2
            shutdown.set()
