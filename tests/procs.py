"""Process checks the tests share."""

from __future__ import annotations


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie (a killed child nobody has reaped yet is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
