"""``kmcp port-forward``: a local TCP port -> a Ready pod of an MCPServer, over the Kubernetes port-forward
WebSocket protocol (``/api/v1/namespaces/NS/pods/POD/portforward?ports=P``, subprotocol ``v4.channel.k8s.io``).

Framing (the kubelet's websocket port-forward): every binary message starts with a channel byte; for the one
forwarded port, channel 0 carries data and channel 1 errors; the first message the server sends on each channel
carries the port as two little-endian bytes. :class:`PortForwardChannels` is that framing as a sans-IO state
machine; the Trio code around it only moves bytes. One WebSocket per accepted TCP connection, as kubectl does.

Not proven against a real kubelet here: the test cluster has none; tests drive it with a WebSocket server that
speaks the same framing.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import trio
import trio_websocket

from kmcp import kube
from kmcp.commands.cluster import PODS, api_errors, condition, load_kube_config
from kmcp.errors import CommandFailed, plain_errors

Obj = dict[str, Any]
DATA_CHANNEL = 0
ERROR_CHANNEL = 1
SUBPROTOCOLS = ["v4.channel.k8s.io", "portforward.k8s.io"]


class PortForwardProtocolError(Exception):
    """The other side broke the channel framing."""


@dataclass(frozen=True)
class Data:
    data: bytes


@dataclass(frozen=True)
class RemoteError:
    message: str


def port_header(channel: int, port: int) -> bytes:
    """The first message on a channel: the channel byte and the port, little-endian."""
    return bytes([channel]) + port.to_bytes(2, "little")


class PortForwardChannels:
    """Client side of one forwarded port: frames outgoing data, parses incoming messages into events."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._header_seen = {DATA_CHANNEL: False, ERROR_CHANNEL: False}

    def data_message(self, data: bytes) -> bytes:
        return bytes([DATA_CHANNEL]) + data

    def receive(self, message: bytes) -> list[Data | RemoteError]:
        if not message:
            return []
        channel, payload = message[0], message[1:]
        if channel not in self._header_seen:
            raise PortForwardProtocolError(f"message on unknown channel {channel}")
        if not self._header_seen[channel]:
            if len(payload) < 2:
                raise PortForwardProtocolError(f"channel {channel}: first message too short for the port")
            port = int.from_bytes(payload[:2], "little")
            if port != self.port:
                raise PortForwardProtocolError(f"channel {channel}: server names port {port}, expected {self.port}")
            self._header_seen[channel] = True
            payload = payload[2:]
            if not payload:
                return []
        if channel == DATA_CHANNEL:
            return [Data(payload)]
        return [RemoteError(payload.decode(errors="replace"))]


def portforward_url(server: str, namespace: str, pod: str, port: int) -> str:
    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return f"{base}/api/v1/namespaces/{namespace}/pods/{pod}/portforward?ports={port}"


Connector = Callable[[], AbstractAsyncContextManager[trio_websocket.WebSocketConnection]]


async def forward_connection(stream: trio.abc.Stream, connect: Connector, port: int) -> None:
    """Pump one local TCP connection through one port-forward WebSocket until either side closes."""
    channels = PortForwardChannels(port)
    async with connect() as ws, trio.open_nursery() as nursery:
        async def upstream() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError,
                                     trio_websocket.ConnectionClosed):
                while data := await stream.receive_some(65536):
                    await ws.send_message(channels.data_message(bytes(data)))
            nursery.cancel_scope.cancel()

        async def downstream() -> None:
            with contextlib.suppress(trio_websocket.ConnectionClosed, trio.BrokenResourceError,
                                     trio.ClosedResourceError):
                while True:
                    message = await ws.get_message()
                    raw = message.encode() if isinstance(message, str) else message
                    for event in channels.receive(raw):
                        if isinstance(event, Data):
                            await stream.send_all(event.data)
                        else:
                            print(f"kmcp: port-forward: {event.message}", file=sys.stderr, flush=True)
            nursery.cancel_scope.cancel()

        nursery.start_soon(upstream)
        nursery.start_soon(downstream)


