"""``--session-mode shared``: every MCP session talks to one long-lived server process.

:class:`SharedLauncher` is a :class:`~kmcp.adapter.launcher.Launcher` like any other, so sessions and transports
are unchanged: each session gets a virtual process whose stdin/stdout are multiplexed onto the real one.

What the multiplexer rewrites so sessions cannot see or answer each other:
- request ids from sessions become unique ids on the shared process, and responses get their own id back;
- progress tokens likewise, so ``notifications/progress`` reaches the session that asked;
- ``notifications/cancelled`` from a session names the shared id; from the server, the session's id;
- ``initialize`` is forwarded once; later sessions get the first result (with their own id) and their
  ``notifications/initialized`` is not repeated to the server;
- requests from the server (sampling, elicitation, roots) go to the session with a request in flight (the most
  recent one if several), and the answer is routed back by the server's id;
- ``notifications/*/list_changed``, ``notifications/message`` and ``notifications/resources/updated`` go to
  every session.
Limits, by construction: logging level, resource subscriptions and roots are the server's, so one session's
``logging/setLevel`` applies to all; a server that keeps per-client state sees one client.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from kmcp.adapter.launcher import Launcher, LaunchError, ServerProcess

BROADCAST_PREFIXES = ("notifications/message", "notifications/resources/updated")
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def _is_broadcast(method: str) -> bool:
    return method.endswith("/list_changed") or method.startswith(BROADCAST_PREFIXES)


class _LineSender(trio.abc.SendStream):
    """A session's stdin: splits what the session writes into lines and hands each to the multiplexer."""

    def __init__(self, client: _Client) -> None:
        self._client = client
        self._pending = b""
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._client.exited.is_set():
            raise trio.ClosedResourceError("the shared MCP server is gone")
        self._pending += bytes(data)
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            if line.strip():
                await self._client.mux.from_client(self._client, line)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self._closed = True
        await trio.lowlevel.checkpoint()


class _LineReceiver(trio.abc.ReceiveStream):
    """A session's stdout: the lines the multiplexer routed to it; EOF when the session is detached."""

    def __init__(self, channel: trio.MemoryReceiveChannel[bytes]) -> None:
        self._channel = channel
        self._buffer = b""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._buffer:
            try:
                self._buffer = await self._channel.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return b""
        size = len(self._buffer) if max_bytes is None else max_bytes
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        return chunk

    async def aclose(self) -> None:
        await self._channel.aclose()


@dataclass(eq=False)
class _Client:
    """One session's view of the shared process."""

    mux: SharedLauncher
    number: int
    outbox: trio.MemorySendChannel[bytes]
    inbox: trio.MemoryReceiveChannel[bytes]
    exited: trio.Event = field(default_factory=trio.Event)
    exit_code: int = 0
    in_flight: int = 0
    initialized_sent: bool = False

    @property
    def send_stream(self) -> trio.abc.SendStream:
        return self._sender

    @property
    def receive_stream(self) -> trio.abc.ReceiveStream:
        return self._receiver

    def __post_init__(self) -> None:
        self._sender = _LineSender(self)
        self._receiver = _LineReceiver(self.inbox)

    async def wait(self) -> int:
        await self.exited.wait()
        return self.exit_code

    def deliver(self, message: dict[str, Any]) -> None:
        with suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.outbox.send_nowait(_encode(message) + b"\n")

    def end(self, code: int) -> None:
        self.exit_code = code
        self.exited.set()
        self.outbox.close()


