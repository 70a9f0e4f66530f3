"""`kmcp build`: build a project's image with Docker or Podman, optionally load it into kind or push it.

The engine is the first of docker, podman that is on PATH and answers ``info`` (so a docker CLI without a daemon
falls through to podman). Output streams straight to the terminal; a failing step is exit code 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kmcp.errors import BadInput, CommandFailed

ENGINES = ("docker", "podman")
INFO_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class BuildRequest:
    project_dir: Path
    tag: str | None = None
    kind_load_cluster: str | None = None
    push: bool = False
    platform: str | None = None
    dockerfile: str = "Dockerfile"


@dataclass(frozen=True)
class Engine:
    name: str
    path: str


def find_engine() -> Engine:
    """The first working container engine, or CommandFailed saying what was tried."""
    tried: list[str] = []
    for name in ENGINES:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            proc = subprocess.run([path, "info"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, timeout=INFO_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            tried.append(f"`{name} info` timed out")
            continue
        except OSError as error:
            tried.append(f"{name}: {error.strerror or error}")
            continue
        if proc.returncode == 0:
            return Engine(name, path)
        last = (proc.stderr or "").strip().splitlines()
        tried.append(f"`{name} info` failed" + (f": {last[-1]}" if last else f" (exit {proc.returncode})"))
    detail = f" ({'; '.join(tried)})" if tried else " (neither docker nor podman is on PATH)"
    raise CommandFailed(f"no container engine: install Docker or Podman{detail}")


def default_tag(project_dir: Path) -> str:
    """<name>:<version> from kmcp.yaml, for `kmcp build` without -t."""
    from kmcp.scaffold import load_project

    project = load_project(project_dir)
    return f"{project.name}:{project.version}"


def _run(argv: Sequence[str], what: str, env: dict[str, str] | None = None) -> None:
    print(f"+ {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        code = subprocess.run(list(argv), stdin=subprocess.DEVNULL, env=env).returncode
    except OSError as error:
        raise CommandFailed(f"{what}: {error.strerror or error}") from None
    if code != 0:
        raise CommandFailed(f"{what} failed (exit {code})")


def build_commands(request: BuildRequest, engine: Engine, tag: str) -> list[list[str]]:
    """The engine command lines a build runs, in order (kind load is separate: it is not the engine)."""
    build = [engine.path, "build", "-t", tag, "-f", str(request.project_dir / request.dockerfile)]
    if request.platform:
        build += ["--platform", request.platform]
    commands = [[*build, str(request.project_dir)]]
    if request.push:
        commands.append([engine.path, "push", tag])
    return commands


def build_image(request: BuildRequest) -> str:
    """Build (and load/push) the image; returns the tag. Raises BadInput or CommandFailed."""
    directory = request.project_dir
    if not directory.is_dir():
        raise BadInput(f"{directory}: not a directory")
    if not (directory / request.dockerfile).is_file():
        raise BadInput(f"{directory / request.dockerfile}: not found (kmcp init writes one)")
    tag = request.tag or default_tag(directory)
    kind = None
    if request.kind_load_cluster:
        kind = shutil.which("kind")
        if kind is None:  # fail before a long build, not after it
            raise CommandFailed("--kind-load-cluster needs kind on PATH (https://kind.sigs.k8s.io)")
    engine = find_engine()
    for argv in build_commands(request, engine, tag):
        _run(argv, f"{engine.name} {argv[1]}")
    if kind and request.kind_load_cluster:
        env = dict(os.environ)
        if engine.name == "podman":
            env["KIND_EXPERIMENTAL_PROVIDER"] = "podman"
        _run([kind, "load", "docker-image", tag, "--name", request.kind_load_cluster], "kind load", env)
    return tag
