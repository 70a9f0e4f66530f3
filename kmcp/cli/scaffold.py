"""`kmcp init` and `kmcp add-tool`: create an MCP server project, grow it by one tool (see :mod:`kmcp.scaffold`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kmcp.cli.common import Commands
from kmcp.errors import EXIT_OK


def register(commands: Commands) -> None:
    p = commands.add("init", init_command, "create an MCP server project (Python on mcp 2.x, or the Go MCP SDK)",
                     'kmcp init python my-mcp-server --description "Tools for my team"')
    p.add_argument("framework", choices=("python", "go"), help="python (MCPServer, mcp 2.x) or go (Go MCP SDK)")
    p.add_argument("directory", help="project directory (created if missing; must be empty unless --force)")
    p.add_argument("--force", action="store_true", help="write the project files into a non-empty directory")
    p.add_argument("--name", help="project name in kmcp.yaml (default: from the directory name)")
    p.add_argument("--description", help="one-line description of the server")

    p = commands.add("add-tool", add_tool_command,
                     "add a tool stub to an MCP server project and declare it in kmcp.yaml",
                     'kmcp add-tool weather --description "Current weather for a city" --project-dir my-mcp-server')
    p.add_argument("name", help="tool name (letters, digits, _ and -)")
    p.add_argument("--description", help="what the tool does (becomes its MCP description)")
    p.add_argument("--project-dir", default=".", help="project directory (default: .)")


def init_command(args: argparse.Namespace) -> int:
    from kmcp.scaffold import InitRequest, init_project

    directory = Path(args.directory)
    written = init_project(InitRequest(args.framework, directory, name=args.name,
                                       description=args.description or "", force=args.force))
    print(f"created {args.framework} MCP server project in {directory}:")
    for path in written:
        print(f"  {path.relative_to(directory)}")
    if args.framework == "python":  # kmcp run uses the project's .venv (or uv run when uv is on PATH)
        print(f"next: python -m venv {directory}/.venv && {directory}/.venv/bin/pip install -e {directory}"
              "   # or: uv sync")
        print(f"      kmcp run --project-dir {directory}   # http://127.0.0.1:3000/mcp and the MCP Inspector")
    else:
        print(f"next: kmcp run --project-dir {directory}   # http://127.0.0.1:3000/mcp and the MCP Inspector")
    print(f"then: kmcp build --project-dir {directory} -t <image>:latest")
    return EXIT_OK


def add_tool_command(args: argparse.Namespace) -> int:
    from kmcp.scaffold import AddToolRequest, add_tool

    changed = add_tool(AddToolRequest(args.name, Path(args.project_dir), description=args.description or ""))
    print(f"added tool {args.name}: " + ", ".join(str(p) for p in changed))
    return EXIT_OK
