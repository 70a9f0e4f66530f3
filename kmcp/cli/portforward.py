"""`kmcp port-forward`: a local port to a Ready pod of an MCPServer (see :mod:`kmcp.commands.portforward`)."""

from __future__ import annotations

import argparse

from kmcp.cli.common import Commands, kube_flags


def register(commands: Commands) -> None:
    p = commands.add("port-forward", port_forward_command,
                     "forward a local port to a Ready pod of an MCPServer (Kubernetes port-forward over WebSocket)",
                     "kmcp port-forward my-mcp-server -n default --port 3000 --inspector")
    p.add_argument("name", help="the MCPServer")
    p.add_argument("-n", "--namespace", help="namespace (default: default)")
    p.add_argument("--port", type=int, default=3000, help="local port (default 3000)")
    p.add_argument("--pod-port", type=int, default=3000, help="port in the pod (default 3000)")
    p.add_argument("--address", default="127.0.0.1", help="local address (default 127.0.0.1)")
    p.add_argument("--inspector", action="store_true", help="also start the MCP Inspector on 127.0.0.1, opened on "
                   "the forwarded server (needs node and npm)")
    kube_flags(p)


def port_forward_command(args: argparse.Namespace) -> int:
    from kmcp.commands.portforward import forward_and_inspect

    return forward_and_inspect(args.kubeconfig, args.name, args.namespace or "default", args.pod_port,
                               local_port=args.port, address=args.address, inspector=args.inspector)
