"""A bounded, seeded fuzz run against a real ``kmcp adapter`` process (issue 18): mutated HTTP requests, mutated
JSON-RPC bodies and mutated server output. Whatever arrives, the process stays up, never answers 500, and a
good session keeps working. The seed and the case count are fixed, so a failure reproduces."""

from __future__ import annotations

import base64
import os
import random
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import trio
import trio.lowlevel

from kmcp.devcluster.control_plane import free_port
from tests.adapter.rawhttp import RAW_SERVER, Response, request

pytestmark = pytest.mark.slow

SEED = 18
CASES = int(os.environ.get("KMCP_FUZZ_CASES", "3000"))
BATCH = 32  # cases in flight at most: a bounded load, over which fuzzed heads that leave the server waiting overlap
GOOD = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def _call(id: object, name: str = "echo", arguments: object = None) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments if arguments is not None else {"text": "x"}}}


_SPICE = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\\ud800", b"\\udc00", b"\n", b"\r\n", b"\x00", b'"', b"\\",
          b"[" * 100, b"{", b"}", b"null", b"-0", b"1e999", b'"id":null', b'"id":[]', b'"jsonrpc":"1.0"']


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randrange(len(out) + 1)
        if choice < 0.3 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif choice < 0.6:
            out[at:at] = rng.choice(_SPICE)
        elif choice < 0.8:
            del out[at:at + rng.randint(1, 8)]
        else:
            out = out[:at]
    return bytes(out)


def _body(rng: random.Random, id: int) -> bytes:
    kind = rng.random()
    if kind < 0.15:  # valid JSON that is not a valid request
        return msgspec.json.encode(rng.choice([None, 1, "x", [], [1], {"id": id}, {"jsonrpc": "2.0", "id": None,
                                                                                  "method": "ping"}]))
    if kind < 0.25:
        depth = rng.choice([63, 64, 65, 500, 2000])
        return msgspec.json.encode(_call(id, arguments={"d": 0})).replace(b'{"d":0}', b"[" * depth + b"]" * depth)
    return _mutate(rng, msgspec.json.encode(_call(id)))


def _head(rng: random.Random, body: bytes, session: str) -> bytes:
    head = (b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"accept: application/json\r\nmcp-session-id: " + session.encode() + b"\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
    return _mutate(rng, head) + body


def _server_line(rng: random.Random) -> bytes:
    base = rng.choice([b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}',
                       b'{"jsonrpc":"2.0","id":12345,"result":{}}',
                       b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}',
                       b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t"}}',
                       b'{"jsonrpc":"2.0","id":"s1","method":"roots/list"}'])
    return _mutate(rng, base).replace(b"\n", b" ")


async def _raw(port: int, data: bytes) -> bytes:
    """Send raw bytes; read until the server closes or 0.5 s passes (a fuzzed head may leave the server waiting)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    reply = b""
    async with stream:
        await stream.send_all(data)
        with trio.move_on_after(0.5):
            with trio.CancelScope():
                while chunk := await stream.receive_some(65536):
                    reply += chunk
                    if b"\r\n\r\n" in reply and b"content-length" in reply.lower():
                        break
    return reply


async def _initialize(port: int) -> str:
    body = msgspec.json.encode({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}})
    response = await request(port, "POST", "/mcp", body, GOOD)
    assert response.status == 200, response
    return response.headers["mcp-session-id"]


async def _echo(port: int, session: str, text: str) -> Response:
    body = msgspec.json.encode(_call(1, arguments={"text": text}))
    return await request(port, "POST", "/mcp", body, {**GOOD, "mcp-session-id": session})


async def test_fuzzed_input_never_ends_the_adapter_and_a_good_session_keeps_working(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "adapter.log"
    with log.open("wb") as stderr:
        adapter = await trio.lowlevel.open_process(
            [sys.executable, "-m", "kmcp", "adapter", "--listen", f"127.0.0.1:{port}", "--request-timeout", "1",
             "--max-sessions", "1000", "--", *RAW_SERVER], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        with trio.fail_after(20):
            while True:
                try:
                    if (await request(port, "GET", "/health")).status == 200:
                        break
                except OSError:
                    await trio.sleep(0.1)
        good = await _initialize(port)
        rng = random.Random(SEED)
        statuses: dict[int, int] = {}

        async def one(case: int, kind: int, data: bytes) -> None:
            if kind == 0:  # the HTTP layer
                reply = await _raw(port, data)
                status = int(reply[9:12]) if reply.startswith(b"HTTP/1.1 ") and reply[9:12].isdigit() else 0
            else:  # 1: JSON-RPC bodies; 2: what the child prints (an emit call's arguments)
                accept = GOOD["accept"] if kind == 1 else "application/json"  # 2: what precedes goes to GET
                response = await request(port, "POST", "/mcp", data, {**GOOD, "accept": accept,
                                                                      "mcp-session-id": good})
                status = response.status
                if kind == 2:  # answered under its own id (an "id": null line may be taken as its answer)
                    assert status == 200 and response.json()["id"] == case, (case, response)
            statuses[status] = statuses.get(status, 0) + 1
            assert status != 500, f"case {case} got 500"

        limiter = trio.CapacityLimiter(BATCH)

        async def limited(case: int, kind: int, data: bytes) -> None:
            async with limiter:
                await one(case, kind, data)

        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for case in range(CASES):
                    kind = case % 3
                    if kind == 0:
                        data = _head(rng, _body(rng, case), good)
                    elif kind == 1:
                        data = _body(rng, case)
                    else:
                        lines = [base64.b64encode(_server_line(rng)).decode() for _ in range(rng.randint(1, 3))]
                        data = msgspec.json.encode(_call(case, "emit", {"lines": lines}))
                    await limiter.acquire()  # generate in order (the seed decides every case), run overlapped
                    limiter.release()
                    nursery.start_soon(limited, case, kind, data)
                    await trio.lowlevel.checkpoint()
                    if case % 250 == 0:
                        assert adapter.poll() is None, f"the adapter exited by case {case}"
                        answer = await _echo(port, good, f"alive {case}")
                        assert answer.status == 200 and f"alive {case}".encode() in answer.body, (case, answer)
        answer = await _echo(port, good, "the end")
        assert answer.status == 200 and b"the end" in answer.body
        assert statuses.get(200, 0) > CASES // 4  # the mutations left many requests valid: the run meant something
        assert statuses.get(400, 0) > CASES // 10
    finally:
        adapter.terminate()
        with trio.move_on_after(10) as waited:
            await adapter.wait()
        if waited.cancelled_caught:
            adapter.kill()
            await adapter.wait()
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output[-3000:]
