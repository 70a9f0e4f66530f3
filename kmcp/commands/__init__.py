"""Developer commands that need no cluster (build, completion). Each module is imported only when its command runs.

Commands raise :class:`BadInput` for what the user can fix in the command line or the project (exit 2) and
:class:`CommandFailed` when the operation itself failed (exit 1); ``kmcp.cli`` turns both into one-line errors.
"""

from __future__ import annotations


class BadInput(Exception):
    """Bad arguments or an unusable project directory: one line on stderr, exit code 2."""


class CommandFailed(Exception):
    """The operation was attempted and failed (a tool missing or exiting non-zero): exit code 1."""
