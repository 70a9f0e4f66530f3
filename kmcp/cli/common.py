"""What the command modules of :mod:`kmcp.cli` share: one way to add a sub-parser, the flags several commands
take, and printing object lists. Imports nothing heavy: every command module imports this at `kmcp --version`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

Run = Callable[[argparse.Namespace], int]


class Commands:
    """Where a command module adds its sub-parsers, all with the same help layout: the help line is also the
    description, and the example goes in an ``example:`` epilog. The chosen one's ``run(args)`` is ``args.run``."""

    def __init__(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._subparsers = subparsers

    def add(self, name: str, run: Run, help_text: str, example: str = "", *,
            description: str | None = None) -> argparse.ArgumentParser:
        parser = self._subparsers.add_parser(name, help=help_text, description=description or help_text,
                                             epilog=f"example:\n  {example}" if example else None,
                                             formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.set_defaults(run=run)
        return parser

    def add_name(self, name: str, help_text: str) -> None:
        """A name with its own argument parser elsewhere (a mode): listed in help and completion only."""
        self._subparsers.add_parser(name, help=help_text)


def subcommands(parser: argparse.ArgumentParser, dest: str, metavar: str) -> Commands:
    """Sub-commands under a command (``kmcp secrets sync``, ``kmcp dev up``)."""
    return Commands(parser.add_subparsers(dest=dest, metavar=metavar))


def seconds(text: str) -> float:
    """90, 90s, 5m, 1h -> seconds (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 5m)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def kube_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")


def print_objects(objects: list[dict[str, Any]], output: str) -> None:
    """A kubectl-style List as JSON, or the objects as a YAML stream."""
    if output == "json":
        import json

        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        from kmcp.render import to_yaml

        sys.stdout.write(to_yaml(objects))
