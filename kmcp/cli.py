"""The `kmcp` command line: argv -> one mode or command. Imports each command's module only when it runs.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or invalid input. Errors are one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kmcp import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: reported on one line, exit code 2."""


def _load_yaml_documents(path: str) -> Iterator[tuple[int, Any]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    try:
        for index, doc in enumerate(yaml.load_all(text, Loader=loader)):
            if doc is not None:
                yield index, doc
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(error, "problem", None) or str(error)
        raise UsageError(f"{where}: invalid YAML: {problem}") from None


def _mcpservers(path: str) -> Iterator[Any]:
    """Every MCPServer in a (multi-document) YAML file, validated; other kinds are skipped with a note."""
    from kmcp import spec

    found = False
    for index, doc in _load_yaml_documents(path):
        if isinstance(doc, dict) and doc.get("kind") not in (None, spec.KIND):
            name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
            print(f"kmcp: skipping {doc.get('kind')}/{name} (document {index + 1}): not an MCPServer",
                  file=sys.stderr)
            continue
        try:
            yield spec.validated(doc)
        except spec.SpecError as error:
            raise UsageError(f"{path} (document {index + 1}): {error}") from None
        found = True
    if not found:
        raise UsageError(f"{path}: no MCPServer found")


def _print_objects(objects: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        import json

        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        from kmcp.render import to_yaml

        sys.stdout.write(to_yaml(objects))


def cmd_render(args: argparse.Namespace) -> int:
    from kmcp.render import RenderSettings, render

    settings = RenderSettings(adapter_image=args.adapter_image) if args.adapter_image else RenderSettings()
    objects: list[dict[str, Any]] = []
    for server in _mcpservers(args.file):
        if args.namespace and not server.metadata.namespace:
            server.metadata.namespace = args.namespace
        objects.extend(render(server, settings))
    _print_objects(objects, args.output)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    count = sum(1 for _ in _mcpservers(args.file))
    print(f"{args.file}: {count} valid MCPServer{'s' if count != 1 else ''}")
    return EXIT_OK


def cmd_crd(args: argparse.Namespace) -> int:
    from kmcp.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    print(f"kmcp {__version__}")
    return EXIT_OK


EXAMPLES = """\
modes:
  kmcp controller [--leader-elect] ...  reconcile MCPServers (run `kmcp controller --help`)
  kmcp adapter -- CMD [ARGS...]         serve a stdio MCP server over HTTP (Streamable HTTP /mcp, SSE /sse)

examples:
  kmcp render -f mcpserver.yaml            print the Deployment, Service and ServiceAccount for an MCPServer
  kmcp validate -f mcpserver.yaml          check an MCPServer the way the controller will
  kmcp crd > kagent.dev_mcpservers.yaml    print the MCPServer CustomResourceDefinition
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
                example: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=f"example:\n  {example}" if example else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    sub.add_parser("controller", help="reconcile MCPServers in a cluster (run `kmcp controller --help`)")
    sub.add_parser("adapter", help="serve a stdio MCP server over HTTP (run `kmcp adapter --help`)")

    p = command("render", cmd_render, "print the Kubernetes objects the controller creates for MCPServers",
                "kmcp render -f examples/mcpservers/filesystem.yaml")
    p.add_argument("-f", "--file", required=True, help="MCPServer YAML file (- for stdin)")
    p.add_argument("-n", "--namespace", help="namespace for MCPServers that name none")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.add_argument("--adapter-image", help="image of the kmcp-adapter sidecar")

    p = command("validate", cmd_validate, "validate MCPServer YAML without a cluster",
                "kmcp validate -f mcpserver.yaml")
    p.add_argument("-f", "--file", required=True, help="MCPServer YAML file (- for stdin)")

    command("crd", cmd_crd, "print the MCPServer CustomResourceDefinition", "kmcp crd | kubectl apply -f -")
    command("version", cmd_version, "print the version")
    return parser


# Modes with their own argument parsers, dispatched before argparse sees argv (their `--` and flags are theirs).
MODES: dict[str, str] = {
    "adapter": "kmcp.adapter.cli",
    "controller": "kmcp.controller.cli",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in MODES:
        import importlib

        module = importlib.import_module(MODES[argv[0]])
        result: int = module.main(argv[1:])
        return result
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except UsageError as error:
        print(f"kmcp: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
