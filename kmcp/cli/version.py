"""`kmcp version` (the same as `kmcp --version`)."""

from __future__ import annotations

import argparse

from kmcp import __version__
from kmcp.cli.common import Commands
from kmcp.errors import EXIT_OK


def register(commands: Commands) -> None:
    commands.add("version", version_command, "print the version")


def version_command(args: argparse.Namespace) -> int:
    print(f"kmcp {__version__}")
    return EXIT_OK
