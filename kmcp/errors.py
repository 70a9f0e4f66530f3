"""The two errors every developer command can end with, and the exit codes they become (see :mod:`kmcp.cli`).

A leaf module: :mod:`kmcp.scaffold`, :mod:`kmcp.commands` and :mod:`kmcp.cli` all import it, so no layer has to
reach up into another for an exception type.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class BadInput(Exception):
    """Bad arguments, input files or project directory, which the user can fix: one line on stderr, exit code 2."""


class CommandFailed(Exception):
    """The operation was attempted and failed (a tool missing or exiting non-zero, the apiserver refusing): one line
    on stderr, exit code 1."""
