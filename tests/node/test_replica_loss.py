"""Deleting one of two replicas in the middle of a bounded load (200 tools/call over about 10 s, each on a fresh
connection, so kube-proxy spreads them over both pods): no call answered 200 lacks its answer, the sessions the
surviving pod holds never fail, the deleted pod's sessions fail with a JSON-RPC error (404, as the MCP spec has a
server answer for a session it no longer knows), and new sessions work."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from kmcp.adapter.protocol import jsonrpc
from kmcp.devcluster.images import ImageArchive
from tests.controller.conftest import ControllerProcess, wait_condition
from tests.kubehelpers import Kube, wait_for
from tests.node.conftest import McpClient, echo_mcpserver, first_session, ready_pods, service_url
from tests.node.test_node import TIMINGS
from tests.node.test_workloads import session_owner, sessions_on_each_replica

pytestmark = [pytest.mark.node, pytest.mark.slow]
Obj = dict[str, Any]
SESSIONS_PER_POD = 4
CALLS_PER_SESSION = 25  # x 8 sessions = 200 calls
CALL_INTERVAL = 0.4  # x 25 = 10 s
DELETE_AFTER = 3.0


@dataclass
class Outcome:
    owner: str
    sent: float
    answered: float
    status: int | None  # None: no HTTP answer at all
    reply: Obj | None
    message: str
    detail: str = ""


def call_on_fresh_connection(client: McpClient, message: str) -> tuple[int | None, Obj | None, str]:
    """One tools/call on a new TCP connection (kube-proxy picks a pod per connection)."""
    client.http.close()
    client.http = httpx.Client(timeout=30, trust_env=False)
    client._id += 1
    body = {"jsonrpc": "2.0", "id": client._id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": message}}}
    try:
        resp = client.post(body)
    except httpx.HTTPError as error:
        return None, None, f"{type(error).__name__}: {error}"
    text = resp.text
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        text = data[-1] if data else ""
    try:
        return resp.status_code, dict(httpx.Response(200, content=text).json()), ""
    except ValueError:
        return resp.status_code, None, f"body {resp.text[:200]!r}"


def test_deleting_a_replica_mid_load_loses_no_answered_call_and_new_sessions_work(
        node_kube: Kube, node_namespace: str, kmcp_node_image: ImageArchive,
        node_controller: ControllerProcess) -> None:
    name = "echo-loss"
    node_kube.apply(echo_mcpserver(name, node_namespace, kmcp_node_image.name, replicas=2))
    wait_condition(node_kube, name, node_namespace, "Ready", "True", timeout=90)
    pods = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(ready_pods(node_kube, name, node_namespace)),
                    timeout=60, description="two Ready replicas")
    by_ip = {p["status"]["podIP"]: p["metadata"]["name"] for p in pods}
    url = service_url(node_kube, name, node_namespace)
    first_session(url).http.close()

    sessions = sessions_on_each_replica(url, by_ip, SESSIONS_PER_POD)
    victim_ip, survivor_ip = sorted(by_ip)

    outcomes: list[Outcome] = []
    lock = threading.Lock()
    started = time.monotonic()

    def load(owner: str, client: McpClient, index: int) -> None:
        for n in range(CALLS_PER_SESSION):
            time.sleep(max(0.0, started + n * CALL_INTERVAL + index * CALL_INTERVAL / 8 - time.monotonic()))
            message = f"{index}.{n}"
            sent = time.monotonic() - started
            status, reply, detail = call_on_fresh_connection(client, message)
            with lock:
                outcomes.append(Outcome(owner, sent, time.monotonic() - started, status, reply, message, detail))

    threads = [threading.Thread(target=load, args=(ip, client, i))
               for i, (ip, client) in enumerate((ip, c) for ip, held in sessions.items() for c in held)]
    for thread in threads:
        thread.start()
    time.sleep(DELETE_AFTER)
    deleted_at = time.monotonic() - started
    node_kube.delete(f"/api/v1/namespaces/{node_namespace}/pods/{by_ip[victim_ip]}")
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == 200
    lost = [o for o in outcomes if o.status == 200 and not (
        o.reply and o.reply.get("result", {}).get("content", [{}])[0].get("text") == o.message)]
    assert lost == [], f"answered 200 without their answer: {lost[:5]}"
    broken = [o for o in outcomes if o.owner == survivor_ip and o.status != 200]
    assert broken == [], f"the surviving pod's sessions failed: {broken[:5]}"
    victims = [o for o in outcomes if o.owner == victim_ip]
    early = [o for o in victims if o.answered < deleted_at and o.status != 200]
    assert early == [], f"the pod to delete failed before it was deleted ({deleted_at:.1f}s): {early[:5]}"
    failed = [o for o in victims if o.status != 200]
    assert failed, "the deleted pod's sessions kept working"
    not_jsonrpc = [o for o in failed if not (o.status == 404 and o.reply and
                                             o.reply.get("error", {}).get("code") == jsonrpc.SERVER_GONE)]
    assert not_jsonrpc == [], f"the deleted pod's sessions failed without a JSON-RPC error: {not_jsonrpc[:5]}"
    TIMINGS["replica loss: pod deleted -> its sessions answered with a JSON-RPC error"] = \
        min(o.answered for o in failed) - deleted_at
    TIMINGS["replica loss: slowest JSON-RPC error for a deleted pod's session"] = \
        max(o.answered - o.sent for o in failed)

    for i in range(5):
        with first_session(url) as client:
            assert client.session is not None and session_owner(client.session) != victim_ip
            assert client.call_tool("echo", {"message": f"new {i}"})["result"]["content"][0]["text"] == f"new {i}"
    for held in sessions.values():
        for client in held:
            client.http.close()
