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


MODERN_VERSION = "2026-07-28"
MODERN_META = {"io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
               "io.modelcontextprotocol/clientCapabilities": {},
               "io.modelcontextprotocol/clientInfo": {"name": "kmcp-tests", "version": "1"}}


def modern_request(request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A 2026-07-28 request: no handshake before it, the envelope in its own ``params._meta``."""
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": MODERN_META}}


def stdio_exchange(cwd: Path, command: list[str], requests: list[dict[str, Any]],
                   timeout: float = 60) -> list[dict[str, Any]]:
    """Send ``requests`` one at a time to a fresh stdio server process, each after the previous one's response, and
    return the responses; stdin stays open until the last one (a server may drop calls still running at EOF)."""
    proc = subprocess.Popen(command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdin is not None and proc.stdout is not None
    responses: list[dict[str, Any]] = []
    try:
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            while True:
                line = proc.stdout.readline()
                assert line, f"server exited before answering {request['method']}: {proc.stderr.read()}"
                message = json.loads(line)
                if message.get("id") == request["id"]:
                    responses.append(message)
                    break
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return responses
