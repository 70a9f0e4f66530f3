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
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from kmcp.commands.ports import port_free
from kmcp.httpprobe import http_status
from kmcp.processes import stop_process

INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector"
INSPECTOR_VERSION = "2.12.0"
NODE_WANTED = (22, 19)  # the package's engines field
LAUNCHER = "clients/launcher/build/index.js"
DEFAULT_PORTS = {"CLIENT_PORT": 6274, "MCP_SANDBOX_PORT": 6275, "MCP_APP_ORIGIN_PORT": 6278}
START_TIMEOUT = 60.0
INSTALL_TIMEOUT = 600.0
GRACE = 5.0  # SIGTERM to SIGKILL, for npm and the Inspector's process groups


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


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    """An exclusive flock on ``path``, waited for without blocking the event loop (another kmcp installing the
    same pin: wait for it, then use its work)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await trio.sleep(0.2)
        yield
    finally:
        os.close(fd)  # (closing releases the lock)


async def install(directory: Path | None = None, say: Callable[[str], None] | None = None) -> Path:
    """The launcher of the pinned Inspector, installed with npm first if needed (once, under a lock)."""
    directory = directory or install_dir()
    launcher = installed_launcher(directory)
    if launcher is not None:
        return launcher
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not on PATH (install Node.js >= 22.19)")
    directory.mkdir(parents=True, exist_ok=True)
    async with _locked(directory / ".lock"):
        launcher = installed_launcher(directory)
        if launcher is not None:
            return launcher
        if say:
            say(f"installing the MCP Inspector {INSPECTOR_VERSION} into {directory} (first run only; needs the "
                "npm registry)")
        (directory / "package.json").write_text(package_json())
        await _npm_install(npm, directory)
        launcher = installed_launcher(directory)
        if launcher is None:
            raise Unavailable(f"npm installed no {INSPECTOR_PACKAGE}@{INSPECTOR_VERSION} under {directory}")
        (directory / ".installed-package.json").write_text(package_json())
        return launcher


async def _npm_install(npm: str, directory: Path) -> None:
    process = await trio.lowlevel.open_process(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert process.stdout is not None
    output = bytearray()
    try:
        with trio.move_on_after(INSTALL_TIMEOUT) as scope:
            async for chunk in process.stdout:
                output += chunk
            await process.wait()
    finally:
        await stop_process(process, GRACE, group=True)  # npm's children too, after a timeout or a Ctrl-C
    if scope.cancelled_caught:
        raise Unavailable(f"npm install of {INSPECTOR_PACKAGE}@{INSPECTOR_VERSION} took over {INSTALL_TIMEOUT:g}s")
    if process.returncode != 0:
        lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if "npm error" in line or "ERR!" in line or "Error" in line]
        last = (errors or lines or [f"exit code {process.returncode}"])[0 if errors else -1].strip()
        raise Unavailable(f"npm install of {INSPECTOR_PACKAGE}@{INSPECTOR_VERSION} failed: {last[:300]}")


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


async def node_version(node: str) -> tuple[int, ...] | None:
    try:
        with trio.fail_after(10):
            done = await trio.run_process([node, "--version"], capture_stdout=True, capture_stderr=True, check=False)
        return tuple(int(part) for part in done.stdout.decode().strip().lstrip("v").split(".")[:2])
    except (OSError, ValueError, trio.TooSlowError):
        return None


def can_open_browser() -> bool:
    """Whether a graphical browser can be opened: macOS, or a display. Without one, Python's webbrowser would
    start a text-mode browser in this terminal, or nothing."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


async def run_inspector(server_url: str, say: Callable[[str], None]) -> None:
    """One Inspector for ``server_url`` until cancelled (install, start, open, then wait); then its whole process
    group is stopped, whatever stage it was in. Where it cannot run, ``say`` says why in one line and this
    returns: the server it is for runs on."""
    lines: collections.deque[str] = collections.deque(maxlen=40)  # what it printed: its last lines explain an exit
    try:
        await _inspect(server_url, say, lines)
    except Unavailable as error:
        say(f"MCP Inspector not started: {error} (or use --no-inspector)")


async def _inspect(server_url: str, say: Callable[[str], None], lines: collections.deque[str]) -> None:
    node = shutil.which("node")
    if node is None:
        raise Unavailable("node is not on PATH (install Node.js >= 22.19)")
    launcher = await install(say=say)
    token = secrets.token_hex(32)
    ports = choose_ports()
    env = {**os.environ, **{name: str(port) for name, port in ports.items()},
           "HOST": "127.0.0.1", "MCP_INSPECTOR_API_TOKEN": token, "MCP_AUTO_OPEN_ENABLED": "false"}
    for unsafe in ("MCP_INSPECTOR_ALLOW_ALL_INTERFACES", "DANGEROUSLY_OMIT_AUTH"):
        env.pop(unsafe, None)
    process = await trio.lowlevel.open_process([node, str(launcher)], env=env, cwd=launcher.parent,
                                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep, process, lines)
            failure = await _await_up(process, ports["CLIENT_PORT"], node, lines)
            if failure is None:
                url = deep_link(ports["CLIENT_PORT"], token, server_url)
                say(f"MCP Inspector {INSPECTOR_VERSION} (connects to {server_url}): {url}")
                if can_open_browser():
                    import webbrowser

                    with contextlib.suppress(Exception):
                        webbrowser.open(url)
                code = await process.wait()
                say(f"MCP Inspector exited with code {code}; the server runs on")
            nursery.cancel_scope.cancel()
    finally:
        await stop_process(process, GRACE, group=True)  # the Inspector leaves children
    if failure is not None:
        raise Unavailable(failure)


async def _keep(process: trio.Process, lines: collections.deque[str]) -> None:
    assert process.stdout is not None
    pending = b""
    async for chunk in process.stdout:
        *complete, pending = (pending + chunk).split(b"\n")
        lines.extend(text for line in complete if (text := line.decode(errors="replace").rstrip()))


async def _await_up(process: trio.Process, port: int, node: str, lines: collections.deque[str]) -> str | None:
    """None once its web UI answers; else why not."""
    deadline = trio.current_time() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            await trio.sleep(0.2)  # its last lines
            last = next((line for line in reversed(lines) if line.strip()), "")
            version = await node_version(node)
            old = (f"; node is v{'.'.join(map(str, version))}, it wants >= {NODE_WANTED[0]}.{NODE_WANTED[1]}"
                   if version and version < NODE_WANTED else "")
            return f"it exited with code {process.returncode}" + (f": {last[:300]}" if last else "") + old
        status = await http_status(port)
        if status is not None and status < 400:
            return None
        if trio.current_time() > deadline:
            return f"it did not answer on 127.0.0.1:{port} within {START_TIMEOUT:g}s"
        await trio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """``python -m kmcp.commands.inspector --install``: install the pinned Inspector (scripts/setup); prints its
    directory."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["--install"]:
        print("usage: python -m kmcp.commands.inspector --install", file=sys.stderr)
        return 2
    try:
        launcher = trio.run(install, None, lambda line: print(line, file=sys.stderr, flush=True))
    except Unavailable as error:
        print(f"kmcp: MCP Inspector not installed: {error}", file=sys.stderr)
        return 1
    print(install_dir())
    return 0 if launcher else 1


if __name__ == "__main__":
    sys.exit(main())
