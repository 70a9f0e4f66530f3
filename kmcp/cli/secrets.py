"""`kmcp secrets sync ENV`: the Secret named in kmcp.yaml secrets.ENV, from the project's .env file (see
:mod:`kmcp.commands.secrets`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kmcp.cli.common import Commands, kube_flags, subcommands
from kmcp.errors import EXIT_OK, BadInput


def register(commands: Commands) -> None:
    p = commands.add("secrets", secrets_command, "manage the project's secrets",
                     "kmcp secrets sync staging --project-dir my-mcp-server")
    sp = subcommands(p, "secrets_command", "sync").add(
        "sync", sync_command, "create or update the Secret of kmcp.yaml secrets.ENV from its .env file",
        "kmcp secrets sync staging --project-dir my-mcp-server",
        description="create or update the Secret named in kmcp.yaml secrets.ENV from the local .env file "
                    "(server-side apply)")
    sp.add_argument("environment", help="environment in kmcp.yaml secrets (e.g. staging)")
    sp.add_argument("--project-dir", default=".", help="project directory (default: .)")
    sp.add_argument("-n", "--namespace", help="namespace (default: secrets.ENV.namespace, else default)")
    kube_flags(sp)


def secrets_command(args: argparse.Namespace) -> int:
    raise BadInput("secrets needs a subcommand: kmcp secrets sync ENV")


def sync_command(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_with_kube
    from kmcp.commands.secrets import secret_for_environment, sync

    secret = secret_for_environment(Path(args.project_dir), args.environment, args.namespace)
    run_with_kube(args.kubeconfig, lambda client: sync(client, secret))
    return EXIT_OK
