"""What the developer commands do (build, deploy, install, get, port-forward, ...), with no argv in sight: each
module's functions take request objects and raise :class:`kmcp.errors.BadInput` (exit 2) or
:class:`kmcp.errors.CommandFailed` (exit 1). Their command lines live in :mod:`kmcp.cli`, which imports a module
only when its command runs.
"""

from __future__ import annotations

# Re-exported for kmcp.commands.devup, which another branch owns; new code imports kmcp.errors.
from kmcp.errors import CommandFailed

__all__ = ["CommandFailed"]
