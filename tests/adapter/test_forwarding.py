"""Adapter replicas behind one Service without sticky sessions: a request for another replica's session is
forwarded to it; forged ids are not."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h11
import msgspec
import pytest
import trio

from kmcp.adapter.app import serve_adapter
from kmcp.adapter.protocol.session_ids import SessionIds
from kmcp.adapter.server.forwarding import FORWARDED_HEADER
from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import LocalLauncher
from tests.adapter.rawhttp import FASTMCP_SERVER, RAW_SERVER, Adapter, request

KEY = b"replicas-share-this-key-0123456789"
CLIENT = Path(__file__).with_name("sdk_replica_client.py")
INTERPRETER = os.path.realpath(sys.executable)  # no venv: the zipapp must carry what it needs
LIST_TOOLS = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def free_port(*hosts: str) -> int:
    """A port free on every one of ``hosts`` (loopback aliases), so replicas can share it as pods do."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


@dataclass
class Trap:
    """A listener standing in for a replica: records every connection and request, answers like an owner."""

    host: str
    keep_alive: bool = False  # True: serve requests on a connection until the client closes it
    port: int = 0
    connections: int = 0
    requests: list[h11.Request] = field(default_factory=list)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        connection = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return
                if isinstance(event, h11.Request):
                    self.requests.append(event)
                if not isinstance(event, h11.EndOfMessage):
                    continue
                body = b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"from-the-owner"}]}}'
                await stream.send_all(connection.send(h11.Response(status_code=200, headers=[
                    ("content-type", "application/json"), ("content-length", str(len(body))),
                    ("mcp-session-id", "owner-says-hi")])) + connection.send(h11.Data(data=body))
                    + connection.send(h11.EndOfMessage()))
                if not self.keep_alive:
                    return
                connection.start_next_cycle()


@asynccontextmanager
async def replica_in_process(**overrides: float) -> AsyncIterator[Adapter]:
    """An adapter configured as one replica of several: its ids name 127.0.0.1:PORT."""
    port = free_port("127.0.0.1")
    settings = AdapterSettings(host="127.0.0.1", port=port, peer_address=("127.0.0.1", port), session_key=KEY,
                               **overrides)  # type: ignore[arg-type]
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_adapter, settings, LocalLauncher(RAW_SERVER, kill_grace=1.0), shutdown)
        yield Adapter(port, shutdown, settings)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def adapter_and_trap(keep_alive: bool = False) -> AsyncIterator[tuple[int, Trap]]:
    async with trio.open_nursery() as nursery:
        trap = Trap("127.0.0.3", keep_alive)
        await nursery.start(trap.serve)
        async with replica_in_process() as adapter:
            yield adapter.port, trap
        nursery.cancel_scope.cancel()


def tampered(session_id: str) -> str:
    index = len(session_id) // 2
    return session_id[:index] + ("A" if session_id[index] != "A" else "B") + session_id[index + 1:]


async def test_a_valid_foreign_id_is_forwarded_once_and_the_owner_answers() -> None:
    async with adapter_and_trap() as (port, trap):
        session_id = SessionIds(KEY, (trap.host, trap.port)).mint()
        response = await request(port, "POST", "/mcp", LIST_TOOLS, {**MCP_HEADERS, "mcp-session-id": session_id,
                                                                     "authorization": "Bearer t"})
        assert response.status == 200
        assert response.json()["result"] == {"tools": [{"name": "from-the-owner"}]}
        assert response.headers["mcp-session-id"] == "owner-says-hi"
        assert trap.connections == 1
        forwarded = dict(trap.requests[0].headers)
        assert forwarded[FORWARDED_HEADER.encode()] == b"1"
        assert forwarded[b"mcp-session-id"] == session_id.encode()
        assert forwarded[b"authorization"] == b"Bearer t"  # the owner checks the caller again
        assert trap.requests[0].target == b"/mcp"


async def test_forwarding_keeps_connections_to_the_owner_alive_and_survives_the_owner_closing_them() -> None:
    for keep_alive, expected_connections in [(True, 1), (False, 5)]:
        async with adapter_and_trap(keep_alive) as (port, trap):
            session_id = SessionIds(KEY, (trap.host, trap.port)).mint()
            for _ in range(5):
                response = await request(port, "POST", "/mcp", LIST_TOOLS,
                                         {**MCP_HEADERS, "mcp-session-id": session_id})
                assert response.status == 200, response
            assert len(trap.requests) == 5
            assert trap.connections == expected_connections


