"""Process checks the tests share."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie (a killed child nobody has reaped yet is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def exists(pid: int) -> bool:
    """Whether ``pid`` is still taken, a zombie included: for a stop that must also have reaped what it ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
