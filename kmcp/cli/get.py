"""`kmcp get` and `kmcp status`: MCPServers as a table, one MCPServer's conditions and events (see
:mod:`kmcp.commands.get`)."""

from __future__ import annotations

import argparse

from kmcp.cli.common import Commands, kube_flags
from kmcp.errors import EXIT_OK


def register(commands: Commands) -> None:
    p = commands.add("get", get_command, "list MCPServers: NAME READY TRANSPORT URL AGE", "kmcp get -A")
    p.add_argument("name", nargs="?", help="one MCPServer")
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    kube_flags(p)

    p = commands.add("status", status_command, "show an MCPServer's conditions and recent events",
                     "kmcp status my-mcp-server -n default")
    p.add_argument("name", help="the MCPServer")
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
    kube_flags(p)


def get_command(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_reads
    from kmcp.commands.get import run_get

    run_reads(args.kubeconfig, lambda client: run_get(client, args.namespace, args.all_namespaces, args.output,
                                                      args.name))
    return EXIT_OK


def status_command(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_reads
    from kmcp.commands.get import run_status

    run_reads(args.kubeconfig, lambda client: run_status(client, args.name, args.namespace))
    return EXIT_OK
