"""The `kmcp` command line: argv -> one mode or command.

Each command lives in a module of this package that adds its own sub-parser (``register(commands)``) and runs it
(``args.run(args)``); this module only builds the top-level parser, asks each of them to register, and dispatches.
The command modules import what does the work (:mod:`kmcp.commands`, :mod:`kmcp.scaffold`, ...) only when their
command runs, so `kmcp --version` stays fast.

Exit codes: 0 success, 1 the operation failed (:class:`kmcp.errors.CommandFailed`), 2 bad usage or invalid input
(:class:`kmcp.errors.BadInput`, or argparse's own). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from kmcp import __version__
from kmcp.cli import (
    build,
    completion,
    deploy,
    dev,
    get,
    install,
    manifests,
    portforward,
    run,
    scaffold,
    secrets,
    version,
)
from kmcp.cli.common import Commands, Run
from kmcp.errors import EXIT_FAILED, EXIT_USAGE, BadInput, CommandFailed

# In the order `kmcp --help` and the completion scripts list their commands.
COMMAND_MODULES = (manifests, scaffold, build, run, install, deploy, get, secrets, portforward, dev, completion,
                   version)

# Modes with their own argument parsers, dispatched before argparse sees argv (their `--` and flags are theirs).
MODES: dict[str, tuple[str, str]] = {
    "controller": ("kmcp.controller.cli", "reconcile MCPServers in a cluster (run `kmcp controller --help`)"),
    "adapter": ("kmcp.adapter.cli", "serve a stdio MCP server over HTTP (run `kmcp adapter --help`)"),
}

EXAMPLES = """\
modes:
  kmcp controller [--leader-elect] ...  reconcile MCPServers (run `kmcp controller --help`)
  kmcp adapter -- CMD [ARGS...]         serve a stdio MCP server over HTTP (Streamable HTTP /mcp, SSE /sse)

quick start (no cluster needed):
  kmcp dev up --check                      local control plane + controller + an example MCP server; talk MCP to it

examples:
  kmcp render -f mcpserver.yaml            print the Deployment, Service and ServiceAccount for an MCPServer
  kmcp validate -f mcpserver.yaml          check an MCPServer the way the controller will
  kmcp crd > kagent.dev_mcpservers.yaml    print the MCPServer CustomResourceDefinition
  kmcp init python my-mcp-server           scaffold an mcp 2.x server (or: kmcp init go my-mcp-server)
  kmcp build --project-dir my-mcp-server -t my-mcp-server:latest --kind-load-cluster kind
  kmcp run --project-dir my-mcp-server     serve it on http://127.0.0.1:3000/mcp and open the MCP Inspector
  kmcp install                             install the CRD and the controller into the current cluster
  kmcp deploy --file my-mcp-server/kmcp.yaml --image my-mcp-server:latest
  kmcp get -A ; kmcp status my-mcp-server  MCPServers, their conditions and events
  kmcp adapter --listen 127.0.0.1:3000 -- python server.py
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmcp",
        description="kmcp: run MCP servers on Kubernetes (controller, stdio transport adapter, developer CLI).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kmcp {__version__}")
    commands = Commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    for name, (_, help_text) in MODES.items():
        commands.add_name(name, help_text)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: list[str]) -> int:
    if argv and argv[0] in MODES:
        module = importlib.import_module(MODES[argv[0]][0])
        result: int = module.main(argv[1:])
        return result
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Run | None = getattr(args, "run", None)
    if command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return command(args)
    except BadInput as error:
        print(f"kmcp: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CommandFailed as error:
        print(f"kmcp: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