async def test_forged_tampered_and_already_forwarded_ids_get_404_without_any_outbound_connection() -> None:
    async with adapter_and_trap() as (port, trap):
        valid = SessionIds(KEY, (trap.host, trap.port)).mint()
        other_key = SessionIds(b"some-other-mcpserver-key-000000", (trap.host, trap.port)).mint()
        for session_id, extra in [(tampered(valid), {}), (other_key, {}), (valid, {FORWARDED_HEADER: "1"}),
                                  ("f" * 32, {})]:
            for method in ("POST", "GET", "DELETE"):
                response = await request(port, method, "/mcp", LIST_TOOLS if method == "POST" else b"",
                                         {**MCP_HEADERS, "mcp-session-id": session_id, **extra})
                assert response.status == 404, (session_id, method, response)
                assert response.json()["error"]["message"] == "Session not found"
            legacy = await request(port, "POST", f"/message?sessionId={session_id}", LIST_TOOLS,
                                   {"content-type": "application/json", **extra})
            assert legacy.status == 404
        assert trap.connections == 0
        # The same valid id without the loop-guard header does reach the owner: the refusals above were real.
        response = await request(port, "POST", f"/message?sessionId={valid}", LIST_TOOLS,
                                 {"content-type": "application/json"})
        assert response.status == 200 and trap.connections == 1
        assert trap.requests[0].target == f"/message?sessionId={valid}".encode()


async def test_a_gone_owner_means_404_so_the_client_reinitializes() -> None:
    gone = free_port("127.0.0.4")  # nothing listens there
    async with replica_in_process() as adapter:
        port = adapter.port
        session_id = SessionIds(KEY, ("127.0.0.4", gone)).mint()
        response = await request(port, "POST", "/mcp", LIST_TOOLS, {**MCP_HEADERS, "mcp-session-id": session_id})
        assert response.status == 404
        assert response.json()["error"]["message"] == "Session not found"
        metrics = (await request(port, "GET", "/metrics")).body.decode()
        assert 'kmcp_adapter_forwarded_requests_total{result="unreachable"} 1' in metrics


async def test_own_sessions_are_served_locally_with_ids_that_name_this_replica() -> None:
    async with replica_in_process() as a:
        port = a.port
        session_id = await a.initialize()
        assert SessionIds(KEY, ("127.0.0.9", 1)).owner(session_id) == ("127.0.0.1", port)
        assert (await a.post_mcp({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}, session_id)).status == 200
        metrics = (await request(port, "GET", "/metrics")).body.decode()
        assert "kmcp_adapter_forwarded_requests_total" not in metrics


# --- real replicas: two zipapp adapter processes behind a round-robin TCP balancer --------------------------------


@dataclass
class RoundRobin:
    """A per-connection round-robin TCP balancer, like kube-proxy in front of a Service's endpoints."""

    backends: list[tuple[str, int]]
    port: int = 0
    next: int = 0
    connections: list[int] = field(default_factory=list)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.connections = [0] * len(self.backends)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        index = self.next % len(self.backends)
        self.next += 1
        self.connections[index] += 1
        upstream = await trio.open_tcp_stream(*self.backends[index])
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
            nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


@dataclass
class Replica:
    host: str
    port: int
    process: trio.Process

    async def metrics(self) -> str:
        return (await request(self.port, "GET", "/metrics", host=self.host)).body.decode()


@asynccontextmanager
async def replicas(zipapp: Path, tmp: Path) -> AsyncIterator[tuple[list[Replica], RoundRobin]]:
    hosts = ["127.0.0.1", "127.0.0.2"]
    port = free_port(*hosts)  # one port on two addresses: two pods
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "SHIV_ROOT": str(tmp / "shiv"),
           "KMCP_SESSION_KEY": KEY.decode()}
    async with trio.open_nursery() as nursery:
        started: list[Replica] = []
        for host in hosts:
            command = [INTERPRETER, "-I", str(zipapp), "adapter", "--listen", f"{host}:{port}", "--peer-address",
                       host, "--", *FASTMCP_SERVER]
            process = await nursery.start(partial(trio.run_process, command, env=env, check=False))
            started.append(Replica(host, port, process))
        for replica in started:
            await wait_healthy(replica)
        balancer = RoundRobin([(r.host, r.port) for r in started])
        await nursery.start(balancer.serve)
        try:
            yield started, balancer
        finally:
            for replica in started:
                replica.process.terminate()
            with trio.fail_after(30):
                for replica in started:
                    await replica.process.wait()
            nursery.cancel_scope.cancel()


async def wait_healthy(replica: Replica) -> None:
    with trio.fail_after(180):  # a hang deadline: two zipapps unpacking at once took over 60 s on a loaded machine
        while True:
            try:
                if (await request(replica.port, "GET", "/health", host=replica.host)).status == 200:
                    return
            except OSError:
                pass
            assert replica.process.returncode is None, "the adapter exited"
            await trio.sleep(0.1)


async def run_client(url: str, kind: str, calls: int) -> dict[str, object]:
    with trio.fail_after(120):
        done = await trio.run_process([sys.executable, str(CLIENT), url, kind, str(calls)], capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert isinstance(seen, dict)
    return seen


def counter(metrics: str, name: str) -> int:
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines() if line.startswith(name))


