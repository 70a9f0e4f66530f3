"""`kmcp run`: the project's MCP server on 127.0.0.1 over HTTP, with the MCP Inspector (see
:mod:`kmcp.commands.run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kmcp.cli.common import Commands


def register(commands: Commands) -> None:
    p = commands.add("run", run_command, "run the project's MCP server locally over HTTP (and open the MCP Inspector)",
                     "kmcp run --project-dir my-mcp-server --port 3000")
    p.add_argument("--project-dir", default=".", help="project directory with kmcp.yaml (default: .)")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default 3000, or the next free one when 3000 is in "
                   "use; a --port in use is an error)")
    p.add_argument("--no-inspector", action="store_true", help="do not start the MCP Inspector (pinned "
                   "@modelcontextprotocol/inspector on 127.0.0.1, installed with npm on first use; needs node and npm)")


def run_command(args: argparse.Namespace) -> int:
    from kmcp.commands.run import RunRequest, run_project

    return run_project(RunRequest(Path(args.project_dir), port=args.port, inspector=not args.no_inspector))
