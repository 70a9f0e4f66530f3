"""`kmcp dev up|down|echo-server`: a local kmcp in one command (see :mod:`kmcp.commands.devup`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kmcp.cli.common import Commands, subcommands
from kmcp.errors import BadInput


def register(commands: Commands) -> None:
    p = commands.add("dev", dev_command,
                     "a local kmcp in one command: control plane, controller and an example MCP server",
                     "kmcp dev up --check        # start everything, talk MCP to the example, stop\n"
                     "  kmcp dev up --detach && kmcp get -A && kmcp dev down")
    dev = subcommands(p, "dev_command", "{up,down,build,echo-server}")
    dp = dev.add("up", up_command, "start a local control plane, the kmcp controller and an example MCPServer "
                 "served on 127.0.0.1 (Ctrl-C stops everything)", "kmcp dev up --check")
    dp.add_argument("--dir", help="state directory (default: ~/.cache/kmcp/dev)")
    dp.add_argument("--port", type=int, default=3000, help="port of the example's MCP endpoint (default 3000)")
    dp.add_argument("--check", action="store_true",
                    help="once Ready, list and call the example's tools with an MCP client, then stop (exit 0)")
    dp.add_argument("--detach", action="store_true",
                    help="run in the background, showing its log until Ready (the first run's build too; Ctrl-C "
                         "stops only the waiting); stop it with kmcp dev down")
    dp.add_argument("--node", choices=("auto", "real", "local"), default=None,
                    help="where the example's pod runs: on a real node (containerd + kubelet; root), with the local "
                         "pod runner, or auto: real where this machine can run one (default; or $KMCP_DEV_NODE)")
    dp.add_argument("--background", action="store_true", help=argparse.SUPPRESS)  # the process --detach starts
    dp = dev.add("down", down_command, "stop a kmcp dev up --detach (also one still starting or building)",
                 "kmcp dev down")
    dp.add_argument("--dir", help="state directory (default: ~/.cache/kmcp/dev)")
    dp = dev.add("build", build_command, "build and cache the local control plane's binaries from Go source (what "
                 "the first kmcp dev up does: about 9 minutes, once)", "kmcp dev build")
    dp.add_argument("--node", action="store_true", help="also what the real node needs (root): kubelet & co., "
                    "CoreDNS and the kmcp image's root filesystem (about 8 minutes more, once)")
    dev.add("echo-server", echo_server_command, "the bundled example stdio MCP server (echo, add)",
            "kmcp adapter --listen 127.0.0.1:3000 -- kmcp dev echo-server")


def dev_command(args: argparse.Namespace) -> int:
    raise BadInput("dev needs a subcommand: kmcp dev up [--check | --detach], kmcp dev down")


def _settings(args: argparse.Namespace) -> Any:
    from kmcp.commands.devmode import requested_mode
    from kmcp.commands.devup import DevSettings, default_directory

    directory = Path(args.dir).expanduser() if args.dir else default_directory()
    return DevSettings(directory=directory, port=getattr(args, "port", 3000), check=getattr(args, "check", False),
                       detached=getattr(args, "background", False),
                       node=requested_mode(getattr(args, "node", None), os.environ))


def up_command(args: argparse.Namespace) -> int:
    from kmcp.commands import devdetach, devup

    settings = _settings(args)
    if args.detach and args.check:
        raise BadInput("--detach and --check cannot be combined")
    return devdetach.run_detached(settings) if args.detach else devup.run_dev_up(settings)


def down_command(args: argparse.Namespace) -> int:
    from kmcp.commands import devdetach

    return devdetach.run_dev_down(_settings(args))


def build_command(args: argparse.Namespace) -> int:
    from kmcp.commands.devbuild import run_build

    return run_build(node=args.node)


def echo_server_command(args: argparse.Namespace) -> int:
    from kmcp.devcluster.examples_server import main as serve

    return serve()
