"""Sessions over an in-memory launcher: the session logic never knows how its process was started.
Time is a MockClock, so idle reaping is tested without sleeping."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from kmcp.adapter.metrics import Metrics
from kmcp.adapter.protocol import jsonrpc
from kmcp.adapter.protocol.session import STANDALONE
from kmcp.adapter.sessions.runtime import SessionTable, TooManySessions
from kmcp.adapter.settings import AdapterSettings
from kmcp.adapter.stdio.launcher import ServerProcess


class FakeProcess:
    """A "server" whose stdin/stdout are in-memory streams the test drives."""

    def __init__(self) -> None:
        self.to_server_send, self.to_server_receive = trio.testing.memory_stream_one_way_pair()
        self.from_server_send, self.from_server_receive = trio.testing.memory_stream_one_way_pair()
        self.exited = trio.Event()
        self.code = 0

    @property
    def send_stream(self) -> trio.abc.SendStream:
        return self.to_server_send

    @property
    def receive_stream(self) -> trio.abc.ReceiveStream:
        return self.from_server_receive

    async def wait(self) -> int:
        await self.exited.wait()
        return self.code

    async def say(self, message: dict[str, object]) -> None:
        await self.from_server_send.send_all(msgspec.json.encode(message) + b"\n")

    async def exit(self, code: int) -> None:
        self.code = code
        self.exited.set()
        await self.from_server_send.aclose()


class FakeLauncher:
    def __init__(self) -> None:
        self.processes: list[FakeProcess] = []
        self.ended: list[str] = []

    @asynccontextmanager
    async def launch(self, session_id: str) -> AsyncIterator[ServerProcess]:
        process = FakeProcess()
        self.processes.append(process)
        try:
            yield process
        finally:
            self.ended.append(session_id)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def start_table(nursery: trio.Nursery, **overrides: object) -> tuple[SessionTable, FakeLauncher, Metrics]:
    launcher, metrics = FakeLauncher(), Metrics()
    table = SessionTable(AdapterSettings(**overrides), launcher, metrics)  # type: ignore[arg-type]
    await nursery.start(table.run)
    return table, launcher, metrics


async def test_request_reaches_the_process_and_its_answer_the_listener(nursery: trio.Nursery) -> None:
    table, launcher, metrics = await start_table(nursery)
    session = await table.create("streamable")
    stream = session.core.open_stream()
    with session.listen(stream, fresh=True) as channel:
        await session.post([jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')], stream)
        process = launcher.processes[0]
        assert await process.to_server_receive.receive_some() == b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'
        await process.say({"jsonrpc": "2.0", "id": 1, "result": {}})
        item = await channel.receive()
    assert item.last and item.response
    assert msgspec.json.decode(item.data) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert metrics.requests["ping"] == 1


async def test_process_exit_fails_pending_and_removes_the_session(nursery: trio.Nursery) -> None:
    table, launcher, metrics = await start_table(nursery)
    session = await table.create("streamable")
    stream = session.core.open_stream()
    with session.listen(stream, fresh=True) as channel:
        await session.post([jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":"x","method":"tools/call"}')], stream)
        await launcher.processes[0].exit(-9)
        item = await channel.receive()
    error = msgspec.json.decode(item.data)["error"]
    assert error["code"] == jsonrpc.SERVER_GONE
    assert "killed by SIGKILL" in error["message"]
    await session.ended.wait()
    assert table.get(session.id) is None
    assert metrics.child_exits == 1


async def test_idle_session_is_reaped_but_a_listened_one_is_not(
        nursery: trio.Nursery, clock: trio.testing.MockClock) -> None:
    table, launcher, _ = await start_table(nursery, session_idle_timeout=60.0)
    idle = await table.create("streamable")
    listened = await table.create("streamable")
    with listened.listen(STANDALONE):
        await trio.sleep(61)
        assert table.get(idle.id) is None
        assert launcher.ended == [idle.id]
        assert table.get(listened.id) is listened
    await trio.sleep(121)
    assert table.get(listened.id) is None


async def test_max_sessions_counts_live_sessions_only(nursery: trio.Nursery) -> None:
    table, _, metrics = await start_table(nursery, max_sessions=1)
    first = await table.create("sse")
    with pytest.raises(TooManySessions):
        await table.create("sse")
    first.end("done")
    await first.ended.wait()
    await trio.testing.wait_all_tasks_blocked()
    await table.create("sse")
    assert metrics.sessions_rejected == 1
    assert metrics.sessions_total == 2


async def test_end_all_ends_warm_processes_too(nursery: trio.Nursery) -> None:
    table, launcher, _ = await start_table(nursery, warm_pool=2)
    await trio.testing.wait_all_tasks_blocked()
    assert table.warm == 2
    assert len(table) == 0
    await table.create("streamable")
    await trio.testing.wait_all_tasks_blocked()
    assert (table.warm, len(table), len(launcher.processes)) == (2, 1, 3)
    table.end_all("shutdown")
    with trio.fail_after(5):
        await table.wait_empty()
    assert len(launcher.ended) == 3


async def test_child_stderr_is_forwarded_line_by_line_with_the_session_prefix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import types

    from kmcp.adapter.stdio.launcher import _forward_stderr

    sink = io.BytesIO()
    monkeypatch.setattr("sys.stderr", types.SimpleNamespace(buffer=sink))
    send, receive = trio.testing.memory_stream_one_way_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_forward_stderr, receive, b"[abcd1234] ")
        await send.send_all(b"first line\nsecond ")
        await trio.testing.wait_all_tasks_blocked()
        assert sink.getvalue() == b"[abcd1234] first line\n"  # a partial line waits for its end
        await send.send_all(b"half\nno newline at exit")
        await send.aclose()
    assert sink.getvalue() == (b"[abcd1234] first line\n[abcd1234] second half\n"
                               b"[abcd1234] no newline at exit\n")


async def test_server_output_split_anywhere_and_oversized_lines_are_handled(nursery: trio.Nursery) -> None:
    table, launcher, _ = await start_table(nursery, max_line_bytes=100)
    session = await table.create("streamable")
    stream = session.core.open_stream()
    with session.listen(stream, fresh=True) as channel:
        requests = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % i for i in (1, 2))
        await session.post(jsonrpc.parse_body(b"[" + requests.replace(b"\n", b",").rstrip(b",") + b"]")[0], stream)
        out = launcher.processes[0].from_server_send
        await out.send_all(b'{"jsonrpc":"2.0",')
        await out.send_all(b'"id":1,"result":{}}\n{"jsonrpc":"2.0","id":2,"result":{"big":"' + b"y" * 150)
        await out.send_all(b'"}}\n{"jsonrpc":"2.0","id":2,"result":{"small":true}}\n')
        first = await channel.receive()
        second = await channel.receive()
    assert msgspec.json.decode(first.data)["id"] == 1
    assert msgspec.json.decode(second.data)["result"] == {"small": True}  # the oversized line was dropped
    assert second.last


def test_inbox_is_bounded_in_bytes_but_takes_one_large_message_when_empty() -> None:
    from kmcp.adapter.sessions.runtime import StreamItem, stream_inbox

    inbox = stream_inbox(100)
    inbox.send_nowait(StreamItem(1, 0, b"a" * 60, False, False))
    with pytest.raises(trio.WouldBlock):
        inbox.send_nowait(StreamItem(2, 0, b"b" * 60, False, False))
    assert inbox.receive_nowait().seq == 1
    inbox.send_nowait(StreamItem(3, 0, b"c" * 1000, False, False))  # empty: a message over the bound passes
    with pytest.raises(trio.WouldBlock):
        inbox.send_nowait(StreamItem(4, 0, b"d", False, False))


async def test_event_log_is_bounded_in_bytes_and_keeps_the_newest(nursery: trio.Nursery) -> None:
    table, launcher, _ = await start_table(nursery, event_log_bytes=250)
    session = await table.create("streamable")
    stream = session.core.open_stream()
    with session.listen(stream, fresh=True):
        requests = [jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % i) for i in range(10)]
        await session.post(requests, stream)
        for i in range(10):
            await launcher.processes[0].say({"jsonrpc": "2.0", "id": i, "result": {"pad": "x" * 80}})
        await trio.testing.wait_all_tasks_blocked()
    with session.listen(stream, after=0) as replay:
        ids = [msgspec.json.decode(item.data)["id"] for item in [replay.receive_nowait() for _ in range(2)]]
        with pytest.raises(trio.EndOfChannel):
            replay.receive_nowait()
    assert ids == [8, 9]  # ~110 bytes each: two fit in 250
    session.end("test")
    await session.ended.wait()
    assert not session._log and not session._unclaimed  # freed with the session


class FifoProcess(FakeProcess):
    """A server whose stdout is a FIFO the adapter holds open read-write, as the pod's FIFO bridge does: its exit
    never shows as EOF on stdout, only through wait()."""

    def __init__(self, fifo: Path) -> None:
        super().__init__()
        os.mkfifo(fifo)
        self.fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        self.stdout = trio.lowlevel.FdStream(self.fd)

    @property
    def receive_stream(self) -> trio.abc.ReceiveStream:
        return self.stdout

    async def say(self, message: dict[str, object]) -> None:
        os.write(self.fd, msgspec.json.encode(message) + b"\n")

    async def exit(self, code: int) -> None:
        self.code = code
        self.exited.set()  # the FIFO stays open: no EOF


async def test_exit_without_eof_still_fails_pending_after_delivering_what_was_written(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    class FifoLauncher(FakeLauncher):
        @asynccontextmanager
        async def launch(self, session_id: str) -> AsyncIterator[ServerProcess]:
            process = FifoProcess(tmp_path / f"{session_id}.out")
            self.processes.append(process)
            try:
                yield process
            finally:
                await process.stdout.aclose()
                self.ended.append(session_id)

    launcher, metrics = FifoLauncher(), Metrics()
    table = SessionTable(AdapterSettings(), launcher, metrics)
    await nursery.start(table.run)
    session = await table.create("streamable")
    stream = session.core.open_stream()
    with session.listen(stream, fresh=True) as channel:
        await session.post([jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":1,"method":"ping"}'),
                            jsonrpc.parse_message(b'{"jsonrpc":"2.0","id":2,"method":"tools/call"}')], stream)
        process = launcher.processes[0]
        await process.say({"jsonrpc": "2.0", "id": 1, "result": {}})
        await process.exit(-9)  # the container died: the bridge reports the exit, stdout never ends
        with trio.fail_after(5):
            answers = [msgspec.json.decode((await channel.receive()).data) for _ in range(2)]
    assert {"jsonrpc": "2.0", "id": 1, "result": {}} in answers
    (failed,) = [a for a in answers if a.get("id") == 2]
    assert failed["error"]["code"] == jsonrpc.SERVER_GONE
    with trio.fail_after(5):
        await session.ended.wait()
    assert table.get(session.id) is None