def check_session(seen: dict[str, object], calls: int) -> None:
    assert seen["tools"] == ["ask", "count", "crash", "echo", "log", "pid", "sleep"]
    pids = seen["pids"]
    assert isinstance(pids, list) and len(pids) == calls
    assert len(set(pids)) == 1  # every call reached the session's one server process
    assert seen["echo"] == [f"m{i}" for i in range(calls)]
    assert seen["count"] == "counted 3"
    assert seen["progress"] == [1.0, 2.0, 3.0]  # progress streamed through
    assert seen["ask"] == "model said: echo:who owns me"  # the sampling answer went back to the owner


@pytest.mark.slow
async def test_sdk_sessions_through_a_round_robin_balancer_reach_their_owner(zipapp: Path, tmp_path: Path) -> None:
    calls = 12
    async with replicas(zipapp, tmp_path) as (pods, balancer):
        owners = []
        for first in range(len(pods)):  # one session initialized on each replica
            balancer.next = first
            seen = await run_client(f"http://127.0.0.1:{balancer.port}/mcp", "streamable", calls)
            check_session(seen, calls)
            session_id = seen["session_id"]
            assert isinstance(session_id, str)
            owner = SessionIds(KEY, ("127.0.0.9", 1)).owner(session_id)
            assert owner == (pods[first].host, pods[first].port)
            owners.append(owner)
            # The server that answered every call is a child of the adapter the id names.
            assert seen["server_parent"] == pods[first].process.pid
        assert balancer.connections[0] > calls and balancer.connections[1] > calls
        for pod in pods:
            metrics = await pod.metrics()
            assert counter(metrics, 'kmcp_adapter_forwarded_requests_total{result="relayed"}') > calls
            assert 'result="unreachable"' not in metrics
            assert not [line for line in metrics.splitlines()
                        if line.startswith("kmcp_adapter_http_responses_total") and 'status="404"' in line]
            assert counter(metrics, "kmcp_adapter_sessions_total") == 1
            # The client's DELETE reached the owner: the session ends (once its server process has exited).
            with trio.fail_after(10):
                while True:
                    if not counter(await pod.metrics(), "kmcp_adapter_active_sessions"):
                        break
                    await trio.sleep(0.1)

        # Concurrent sessions, wherever they start: each is served by the server its id's replica runs.
        results: list[dict[str, object]] = []

        async def one() -> None:
            results.append(await run_client(f"http://127.0.0.1:{balancer.port}/mcp", "streamable", calls))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one)
        by_address = {(pod.host, pod.port): pod.process.pid for pod in pods}
        for seen in results:
            check_session(seen, calls)
            owner = SessionIds(KEY, ("127.0.0.9", 1)).owner(str(seen["session_id"]))
            assert owner is not None and seen["server_parent"] == by_address[owner]
        assert len({str(seen["pids"]) for seen in results}) == 4  # four sessions, four server processes


@pytest.mark.slow
async def test_legacy_sse_sessions_through_a_round_robin_balancer(zipapp: Path, tmp_path: Path) -> None:
    calls = 8
    async with replicas(zipapp, tmp_path) as (pods, balancer):
        parents = set()
        for first in range(len(pods)):
            balancer.next = first
            seen = await run_client(f"http://127.0.0.1:{balancer.port}/sse", "sse", calls)
            check_session(seen, calls)
            assert seen["server_parent"] == pods[first].process.pid  # GET /sse opened it there
            parents.add(seen["server_parent"])
        assert len(parents) == 2
        for pod in pods:
            assert counter(await pod.metrics(), 'kmcp_adapter_forwarded_requests_total{result="relayed"}') >= calls


async def test_an_owner_whose_connect_times_out_costs_one_timeout_not_one_per_request() -> None:
    """A deleted pod's address drops SYNs: each request for its sessions used to wait the whole connect timeout.
    Here the owner is a listener on loopback whose accept queue is full and never drained (SYNs are dropped)."""
    host = "127.0.0.5"
    with socket.socket() as blackhole, socket.socket() as filler:
        blackhole.bind((host, 0))
        blackhole.listen(0)
        filler.connect(blackhole.getsockname())  # the one queued connection: later SYNs are dropped
        owner = blackhole.getsockname()
        async with replica_in_process(forward_connect_timeout=1.0) as adapter:
            session_id = SessionIds(KEY, owner).mint()
            started = trio.current_time()
            for _ in range(3):
                response = await request(adapter.port, "POST", "/mcp", LIST_TOOLS,
                                         {**MCP_HEADERS, "mcp-session-id": session_id})
                assert response.status == 404, response
            elapsed = trio.current_time() - started
            assert 1.0 <= elapsed < 2.0, elapsed  # the first request waited the timeout, the next two did not
            metrics = (await request(adapter.port, "GET", "/metrics")).body.decode()
            assert 'kmcp_adapter_forwarded_requests_total{result="unreachable"} 3' in metrics
