"""A floor for any Python stdio->HTTP gateway: raw h11 on trio, one child per session, and nothing else.

No JSON-RPC parsing (a body with an ``"id"`` is a request whose answer is the child's next stdout line), no
validation, timeouts, limits, SSE, metrics or drain. Only for bench/gateways.py (row ``bare``): the CPU per call
a gateway on this stack cannot go below, to compare kmcp's adapter against.

Usage: python bench/bare_gateway.py PORT -- CMD [ARGS...]
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import h11
import trio


class Child:
    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.stdin = process.stdin
        self.stdout = process.stdout
        self.buffer = b""
        self.lock = trio.Lock()

    async def call(self, body: bytes) -> bytes:
        async with self.lock:
            await self.stdin.send_all(body + b"\n")
            while b"\n" not in self.buffer:
                self.buffer += await self.stdout.receive_some(65536)
            line, _, self.buffer = self.buffer.partition(b"\n")
            return line


async def main(port: int, command: list[str]) -> None:
    children: dict[bytes, Child] = {}

    async with trio.open_nursery() as nursery:

        async def connection(stream: trio.SocketStream) -> None:
            conn = h11.Connection(h11.SERVER)
            while True:
                head = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Request):
                        head = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
                assert head is not None
                headers = dict(head.headers)
                status, reply, extra = 202, b"", []
                session = headers.get(b"mcp-session-id", b"")
                if head.method == b"DELETE":
                    status = 200
                elif b'"method":"initialize"' in body:
                    process = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                    session = secrets.token_hex(16).encode()
                    children[session] = Child(process)
                    status, reply = 200, await children[session].call(body)
                elif b'"id":' in body:
                    status, reply = 200, await children[session].call(body)
                else:
                    await children[session].stdin.send_all(body + b"\n")
                if status == 200:
                    extra = [(b"content-type", b"application/json")]
                out = conn.send(h11.Response(status_code=status, headers=[
                    (b"mcp-session-id", session), (b"content-length", str(len(reply)).encode()), *extra]))
                out = (out or b"") + (conn.send(h11.Data(data=reply)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
                await stream.send_all(out)
                conn.start_next_cycle()

        async def safe(stream: trio.SocketStream) -> None:
            try:
                await connection(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
                pass
            finally:
                await stream.aclose()

        await nursery.start(trio.serve_tcp, safe, port)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[sys.argv.index("--") + 1:])
