"""``kmcp dev up --detach`` and ``kmcp dev down``: the background ``kmcp dev up`` and the terminal that started it.

The background process writes its state file from its first moment (building, starting, ready), so ``dev down``
can stop a start at any point, the first run's build included. ``--detach`` follows the background log on the
terminal until Ready, so a first run shows what is being built and for how long; it has no deadline while the
build runs (only the steps after it have one), and Ctrl-C stops only the waiting, saying how to stop the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from kmcp.commands.devup import DevSettings, default_directory, describe_state, pid_alive, running_state
from kmcp.commands.ports import port_free
from kmcp.commands.run import kmcp_command, kmcp_env
from kmcp.errors import CommandFailed


class LogFollower:
    """Prints the complete lines appended to a file since the last call (``tail -f`` in steps)."""

    def __init__(self, path: Path, out: TextIO | None = None) -> None:
        self.path, self.out, self.offset, self.partial = path, out or sys.stdout, 0, b""

    def print_new(self) -> None:
        try:
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                data = log.read()
        except OSError:
            return
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            print(line.decode(errors="replace"), file=self.out)
        self.out.flush()


def _down_command(settings: DevSettings) -> str:
    return "kmcp dev down" + ("" if settings.directory == default_directory() else f" --dir {settings.directory}")


def _wait_ready(settings: DevSettings, child: subprocess.Popen[bytes], follow: LogFollower, log_path: Path) -> None:
    deadline: float | None = None
    while True:
        follow.print_new()
        state = running_state(settings)
        mine = state if state is not None and state.get("pid") == child.pid else None
        if mine is not None and mine.get("phase") == "ready":
            follow.print_new()
            return
        if child.poll() is not None:
            follow.print_new()
            raise CommandFailed(f"kmcp dev up exited with code {child.returncode} (log: {log_path})")
        if mine is not None and mine.get("phase") == "building":
            deadline = None  # the first run's build takes what it takes, and says so
        elif deadline is None:
            deadline = time.monotonic() + settings.startup_timeout + 60
        if deadline is not None and time.monotonic() > deadline:
            child.terminate()
            child.wait(60)
            follow.print_new()
            raise CommandFailed(f"kmcp dev up was not ready in time; stopped it (log: {log_path})")
        time.sleep(0.2)


def run_detached(settings: DevSettings) -> int:
    """Start `kmcp dev up` in the background (own session, log in DIR/dev.log), showing its log until Ready."""
    existing = running_state(settings)
    if existing is not None:
        raise CommandFailed(f"kmcp dev is already running (pid {existing['pid']}, {describe_state(existing)}): "
                            f"stop it with `{_down_command(settings)}`")
    if not port_free(settings.port):  # here, not in the log of a background process that exits at once
        raise CommandFailed(f"port {settings.port} on 127.0.0.1 is in use: pick another with --port")
    settings.directory.mkdir(parents=True, exist_ok=True)
    settings.state_file.unlink(missing_ok=True)
    log_path = settings.directory / "dev.log"
    argv = [*kmcp_command(), "dev", "up", "--dir", str(settings.directory), "--port", str(settings.port),
            "--node", settings.node, "--background"]
    with open(log_path, "wb") as log:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=kmcp_env(),
                                 start_new_session=True)
    try:
        _wait_ready(settings, child, LogFollower(log_path), log_path)
    except KeyboardInterrupt:
        print(f"\nkmcp dev goes on starting in the background (pid {child.pid}, log {log_path}); "
              f"stop it with: {_down_command(settings)}", flush=True)
        return 130
    print(f"\nkmcp dev is up in the background (pid {child.pid}, log {log_path})")
    print(f"  stop it with: {_down_command(settings)}")
    return 0


def run_dev_down(settings: DevSettings, within: float = 60.0) -> int:
    state = running_state(settings)
    if state is None:
        print(f"kmcp dev is not running (no live state in {settings.directory})")
        return 0
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + within
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise CommandFailed(f"kmcp dev (pid {pid}) did not stop within {within:g}s")
        time.sleep(0.2)
    print(f"kmcp dev stopped (pid {pid})")
    return 0
