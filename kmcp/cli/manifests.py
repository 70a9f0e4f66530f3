"""`kmcp render`, `kmcp validate`, `kmcp crd`: MCPServer YAML in, Kubernetes objects out, no cluster needed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kmcp.cli.common import Commands, print_objects
from kmcp.errors import EXIT_OK, BadInput


def register(commands: Commands) -> None:
    p = commands.add("render", render_command, "print the Kubernetes objects the controller creates for MCPServers",
                     "kmcp render -f examples/mcpservers/filesystem.yaml")
    p.add_argument("-f", "--file", required=True, help="MCPServer YAML file (- for stdin)")
    p.add_argument("-n", "--namespace", help="namespace for MCPServers that name none")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.add_argument("--adapter-image", help="image of the kmcp-adapter sidecar")

    p = commands.add("validate", validate_command, "validate MCPServer YAML without a cluster",
                     "kmcp validate -f mcpserver.yaml")
    p.add_argument("-f", "--file", required=True, help="MCPServer YAML file (- for stdin)")

    commands.add("crd", crd_command, "print the MCPServer CustomResourceDefinition", "kmcp crd | kubectl apply -f -")


def render_command(args: argparse.Namespace) -> int:
    from kmcp.render import RenderSettings, render

    settings = RenderSettings(adapter_image=args.adapter_image) if args.adapter_image else RenderSettings()
    objects: list[dict[str, Any]] = []
    for server in mcpservers(args.file):
        if args.namespace and not server.metadata.namespace:
            server.metadata.namespace = args.namespace
        objects.extend(render(server, settings))
    print_objects(objects, args.output)
    return EXIT_OK


def validate_command(args: argparse.Namespace) -> int:
    """Every problem of every document, one line each (the last is the command's error), not only the first."""
    from kmcp.validation import every_problem

    count, lines = 0, []
    for index, doc in mcpserver_documents(args.file):
        found = every_problem(doc)
        lines += [f"{args.file} (document {index + 1}): {problem}" for problem in found]
        count += not found
    if lines:
        for line in lines[:-1]:
            print(f"kmcp: error: {line}", file=sys.stderr)
        raise BadInput(lines[-1])
    print(f"{args.file}: {count} valid MCPServer{'s' if count != 1 else ''}")
    return EXIT_OK


def crd_command(args: argparse.Namespace) -> int:
    from kmcp.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return EXIT_OK


def _yaml_documents(path: str) -> Iterator[tuple[int, Any]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        raise BadInput(f"{path}: {error.strerror or error}") from None
    try:
        for index, doc in enumerate(yaml.load_all(text, Loader=loader)):
            if doc is not None:
                yield index, doc
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(error, "problem", None) or str(error)
        raise BadInput(f"{where}: invalid YAML: {problem}") from None


def mcpserver_documents(path: str) -> Iterator[tuple[int, Any]]:
    """(index, document) of every would-be MCPServer in a (multi-document) YAML file; other kinds are skipped
    with a note, and a file with none is BadInput."""
    from kmcp import spec

    found = False
    for index, doc in _yaml_documents(path):
        if isinstance(doc, dict) and doc.get("kind") not in (None, spec.KIND):
            name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
            print(f"kmcp: skipping {doc.get('kind')}/{name} (document {index + 1}): not an MCPServer",
                  file=sys.stderr)
            continue
        found = True
        yield index, doc
    if not found:
        raise BadInput(f"{path}: no MCPServer found")


def mcpservers(path: str) -> Iterator[Any]:
    """Every MCPServer in a (multi-document) YAML file, validated: the first problem is BadInput."""
    from kmcp import spec

    for index, doc in mcpserver_documents(path):
        try:
            yield spec.validated(doc)
        except spec.SpecError as error:
            raise BadInput(f"{path} (document {index + 1}): {error}") from None
