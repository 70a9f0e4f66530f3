"""The h11/trio HTTP layer on its own: a failing handler or a vanishing client never takes the server down."""

from __future__ import annotations

import trio

from kmcp.adapter.server.http import HttpServer, Request, Responder, is_disconnect
from kmcp.adapter.settings import AdapterSettings
from tests.adapter.rawhttp import eventually, request


async def test_handler_crash_gets_500_and_the_server_keeps_serving(nursery: trio.Nursery) -> None:
    async def handler(req: Request, responder: Responder) -> None:
        if req.path == "/boom":
            raise RuntimeError("handler bug (expected in this test)")
        await responder.respond(200, [], b"fine")

    server = HttpServer(handler, AdapterSettings(host="127.0.0.1", port=0))
    port = await nursery.start(server.serve)
    assert (await request(port, "GET", "/boom")).status == 500
    assert (await request(port, "GET", "/ok")).body == b"fine"


async def test_client_leaving_a_stream_ends_its_handler(nursery: trio.Nursery) -> None:
    ended = trio.Event()

    async def handler(req: Request, responder: Responder) -> None:
        try:
            await responder.start(200, [(b"content-type", b"text/event-stream")])
            while True:
                await responder.send(b": tick\n\n")
                await trio.sleep(0.01)
        finally:
            ended.set()

    server = HttpServer(handler, AdapterSettings(host="127.0.0.1", port=0))
    port = await nursery.start(server.serve)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /s HTTP/1.1\r\nhost: x\r\n\r\n")
    assert b"200" in await stream.receive_some(1000)
    await stream.aclose()
    with trio.fail_after(5):
        await ended.wait()

    async def finished() -> bool:  # the exchange is counted out just after the handler returns
        return server.active_exchanges == 0

    await eventually(finished)


async def hang_up_during(handler_waits: str, nursery: trio.Nursery) -> None:
    """A handler that writes nothing more after ``handler_waits`` and waits: the client's hang-up alone must end
    it (through the reader the connection starts for a stream, or for a handler still running a sweep later)."""
    cancelled = trio.Event()

    async def handler(req: Request, responder: Responder) -> None:
        if handler_waits == "streaming":
            await responder.start(200, [(b"content-type", b"text/event-stream")])
            await responder.send(b": started\n\n")
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    server = HttpServer(handler, AdapterSettings(host="127.0.0.1", port=0))
    port = await nursery.start(server.serve)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /call HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    if handler_waits == "streaming":
        assert b"200" in await stream.receive_some(1000)
    else:
        await trio.sleep(0.2)
    await stream.aclose()
    with trio.fail_after(5):  # the server sweeps about once a second
        await cancelled.wait()


async def test_a_client_hanging_up_on_a_quiet_stream_cancels_its_handler(nursery: trio.Nursery) -> None:
    await hang_up_during("streaming", nursery)


async def test_a_client_hanging_up_on_a_long_call_cancels_its_handler_within_a_sweep_or_two(
        nursery: trio.Nursery) -> None:
    await hang_up_during("a call", nursery)


async def test_drain_closes_idle_connections_and_stops_accepting(nursery: trio.Nursery) -> None:
    async def handler(req: Request, responder: Responder) -> None:
        await responder.respond(200, [], b"ok")

    server = HttpServer(handler, AdapterSettings(host="127.0.0.1", port=0))
    done = trio.Event()

    async def serve(task_status: trio.TaskStatus[int]) -> None:
        await server.serve(task_status=task_status)
        done.set()

    port = await nursery.start(serve)
    idle = await trio.open_tcp_stream("127.0.0.1", port)
    server.drain()
    with trio.fail_after(5):
        assert await idle.receive_some(100) == b""
        await done.wait()


def test_disconnect_detection_looks_inside_exception_groups() -> None:
    assert is_disconnect(ExceptionGroup("x", [trio.BrokenResourceError(), ExceptionGroup("y", [OSError()])]))
    assert not is_disconnect(ExceptionGroup("x", [trio.BrokenResourceError(), ValueError()]))


async def test_a_client_still_sending_a_body_past_the_limit_reads_its_413(nursery: trio.Nursery) -> None:
    """The server answers 413 on the head; the client writes its whole body before reading. Closing with the
    body unread would reset the connection and lose the answer: the server reads on until the client closes."""
    async def handler(req: Request, responder: Responder) -> None:
        await responder.respond(200, [], b"ok")

    server = HttpServer(handler, AdapterSettings(host="127.0.0.1", port=0, max_body_bytes=1024))
    port = await nursery.start(server.serve)
    for _ in range(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        body = b"x" * (1 << 20)
        await stream.send_all(b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body))
        await trio.sleep(0.05)  # the 413 and the server's end of the connection arrive before the body is sent
        await stream.send_all(body)
        answer = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 ")
        await stream.aclose()
    assert (await request(port, "GET", "/ok")).body == b"ok"
