"""/healthz and /readyz on the probe port. Liveness says the process serves; readiness says caches have synced
(or this instance is a standby waiting for the lease, which is a healthy state too)."""

from __future__ import annotations

from collections.abc import Callable

import trio

from kmcp.controller import httpserver

TEXT = [("content-type", "text/plain; charset=utf-8")]


def probe_handler(ready: Callable[[], bool]) -> httpserver.Handler:
    async def handle(request: httpserver.Request) -> httpserver.Response:
        if request.method not in ("GET", "HEAD"):
            return 405, [*TEXT, ("allow", "GET, HEAD")], b"method not allowed\n"
        if request.path in ("/healthz", "/livez"):
            return 200, TEXT, b"ok\n"
        if request.path == "/readyz":
            return (200, TEXT, b"ok\n") if ready() else (503, TEXT, b"caches not synced\n")
        return 404, TEXT, b"not found\n"

    return handle


async def serve_probes(ready: Callable[[], bool], host: str, port: int, *,
                       task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    await httpserver.serve(probe_handler(ready), host, port, task_status=task_status)
