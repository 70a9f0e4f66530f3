"""`kmcp completion bash|zsh|fish`: a completion script generated from the parser itself (see
:mod:`kmcp.commands.completion`), so a new command or flag is covered without touching it."""

from __future__ import annotations

import argparse
import importlib
import sys

from kmcp.cli.common import Commands
from kmcp.errors import EXIT_OK


def register(commands: Commands) -> None:
    p = commands.add("completion", completion_command, "print a shell completion script",
                     "source <(kmcp completion bash)    # or, in ~/.zshrc: source <(kmcp completion zsh)\n"
                     "  kmcp completion fish | source    # fish (~/.config/fish/config.fish)")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))


def completion_command(args: argparse.Namespace) -> int:
    from kmcp.cli import MODES, build_parser
    from kmcp.commands.completion import completion_script

    # The modes' own parsers (importing them costs a moment, only here): their flags complete too.
    modes = {name: importlib.import_module(module).build_parser() for name, (module, _) in MODES.items()}
    sys.stdout.write(completion_script(build_parser(), args.shell, modes))
    return EXIT_OK
