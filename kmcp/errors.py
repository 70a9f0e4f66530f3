"""The two errors every developer command can end with, and the exit codes they become (see :mod:`kmcp.cli`).

A leaf module: :mod:`kmcp.scaffold`, :mod:`kmcp.commands` and :mod:`kmcp.cli` all import it, so no layer has to
reach up into another for an exception type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class BadInput(Exception):
    """Bad arguments, input files or project directory, which the user can fix: one line on stderr, exit code 2."""


class CommandFailed(Exception):
    """The operation was attempted and failed (a tool missing or exiting non-zero, the apiserver refusing): one line
    on stderr, exit code 1."""


def leaf(error: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of ``types`` in ``error`` or, depth first, in the exception groups it nests."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = leaf(inner, types)
            if found is not None:
                return found
        return None
    return error if isinstance(error, types) else None


@contextlib.contextmanager
def plain_errors() -> Iterator[None]:
    """Trio nurseries wrap errors in exception groups: surface kmcp's own (one line, right exit code)."""
    try:
        yield
    except BaseExceptionGroup as group:
        found = leaf(group, (CommandFailed, BadInput, KeyboardInterrupt))
        if found is None:
            raise
        raise found from None