class SharedLauncher:
    """Runs one server process through ``inner`` and multiplexes every session onto it.

    Start it as a service (``await nursery.start(shared.run)``); it restarts the process when it exits and
    fails the sessions attached to the old one, as their own process exiting would.
    """

    def __init__(self, inner: Launcher, restart_delay: float = 1.0) -> None:
        self.inner = inner
        self.restart_delay = restart_delay
        self._numbers = itertools.count(1)
        self._ids = itertools.count(1)
        self._clients: set[_Client] = set()
        self._requests: dict[int, tuple[_Client, Any]] = {}  # shared id -> (client, its own id)
        self._tokens: dict[str, tuple[_Client, Any]] = {}  # shared progress token -> (client, its token)
        self._server_requests: dict[str, _Client] = {}  # server request id (as JSON) -> client asked
        self._request_tokens: dict[int, str] = {}  # shared id -> the shared progress token it carries
        self._cancelled: set[int] = set()  # shared ids the session gave up on (already not counted in flight)
        self._init_result: Any = None
        self._init_waiters: list[tuple[_Client, Any]] = []
        self._init_id: int | None = None  # the shared id of the one initialize in flight
        self._initialized_sent = False
        self._last_active: _Client | None = None
        self._process: ServerProcess | None = None
        self._up = trio.Event()
        self._write_lock = trio.Lock()

    # -- the one real process ---------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Started at once, not when the process is up: in a pod, the mcp-server container (where the process
        # runs) starts only after the adapter answers its startup probe. Sessions wait in launch() instead.
        task_status.started()
        while True:
            try:
                async with self.inner.launch("shared") as process:
                    self._process = process
                    self._up.set()
                    await self._pump(process)
                    code = await process.wait()
            except LaunchError as error:
                print(f"kmcp adapter: shared server: {error}", file=sys.stderr, flush=True)
                code = -1
            self._lost(code)
            await trio.sleep(self.restart_delay)

    async def _pump(self, process: ServerProcess) -> None:
        pending = b""
        async for chunk in process.receive_stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    self.from_server(line)

    def _lost(self, code: int) -> None:
        """The process exited: every attached session sees its 'process' exit; state starts over."""
        self._up = trio.Event()
        self._process = None
        for client in list(self._clients):
            client.end(code)
        self._clients.clear()
        self._requests.clear()
        self._tokens.clear()
        self._server_requests.clear()
        self._request_tokens.clear()
        self._cancelled.clear()
        self._init_result = None
        self._init_waiters.clear()
        self._init_id = None
        self._initialized_sent = False

    async def _write(self, message: dict[str, Any]) -> None:
        process = self._process
        if process is None:
            raise trio.ClosedResourceError("the shared MCP server is not running")
        async with self._write_lock:
            await process.send_stream.send_all(_encode(message) + b"\n")

    # -- sessions ---------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def launch(self, session_id: str) -> AsyncIterator[ServerProcess]:
        with trio.move_on_after(30):
            await self._up.wait()
        if self._process is None:
            raise LaunchError("the shared MCP server process is not running")
        send, receive = trio.open_memory_channel[bytes](4096)
        client = _Client(self, next(self._numbers), send, receive)
        self._clients.add(client)
        try:
            yield client
        finally:
            self._detach(client)

    def _detach(self, client: _Client) -> None:
        self._clients.discard(client)
        for shared_id in [k for k, (owner, _) in self._requests.items() if owner is client]:
            if shared_id != self._init_id:  # another session may be waiting for that answer
                del self._requests[shared_id]
                self._request_tokens.pop(shared_id, None)
                self._cancelled.discard(shared_id)
        for token in [k for k, (owner, _) in self._tokens.items() if owner is client]:
            del self._tokens[token]
        for key in [k for k, owner in self._server_requests.items() if owner is client]:
            del self._server_requests[key]
        self._init_waiters = [(c, i) for c, i in self._init_waiters if c is not client]
        if self._last_active is client:
            self._last_active = None
        if not client.exited.is_set():
            client.end(0)

    async def from_client(self, client: _Client, line: bytes) -> None:
        try:
            message = _decode(line)
        except msgspec.DecodeError:
            return  # the session core already answered malformed input; nothing reaches the server
        if not isinstance(message, dict):
            return
        method = message.get("method")
        if method is None:
            if "id" in message:  # the session answers a server request: its id is the server's own
                self._server_requests.pop(_encode(message["id"]).decode(), None)
                await self._write(message)
            return
        if "id" not in message:
            await self._from_client_notification(client, method, message)
            return
        if method == "initialize":
            await self._initialize(client, message)
            return
        shared_id = next(self._ids)
        self._requests[shared_id] = (client, message["id"])
        client.in_flight += 1
        self._last_active = client
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and "progressToken" in meta:
            token = f"{client.number}:{_encode(meta['progressToken']).decode()}"
            self._tokens[token] = (client, meta["progressToken"])
            self._request_tokens[shared_id] = token
            meta["progressToken"] = token
        message["id"] = shared_id
        await self._write(message)

    async def _from_client_notification(self, client: _Client, method: str, message: dict[str, Any]) -> None:
        if method == "notifications/initialized":
            if self._initialized_sent:
                return
            self._initialized_sent = True
        elif method == "notifications/cancelled":
            params = message.get("params") or {}
            wanted = params.get("requestId")
            shared = next((sid for sid, (owner, own) in self._requests.items()
                           if owner is client and own == wanted), None)
            if shared is None:
                return
            params["requestId"] = shared
            if shared not in self._cancelled:
                self._cancelled.add(shared)
                client.in_flight = max(client.in_flight - 1, 0)  # no longer waiting: not a target for sampling
        await self._write(message)

    async def _initialize(self, client: _Client, message: dict[str, Any]) -> None:
        if self._init_result is not None:
            client.deliver({"jsonrpc": "2.0", "id": message["id"], "result": self._init_result})
            return
        self._init_waiters.append((client, message["id"]))
        if self._init_id is not None:
            return
        shared_id = self._init_id = next(self._ids)
        self._requests[shared_id] = (client, message["id"])
        message["id"] = shared_id
        await self._write(message)

    # -- the server's messages --------------------------------------------------------------------------------

    def from_server(self, line: bytes) -> None:
        try:
            message = _decode(line)
        except msgspec.DecodeError:
            print(f"kmcp adapter: shared server wrote a non-JSON line ({len(line)} bytes); dropped",
                  file=sys.stderr, flush=True)
            return
        if not isinstance(message, dict):
            return
        method = message.get("method")
        if method is None:
            self._route_response(message)
        elif "id" in message:
            self._route_server_request(message)
        else:
            self._route_notification(method, message)

    def _route_response(self, message: dict[str, Any]) -> None:
        shared_id = message.get("id")
        entry = self._requests.pop(shared_id, None) if isinstance(shared_id, int) else None
        if entry is None:
            return
        token = self._request_tokens.pop(shared_id, None) if isinstance(shared_id, int) else None
        if token is not None:
            self._tokens.pop(token, None)
        client, own_id = entry
        if shared_id == self._init_id:
            if "result" in message:
                self._init_result = message["result"]
            waiters, self._init_waiters, self._init_id = self._init_waiters, [], None
            for waiter, waiter_id in waiters:
                waiter.deliver({**message, "id": waiter_id})
            return
        if shared_id in self._cancelled:
            self._cancelled.discard(shared_id)
        else:
            client.in_flight = max(client.in_flight - 1, 0)
        message["id"] = own_id
        client.deliver(message)

    def _route_server_request(self, message: dict[str, Any]) -> None:
        busy = [c for c in self._clients if c.in_flight]
        target = (self._last_active if self._last_active in busy else busy[0]) if busy else self._last_active
        if target is None:
            return
        self._server_requests[_encode(message["id"]).decode()] = target
        target.deliver(message)

    def _route_notification(self, method: str, message: dict[str, Any]) -> None:
        params = message.get("params")
        if method == "notifications/progress" and isinstance(params, dict):
            entry = self._tokens.get(str(params.get("progressToken")))
            if entry is not None:
                params["progressToken"] = entry[1]
                entry[0].deliver(message)
            return
        if method == "notifications/cancelled" and isinstance(params, dict):
            request_id = params.get("requestId")
            entry = self._requests.get(request_id) if isinstance(request_id, int) else None
            if entry is not None:
                params["requestId"] = entry[1]
                entry[0].deliver(message)
            return
        if _is_broadcast(method):
            for client in list(self._clients):
                client.deliver(message)


__all__ = ["SharedLauncher"]
