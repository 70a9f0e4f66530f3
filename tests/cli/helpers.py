"""Shared helpers for the CLI tests: run kmcp as a user does, and drive generated servers with a real MCP client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STDIO_CLIENT = Path(__file__).with_name("stdio_client.py")


def kmcp(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m kmcp ARGS` with this checkout on PYTHONPATH, from any directory."""
    full_env = dict(env if env is not None else os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "kmcp", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=full_env, timeout=timeout)


def mcp_session(cwd: Path, command: list[str], calls: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Initialize, list tools and call ``calls`` on a stdio server through the MCP SDK's client."""
    call_args = [f"{name}={json.dumps(arguments)}" for name, arguments in (calls or {}).items()]
    proc = subprocess.run([sys.executable, str(STDIO_CLIENT), str(cwd), *call_args, "--", *command],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
