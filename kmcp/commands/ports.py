"""Whether a local port is free: what ``run``, ``dev up`` and the Inspector check before they bind."""

from __future__ import annotations

import socket


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:PORT can be bound (a socket in TIME_WAIT does not count as in use)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