async def serve_forward(connect: Connector, port: int, local_port: int, address: str = "127.0.0.1", *,
                        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``address:local_port`` (0 picks one; reported through task_status) and forward each connection."""
    listeners = await trio.open_tcp_listeners(local_port, host=address)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                await forward_connection(stream, connect, port)
            except trio_websocket.ConnectionRejected as error:
                print(f"kmcp: port-forward: {rejection_message(error)}", file=sys.stderr, flush=True)
            except (OSError, trio_websocket.HandshakeError, PortForwardProtocolError) as error:
                print(f"kmcp: port-forward: connection failed: {error}", file=sys.stderr, flush=True)

    task_status.started(int(listeners[0].socket.getsockname()[1]))
    await trio.serve_listeners(handle, listeners)


def rejection_message(error: trio_websocket.ConnectionRejected) -> str:
    """The apiserver's Status message for a refused upgrade, on one line."""
    detail = (error.body or b"").decode(errors="replace").strip()
    with contextlib.suppress(ValueError):
        decoded = json.loads(detail)
        if isinstance(decoded, dict) and decoded.get("message"):
            detail = str(decoded["message"])
    return f"the apiserver refused the port-forward ({error.status_code}): {detail[:300]}"


def websocket_connector(config: kube.KubeConfig, url: str) -> Connector:
    headers = [(b"Authorization", f"Bearer {config.token}".encode())] if config.token else []
    context: ssl.SSLContext | None = config.ssl_context if url.startswith("wss://") else None

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[trio_websocket.WebSocketConnection]:
        async with trio_websocket.open_websocket_url(url, ssl_context=context, subprotocols=SUBPROTOCOLS,
                                                     extra_headers=headers) as ws:
            yield ws

    return connect


def _pod_ready(pod: Obj) -> bool:
    cond = condition(pod, "Ready")
    return (not (pod.get("metadata") or {}).get("deletionTimestamp") and (pod.get("status") or {}).get("phase")
            == "Running" and bool(cond and cond.get("status") == "True"))


async def ready_pod(client: kube.Kube, name: str, namespace: str) -> str:
    """Name of a Ready pod of MCPServer ``name``, or a clear CommandFailed."""
    pods = (await client.list(PODS, namespace, label_selector=f"app.kubernetes.io/instance={name}")).get("items") or []
    for pod in pods:
        if _pod_ready(pod):
            return str(pod["metadata"]["name"])
    seen = ", ".join(f"{p['metadata']['name']} {(p.get('status') or {}).get('phase', 'Unknown')}" for p in pods)
    detail = f"pods: {seen}" if pods else "no pods at all (is a kubelet running the Deployment?)"
    raise CommandFailed(f"no Ready pod for mcpserver {namespace}/{name} to port-forward to: {detail}")


async def _run_inspector(url: str) -> None:
    """The pinned MCP Inspector on 127.0.0.1, opened on ``url`` (see :mod:`kmcp.commands.inspector`), until
    cancelled; then its whole process group is stopped."""
    from kmcp.commands.inspector import run_inspector

    await run_inspector(url, say=lambda line: print(line, flush=True))


async def _report_mcp_check(url: str) -> None:
    from kmcp.commands.mcpcheck import check_mcp

    try:
        print((await check_mcp(url)).summary(), flush=True)
    except CommandFailed as error:
        print(f"kmcp: MCP check through the port-forward failed: {error}", file=sys.stderr, flush=True)


def forward_and_inspect(kubeconfig: str | None, name: str, namespace: str, port: int, *, local_port: int = 3000,
                        address: str = "127.0.0.1", inspector: bool = True, check: bool = False) -> int:
    """Forward ``address:local_port`` to a Ready pod of the MCPServer until Ctrl-C; optionally list its tools once
    through the forward (``check``: the MCP line kmcp deploy prints) and run the Inspector."""
    config = load_kube_config(kubeconfig)

    async def main() -> None:
        with api_errors(config.server):
            async with kube.Kube(config) as client:
                pod = await ready_pod(client, name, namespace)
        connect = websocket_connector(config, portforward_url(config.server, namespace, pod, port))
        async with trio.open_nursery() as nursery:
            try:
                bound = await nursery.start(serve_forward, connect, port, local_port, address)
            except OSError as error:
                raise CommandFailed(f"cannot listen on {address}:{local_port}: {error.strerror or error}") from None
            print(f"Forwarding from {address}:{bound} -> pod {namespace}/{pod}:{port} (Ctrl-C to stop)", flush=True)
            print(f"Streamable HTTP: http://{address}:{bound}/mcp", flush=True)
            if check:
                nursery.start_soon(_report_mcp_check, f"http://{address}:{bound}/mcp")
            if inspector:
                nursery.start_soon(_run_inspector, f"http://{address}:{bound}/mcp")

    with plain_errors():
        trio.run(main)
    return 0
