"""The MCP Inspector that ``kmcp run`` and ``kmcp port-forward --inspector`` start: pinned, on 127.0.0.1 only, and
opened on the server it is for.

Pinned: :data:`INSPECTOR_VERSION` is the one place the version is named. kmcp installs exactly that version the way
scripts/npm-peers installs the test peers: a package.json (:func:`package_json`) in
``${KMCP_NPM_CACHE:-~/.cache/kmcp/npm}/<first 16 hex digits of its sha256>/``, ``npm install`` there once (scripts/setup
does it ahead: ``python -m kmcp.commands.inspector --install``), then ``node`` runs the package's launcher directly. No
``npx``, so never an unpinned latest.

What the pinned version's own code (clients/web/build/index.js of 2.12.0) honours, and kmcp sets:

- ``HOST``: the address of all three of its listeners (web UI, MCP Apps sandbox, app origin); 127.0.0.1 here. It
  defaults to 127.0.0.1 and refuses all interfaces unless told otherwise, so the override is removed from its env.
- ``CLIENT_PORT`` (web UI, default 6274), ``MCP_SANDBOX_PORT`` (default 6275) and ``MCP_APP_ORIGIN_PORT`` (default
  6278): free ports from those defaults on, so a second Inspector (another ``kmcp run``) does not collide.
- ``MCP_INSPECTOR_API_TOKEN``: the token its API requires, chosen here so the URL can be printed before it is up.
- ``MCP_AUTO_OPEN_ENABLED=false``: its own auto-open would open a URL without the server; kmcp opens its own.
- The web UI's deep link: ``?serverUrl=URL&transport=http|sse&autoConnect=TOKEN`` adds the server and connects to
  it (``autoConnect`` must equal the API token, so another site cannot make it connect anywhere). Its CLI flags
  ``--transport http --server-url URL`` would prefill too, but make the server list read-only, which the deep link
  then fails to add to: the deep link alone.

Everything it prints is kept, not shown: the one URL kmcp prints is the one to open, and its last lines explain a
failure in one line. A browser is opened only where one can be (a display, or macOS); otherwise the URL is printed.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from kmcp.commands.ports import port_free

INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector"
INSPECTOR_VERSION = "2.12.0"
NODE_WANTED = (22, 19)  # the package's engines field
LAUNCHER = "clients/launcher/build/index.js"
DEFAULT_PORTS = {"CLIENT_PORT": 6274, "MCP_SANDBOX_PORT": 6275, "MCP_APP_ORIGIN_PORT": 6278}
START_TIMEOUT = 60.0
INSTALL_TIMEOUT = 600.0


class Unavailable(Exception):
    """The Inspector cannot be started here; the message says why in one line."""


def package_json() -> str:
    return json.dumps({
        "name": "kmcp-inspector",
        "private": True,
        "description": "The MCP Inspector kmcp run / kmcp port-forward start, pinned in kmcp/commands/inspector.py",
        "dependencies": {INSPECTOR_PACKAGE: INSPECTOR_VERSION},
    }, indent=2) + "\n"


def install_dir() -> Path:
    root = Path(os.environ.get("KMCP_NPM_CACHE") or Path.home() / ".cache" / "kmcp" / "npm")
    return root / hashlib.sha256(package_json().encode()).hexdigest()[:16]


def installed_launcher(directory: Path) -> Path | None:
    package = directory / "node_modules" / INSPECTOR_PACKAGE
    try:
        version = json.loads((package / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None
    launcher = package / LAUNCHER
    return launcher if version == INSPECTOR_VERSION and launcher.is_file() else None


def _kill_group(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop ``process`` and everything in its process group (it was started in a session of its own)."""
    if process.poll() is None or _group_alive(process.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while (process.poll() is None or _group_alive(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def install(directory: Path | None = None, say: Callable[[str], None] | None = None,
            started: Callable[[subprocess.Popen[bytes]], None] | None = None) -> Path:
    """The launcher of the pinned Inspector, installed with npm first if needed (once, under a lock)."""
    directory = directory or install_dir()
    launcher = installed_launcher(directory)
    if launcher is not None:
        return launcher
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not on PATH (install Node.js >= 22.19)")
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another kmcp installing the same pin: wait for it, then use its work
        launcher = installed_launcher(directory)
        if launcher is not None:
            return launcher
        if say:
            say(f"installing the MCP Inspector {INSPECTOR_VERSION} into {directory} (first run only; needs the "
                "npm registry)")
        (directory / "package.json").write_text(package_json())
        process = subprocess.Popen([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        if started:
            started(process)
        try:
            output, _ = process.communicate(timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise Unavailable(f"npm install of {INSPECTOR_PACKAGE}@{INSPECTOR_VERSION} took over "
                              f"{INSTALL_TIMEOUT:g}s") from None
        finally:
            if process.poll() is None:
                _kill_group(process)
        if process.returncode != 0:
            lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
            errors = [line for line in lines if "npm error" in line or "ERR!" in line or "Error" in line]
            last = (errors or lines or [f"exit code {process.returncode}"])[0 if errors else -1].strip()
            raise Unavailable(f"npm install of {INSPECTOR_PACKAGE}@{INSPECTOR_VERSION} failed: {last[:300]}")
        launcher = installed_launcher(directory)
        if launcher is None:
            raise Unavailable(f"npm installed no {INSPECTOR_PACKAGE}@{INSPECTOR_VERSION} under {directory}")
        (directory / ".installed-package.json").write_text(package_json())
        return launcher


def choose_ports() -> dict[str, int]:
    """A free 127.0.0.1 port for each of the Inspector's listeners, its defaults when free."""
    taken: set[int] = set()
    chosen = {}
    for name, default in DEFAULT_PORTS.items():
        port = next((p for p in range(default, default + 100) if p not in taken and port_free(p)), None)
        if port is None:
            raise Unavailable(f"no free port on 127.0.0.1 near {default} for the Inspector's {name}")
        chosen[name] = port
        taken.add(port)
    return chosen


def deep_link(client_port: int, token: str, server_url: str) -> str:
    """The web UI's URL that authenticates, adds ``server_url`` and connects to it."""
    transport = "sse" if urllib.parse.urlsplit(server_url).path.endswith("/sse") else "http"
    query = urllib.parse.urlencode({"MCP_INSPECTOR_API_TOKEN": token, "transport": transport,
                                    "serverUrl": server_url, "autoConnect": token})
    return f"http://127.0.0.1:{client_port}/?{query}"


def node_version(node: str) -> tuple[int, ...] | None:
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=False)
        return tuple(int(part) for part in done.stdout.strip().lstrip("v").split(".")[:2])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def can_open_browser() -> bool:
    """Whether a graphical browser can be opened: macOS, or a display. Without one, Python's webbrowser would
    start a text-mode browser in this terminal, or nothing."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Inspector:
    """One Inspector for ``server_url``: :meth:`start` returns at once (install, start and open happen in a
    thread that reports through ``say``); :meth:`stop` ends its whole process group, whatever stage it is in."""

    def __init__(self, server_url: str, say: Callable[[str], None]) -> None:
        self.server_url = server_url
        self.say = say
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None  # npm install, then the Inspector
        self.lines: collections.deque[str] = collections.deque(maxlen=40)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kmcp-inspector")
        self._reader: threading.Thread | None = None  # keeps the Inspector's last lines; ends at its EOF

    def start(self) -> None:
        self._thread.start()

    def _adopt(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self.process = process
            stopping = self._stopping.is_set()
        if stopping:
            _kill_group(process)

    def _run(self) -> None:
        try:
            self._start()
        except Unavailable as error:
            if not self._stopping.is_set():
                self.say(f"MCP Inspector not started: {error} (or use --no-inspector)")

    def _start(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise Unavailable("node is not on PATH (install Node.js >= 22.19)")
        launcher = install(say=self.say, started=self._adopt)
        if self._stopping.is_set():
            return
        token = secrets.token_hex(32)
        ports = choose_ports()
        env = {**os.environ, **{name: str(port) for name, port in ports.items()},
               "HOST": "127.0.0.1", "MCP_INSPECTOR_API_TOKEN": token, "MCP_AUTO_OPEN_ENABLED": "false"}
        for unsafe in ("MCP_INSPECTOR_ALLOW_ALL_INTERFACES", "DANGEROUSLY_OMIT_AUTH"):
            env.pop(unsafe, None)
        process = subprocess.Popen([node, str(launcher)], env=env, cwd=launcher.parent, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self._adopt(process)
        assert process.stdout is not None
        self._reader = threading.Thread(target=self._keep, args=(process.stdout,), daemon=True)
        self._reader.start()
        self._await_up(process, ports["CLIENT_PORT"], node)
        self.url = deep_link(ports["CLIENT_PORT"], token, self.server_url)
        self.say(f"MCP Inspector {INSPECTOR_VERSION} (connects to {self.server_url}): {self.url}")
        if can_open_browser():
            import webbrowser

            with contextlib.suppress(Exception):
                webbrowser.open(self.url)

    def _keep(self, stream: IO[bytes]) -> None:
        for line in stream:
            text = line.decode(errors="replace").rstrip()
            if text:
                self.lines.append(text)

    def _await_up(self, process: subprocess.Popen[bytes], port: int, node: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self._stopping.is_set():
            if process.poll() is not None:
                time.sleep(0.2)  # its last lines
                last = next((line for line in reversed(self.lines) if line.strip()), "")
                version = node_version(node)
                old = (f"; node is v{'.'.join(map(str, version))}, it wants >= {NODE_WANTED[0]}.{NODE_WANTED[1]}"
                       if version and version < NODE_WANTED else "")
                raise Unavailable(f"it exited with code {process.returncode}"
                                  + (f": {last[:300]}" if last else "") + old)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if int(response.status) == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"it did not answer on 127.0.0.1:{port} within {START_TIMEOUT:g}s")
            time.sleep(0.2)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is not None:
            _kill_group(process)
        self._thread.join(timeout=10)
        with self._lock:  # a process adopted while stopping was killed by _adopt
            process = self.process
        if process is not None and process.poll() is None:
            _kill_group(process)
        if self._reader is not None:  # its stdout closed with the process group: the reader is at EOF
            self._reader.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    """``python -m kmcp.commands.inspector --install``: install the pinned Inspector (scripts/setup); prints its
    directory."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["--install"]:
        print("usage: python -m kmcp.commands.inspector --install", file=sys.stderr)
        return 2
    try:
        launcher = install(say=lambda line: print(line, file=sys.stderr, flush=True))
    except Unavailable as error:
        print(f"kmcp: MCP Inspector not installed: {error}", file=sys.stderr)
        return 1
    print(install_dir())
    return 0 if launcher else 1


if __name__ == "__main__":
    sys.exit(main())
