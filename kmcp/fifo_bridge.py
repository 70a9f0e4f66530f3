"""Start stdio MCP server processes in another container of the same pod, over FIFOs in a shared volume.

The adapter sidecar and the user's `mcp-server` container share only an emptyDir (`/kmcp`). The adapter writes
``serve.sh`` there; the mcp-server container runs ``/bin/sh /kmcp/serve.sh CMD ARGS...``. The script needs
nothing but a POSIX shell (busybox ash, dash, bash): no Python, no coreutils.

Wire protocol, one line per message:
  control FIFO (adapter -> script):  ``start ID`` | ``kill ID`` | ``reap ID``
  events FIFO  (script -> adapter):  ``ready GEN`` | ``started ID PID`` | ``exit ID CODE`` | ``error TEXT``
The adapter creates ``s/ID.in`` and ``s/ID.out`` before ``start ID``; the server reads the first and writes the
second. Its stderr stays the container's, so ``kubectl logs -c mcp-server`` shows it. ``ready`` is sent each
time the script starts, with a new random generation (the PID alone repeats: the script is PID 1 in every
container start), so the adapter notices a restarted mcp-server container and fails the old sessions.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import trio

SCRIPT_NAME = "serve.sh"
CONTROL_FIFO = "control"
EVENTS_FIFO = "events"
SESSIONS_DIR = "s"

# Kept POSIX: `read`, `echo`, `kill`, `wait`, `eval`, `case`, redirections and globs are shell builtins
# everywhere. Server ids are restricted to [A-Za-z0-9_] so they are safe in `eval` and file names.
SERVE_SH = r"""#!/bin/sh
# Written by the kmcp adapter. Run as: /bin/sh /kmcp/serve.sh CMD [ARGS...]
# Starts CMD ARGS once per MCP session when the adapter asks, with stdin/stdout on FIFOs in this directory.
set -u
case "$0" in */*) dir=${0%/*} ;; *) dir=. ;; esac
if [ "$#" -eq 0 ]; then
  echo "kmcp serve.sh: usage: serve.sh CMD [ARGS...]" >&2
  exit 2
fi
exec 3<>"$dir/control" 4<>"$dir/events"

stop_all() {
  for f in "$dir"/s/*.pid; do
    [ -r "$f" ] || continue
    read -r p <"$f" && kill -TERM "$p" 2>/dev/null
  done
}

serve() {
  # The generation tells the adapter that a restarted container's processes are gone. Not just $$: in a container
  # the script is PID 1 after every restart. Linux's random uuid is read with the `read` builtin (no coreutils).
  gen=$$
  [ -r /proc/sys/kernel/random/uuid ] && read -r gen </proc/sys/kernel/random/uuid
  echo "ready $gen" >&4
  while read -r verb id <&3; do
    case "$id" in
      ""|*[!A-Za-z0-9_]*) echo "error bad id: $verb $id" >&4; continue ;;
    esac
    case "$verb" in
      start)
        (
          "$@" <"$dir/s/$id.in" >"$dir/s/$id.out" &
          child=$!
          echo "$child" >"$dir/s/$id.pid"
          echo "started $id $child" >&4
          wait "$child"
          echo "exit $id $?" >&4
        ) &
        eval "sub_$id=\$!"
        ;;
      kill)
        if [ -r "$dir/s/$id.pid" ]; then
          read -r p <"$dir/s/$id.pid" && kill -TERM "$p" 2>/dev/null
        fi
        ;;
      reap)
        eval "p=\${sub_$id:-}"
        if [ -n "$p" ]; then
          wait "$p" 2>/dev/null
          unset "sub_$id"
        fi
        ;;
      *) echo "error unknown verb: $verb" >&4 ;;
    esac
  done
}

# The loop runs in a child shell while this one (PID 1 in the container) waits for it. A trapped signal ends
# `wait` at once, but dash and busybox ash look for one only between commands: a SIGTERM arriving just before
# the loop blocked in `read` would be seen at the next control line, i.e. the container would sit out its grace
# period. (A subshell starts with the caught traps reset, so SIGTERM ends the loop itself at once.)
loop=""
trap 'stop_all; [ -z "$loop" ] || kill -TERM "$loop" 2>/dev/null; exit 143' TERM
trap 'stop_all; [ -z "$loop" ] || kill -TERM "$loop" 2>/dev/null; exit 130' INT
serve "$@" &
loop=$!
wait "$loop"
"""


@dataclass(frozen=True)
class BridgePaths:
    """The files of one bridge directory (``/kmcp`` in a pod, a temp dir in tests and ``kmcp dev``)."""

    root: Path

    @property
    def script(self) -> Path:
        return self.root / SCRIPT_NAME

    @property
    def control(self) -> Path:
        return self.root / CONTROL_FIFO

    @property
    def events(self) -> Path:
        return self.root / EVENTS_FIFO

    @property
    def sessions(self) -> Path:
        return self.root / SESSIONS_DIR

    def stdin_fifo(self, server_id: str) -> Path:
        return self.sessions / f"{server_id}.in"

    def stdout_fifo(self, server_id: str) -> Path:
        return self.sessions / f"{server_id}.out"

    def pid_file(self, server_id: str) -> Path:
        return self.sessions / f"{server_id}.pid"


def _mkfifo(path: Path) -> None:
    try:
        os.mkfifo(path, 0o666)
    except FileExistsError:
        if not stat.S_ISFIFO(path.stat().st_mode):
            path.unlink()
            os.mkfifo(path, 0o666)
    os.chmod(path, 0o666)  # the mcp-server container may run as another uid


def prepare(root: Path) -> BridgePaths:
    """Create the control/events FIFOs and write serve.sh atomically (a running shell keeps the old inode)."""
    paths = BridgePaths(root)
    root.mkdir(parents=True, exist_ok=True)
    paths.sessions.mkdir(exist_ok=True)
    os.chmod(paths.sessions, 0o777)
    _mkfifo(paths.control)
    _mkfifo(paths.events)
    tmp = root / f".{SCRIPT_NAME}.{os.getpid()}"
    tmp.write_text(SERVE_SH)
    os.chmod(tmp, 0o755)
    os.replace(tmp, paths.script)
    return paths


def new_server_id() -> str:
    return "k" + secrets.token_hex(8)


def create_session_fifos(paths: BridgePaths, server_id: str) -> None:
    _mkfifo(paths.stdin_fifo(server_id))
    _mkfifo(paths.stdout_fifo(server_id))


def remove_session_files(paths: BridgePaths, server_id: str) -> None:
    for path in (paths.stdin_fifo(server_id), paths.stdout_fifo(server_id), paths.pid_file(server_id)):
        path.unlink(missing_ok=True)


def open_fifo_rdwr(path: Path) -> int:
    """Open a FIFO read-write and non-blocking: never waits for the other side to appear (Linux semantics)."""
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


class BridgeLost(Exception):
    """The mcp-server container's script is gone or restarted: its processes are lost."""


@dataclass
class BridgeProcess:
    """One server process in the mcp-server container, seen through its FIFO pair."""

    server_id: str
    stdin: trio.lowlevel.FdStream
    stdout: trio.lowlevel.FdStream
    pid: int = 0
    exit_code: int | None = None
    _exited: trio.Event = field(default_factory=trio.Event)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.exit_code is not None
        return self.exit_code


class FifoBridge:
    """The adapter's end of serve.sh: asks it to start processes and learns when they exit.

    Runs as a service in a nursery (``await nursery.start(bridge.run)``); ``start_process`` may then be called
    from any task. A restarted script (a new ``ready``) fails every process of the previous one.
    """

    def __init__(self, root: Path, start_timeout: float = 30.0) -> None:
        self.paths = prepare(root)
        self.start_timeout = start_timeout
        self._processes: dict[str, BridgeProcess] = {}
        self._started: dict[str, trio.Event] = {}
        self._generation: str | None = None
        self._ready = trio.Event()
        self._control = trio.lowlevel.FdStream(open_fifo_rdwr(self.paths.control))
        self._send_lock = trio.Lock()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        events = trio.lowlevel.FdStream(open_fifo_rdwr(self.paths.events))
        task_status.started()
        buffer = b""
        try:
            while True:
                chunk = await events.receive_some(65536)
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    await self._on_event(line.decode(errors="replace").split())
        finally:
            await events.aclose()
            await self._control.aclose()
            for process in list(self._processes.values()):
                self._finish(process, -1)

    async def _on_event(self, words: list[str]) -> None:
        if not words:
            return
        verb, args = words[0], words[1:]
        if verb == "ready" and args:
            if self._generation is not None and args[0] != self._generation:
                for process in list(self._processes.values()):
                    self._finish(process, -1)
            self._generation = args[0]
            self._ready.set()
        elif verb == "started" and len(args) == 2 and args[0] in self._processes:
            self._processes[args[0]].pid = int(args[1])
            self._started[args[0]].set()
        elif verb == "exit" and len(args) == 2 and args[0] in self._processes:
            self._finish(self._processes[args[0]], int(args[1]))
            await self._send(f"reap {args[0]}")

    def _finish(self, process: BridgeProcess, code: int) -> None:
        if process.exit_code is None:
            process.exit_code = code
        process._exited.set()
        self._started.get(process.server_id, trio.Event()).set()
        self._processes.pop(process.server_id, None)
        self._started.pop(process.server_id, None)
        remove_session_files(self.paths, process.server_id)

    async def _send(self, line: str) -> None:
        async with self._send_lock:
            await self._control.send_all(line.encode() + b"\n")

    async def start_process(self) -> BridgeProcess:
        """Start one server process; raises BridgeLost when the script does not answer in time."""
        with trio.move_on_after(self.start_timeout):
            await self._ready.wait()
        if not self._ready.is_set():
            raise BridgeLost(f"mcp-server container has not started {self.paths.script}")
        server_id = new_server_id()
        create_session_fifos(self.paths, server_id)
        process = BridgeProcess(
            server_id,
            stdin=trio.lowlevel.FdStream(open_fifo_rdwr(self.paths.stdin_fifo(server_id))),
            stdout=trio.lowlevel.FdStream(open_fifo_rdwr(self.paths.stdout_fifo(server_id))),
        )
        started = trio.Event()
        self._processes[server_id] = process
        self._started[server_id] = started
        await self._send(f"start {server_id}")
        with trio.move_on_after(self.start_timeout):
            await started.wait()
        if process.exit_code is not None or process.pid == 0:
            await self.stop_process(process)
            raise BridgeLost(f"server process {server_id} did not start")
        return process

    async def stop_process(self, process: BridgeProcess, grace: float = 5.0) -> None:
        """End a process: close its stdin (well-behaved servers exit), then SIGTERM after ``grace`` seconds."""
        await process.stdin.aclose()
        with trio.move_on_after(grace):
            await process._exited.wait()
        if not process._exited.is_set():
            await self._send(f"kill {process.server_id}")
            with trio.move_on_after(grace):
                await process._exited.wait()
        if not process._exited.is_set():
            self._finish(process, -9)
        await process.stdout.aclose()
