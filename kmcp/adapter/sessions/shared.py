"""``--session-mode shared``: every MCP session talks to one long-lived server process.

:class:`SharedLauncher` is a :class:`~kmcp.adapter.stdio.launcher.Launcher` like any other, so sessions and transports
are unchanged: each session gets a virtual process whose stdin/stdout are multiplexed onto the real one. What is
rewritten so sessions cannot see or answer each other is the sans-IO
:class:`~kmcp.adapter.protocol.multiplexer.Multiplexer`; this module is only its trio shell.

Limits, by construction: logging level, resource subscriptions and roots are the server's, so one session's
``logging/setLevel`` applies to all; a server that keeps per-client state sees one client.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import trio

from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.jsonrpc import JsonRpcError, Message
from kmcp.adapter.protocol.multiplexer import Multiplexer, Output, ToClient, ToServer
from kmcp.adapter.sessions.inbox import Inbox
from kmcp.adapter.stdio.launcher import Launcher, LaunchError, ServerProcess
from kmcp.adapter.stdio.pipes import StdinWriter, read_lines


class _LineSender(trio.abc.SendStream):
    """A session's stdin as a stream, for users that write lines (the stateless pool): split into lines, parsed,
    and handed to the multiplexer. Sessions skip it: they post parsed messages (``_Client.post_messages``)."""

    def __init__(self, client: _Client) -> None:
        self._client = client
        self._pending = b""
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        self._pending += bytes(data)
        *lines, self._pending = self._pending.split(b"\n")
        messages = []
        for line in lines:
            if line.strip():
                try:
                    messages.append(jsonrpc.parse_message(line))
                except JsonRpcError:
                    continue  # the session core already answered malformed input; nothing reaches the server
        await self._client.post_messages(messages)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self._closed = True
        await trio.lowlevel.checkpoint()


class _LineReceiver(trio.abc.ReceiveStream):
    """A session's stdout as a stream: the messages the multiplexer routed to it, one line each; EOF when the
    session is detached."""

    def __init__(self, client: _Client) -> None:
        self._client = client
        self._buffer = b""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._buffer:
            messages = await self._client.next_messages()
            if not messages:
                return b""
            self._buffer = b"".join([message.raw + b"\n" for message in messages])
        size = len(self._buffer) if max_bytes is None else max_bytes
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        return chunk

    async def aclose(self) -> None:
        self._client.inbox.close()
        await trio.lowlevel.checkpoint()


def _message_size(message: Message) -> int:
    return len(message.raw)


class _Client:
    """One session's view of the shared process: a :class:`~kmcp.adapter.sessions.runtime.MessagePort` (parsed
    messages both ways, each parsed once), and the line streams of any other server process."""

    def __init__(self, shared: SharedLauncher, number: int) -> None:
        self.shared = shared
        self.number = number  # the multiplexer's name for it
        # As before: at most 4096 messages queued for a session that does not read; more are dropped.
        self.inbox: Inbox[Message] = Inbox(_message_size, limit=1 << 62, most=4096)
        self.exited = trio.Event()
        self.exit_code = 0
        self._sender = _LineSender(self)
        self._receiver = _LineReceiver(self)

    @property
    def send_stream(self) -> trio.abc.SendStream:
        return self._sender

    @property
    def receive_stream(self) -> trio.abc.ReceiveStream:
        return self._receiver

    async def wait(self) -> int:
        await self.exited.wait()
        return self.exit_code

    async def post_messages(self, messages: list[Message]) -> None:
        if self.exited.is_set():
            raise trio.ClosedResourceError("the shared MCP server is gone")
        outputs: list[Output] = []
        for message in messages:
            outputs += self.shared.mux.from_client(self.number, message)
        await self.shared._route(outputs)

    async def next_messages(self) -> list[Message]:
        try:
            messages = [await self.inbox.receive()]
        except trio.EndOfChannel:
            return []
        while True:
            try:
                messages.append(self.inbox.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return messages

    def deliver(self, message: Message) -> None:
        with suppress(trio.WouldBlock, trio.ClosedResourceError):
            self.inbox.send_nowait(message)

    def end(self, code: int) -> None:
        self.exit_code = code
        self.exited.set()
        self.inbox.close()


class SharedLauncher:
    """Runs one server process through ``inner`` and multiplexes every session onto it.

    Start it as a service (``await nursery.start(shared.run)``); it restarts the process when it exits and
    fails the sessions attached to the old one, as their own process exiting would.
    """

    def __init__(self, inner: Launcher, restart_delay: float = 1.0, max_line_bytes: int = 64 << 20) -> None:
        self.inner = inner
        self.restart_delay = restart_delay
        self.max_line_bytes = max_line_bytes
        self.mux = Multiplexer()
        self._clients: dict[int, _Client] = {}
        self._process: ServerProcess | None = None
        self._up = trio.Event()
        self._stdin: StdinWriter | None = None

    # -- the one real process ---------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Started at once, not when the process is up: in a pod, the mcp-server container (where the process
        # runs) starts only after the adapter answers its startup probe. Sessions wait in launch() instead.
        task_status.started()
        while True:
            try:
                async with self.inner.launch("shared") as process:
                    self._process = process
                    self._stdin = StdinWriter(process.send_stream)
                    self._up.set()
                    await self._pump(process)
                    code = await process.wait()
            except LaunchError as error:
                print(f"kmcp adapter: shared server: {error}", file=sys.stderr, flush=True)
                code = -1
            self._lost(code)
            await trio.sleep(self.restart_delay)

    async def _pump(self, process: ServerProcess) -> None:
        await read_lines(process.receive_stream, self.max_line_bytes, self.from_server,
                         on_oversized=lambda: print("kmcp adapter: shared server message over "
                                                    f"{self.max_line_bytes} bytes dropped", file=sys.stderr))

    def _lost(self, code: int) -> None:
        """The process exited: every attached session sees its 'process' exit; state starts over."""
        self._up = trio.Event()
        self._process = None
        for number in self.mux.reset():
            client = self._clients.pop(number, None)
            if client is not None:
                client.end(code)

    async def _write(self, lines: list[bytes]) -> None:
        if self._process is None or self._stdin is None:
            raise trio.ClosedResourceError("the shared MCP server is not running")
        await self._stdin.write(b"".join(line + b"\n" for line in lines))

    # -- sessions ---------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def launch(self, session_id: str) -> AsyncIterator[ServerProcess]:
        with trio.move_on_after(30):
            await self._up.wait()
        if self._process is None:
            raise LaunchError("the shared MCP server process is not running")
        client = _Client(self, self.mux.attach())
        self._clients[client.number] = client
        try:
            yield client
        finally:
            self.mux.detach(client.number)
            self._clients.pop(client.number, None)
            if not client.exited.is_set():
                client.end(0)

    def from_server(self, line: bytes) -> None:
        try:
            message = jsonrpc.parse_server_line(line)
        except JsonRpcError:
            print(f"kmcp adapter: shared server wrote a non-JSON-RPC line ({len(line)} bytes); dropped",
                  file=sys.stderr, flush=True)
            return
        for output in self.mux.from_server(message):
            self._deliver(output)

    async def _route(self, outputs: list[Output]) -> None:
        lines = [output.data for output in outputs if isinstance(output, ToServer)]
        for output in outputs:
            if isinstance(output, ToClient):
                self._deliver(output)
        if lines:
            await self._write(lines)

    def _deliver(self, output: ToClient) -> None:
        client = self._clients.get(output.client)
        if client is not None:
            client.deliver(output.message)


__all__ = ["SharedLauncher"]
