"""`kmcp build`: build a project's image with Docker or Podman, optionally load it into kind or the dev node, or
push it.

The engine is the first of docker, podman that is on PATH and answers ``info`` (so a docker CLI without a daemon
falls through to podman). Where neither answers, a ``kmcp init python`` project is still built, without a daemon,
by :mod:`kmcp.devcluster.project_image` (one line says so). Output streams straight to the terminal; a failing
step is exit code 1.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kmcp.errors import BadInput, CommandFailed

if TYPE_CHECKING:
    from kmcp.devcluster.devnode import DevNodeRecord

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
    load_dev_node: bool = False
    dev_node: Path | None = None  # its cluster directory or record; None: the one running on this machine


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
    node = _dev_node(request)
    try:
        engine = find_engine()
    except CommandFailed as no_engine:
        return _build_without_engine(request, tag, node, str(no_engine))
    for argv in build_commands(request, engine, tag):
        _run(argv, f"{engine.name} {argv[1]}")
    if kind and request.kind_load_cluster:
        env = dict(os.environ)
        if engine.name == "podman":
            env["KIND_EXPERIMENTAL_PROVIDER"] = "podman"
        _run([kind, "load", "docker-image", tag, "--name", request.kind_load_cluster], "kind load", env)
    if node is not None:
        with tempfile.TemporaryDirectory(prefix="kmcp-build-") as tmp:
            archive = Path(tmp) / "image.tar"
            _run([engine.path, "save", "-o", str(archive), tag], f"{engine.name} save")
            _load(node, archive, tag)
    return tag


def _dev_node(request: BuildRequest) -> DevNodeRecord | None:
    """The dev node to load into, found before the build so a missing one fails fast."""
    if not request.load_dev_node:
        return None
    from kmcp.devcluster import devnode

    try:
        return devnode.find(request.dev_node)
    except devnode.DevNodeNotFound as error:
        raise CommandFailed(f"--load-dev-node: {error}") from None


def _load(node: DevNodeRecord, archive: Path, tag: str) -> None:
    from kmcp.devcluster import devnode, images

    name = images.normalized_reference(tag)
    try:
        devnode.import_archive(node, archive, name)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        raise CommandFailed(f"loading {tag} into the dev node: {error}") from None
    print(f"loaded {name} into the dev node (containerd {node.containerd_socket})", file=sys.stderr)


def _build_without_engine(request: BuildRequest, tag: str, node: DevNodeRecord | None, no_engine: str) -> str:
    """No Docker or Podman answers: build a python scaffold's Dockerfile without a daemon, or say why not."""
    from kmcp.devcluster import images, project_image

    needs_engine = [flag for flag, given in (("--push", request.push),
                                             ("--kind-load-cluster", bool(request.kind_load_cluster)),
                                             ("--platform", request.platform not in (None, "linux/amd64")))
                    if given]
    if needs_engine or platform.machine() not in ("x86_64", "AMD64"):
        why = f"{', '.join(needs_engine)} needs it" if needs_engine else f"this is {platform.machine()}"
        raise CommandFailed(f"{no_engine}; building without one is for linux/amd64 only and {why}")
    try:
        project_image.parse_dockerfile((request.project_dir / request.dockerfile).read_text())
    except images.ImageBuildError as error:
        raise CommandFailed(f"{no_engine}; without one kmcp build cannot do this Dockerfile: {error}") from None
    detail = no_engine.removeprefix("no container engine: install Docker or Podman").strip()
    print(f"kmcp build: no container engine answers {detail}; building {tag} without a daemon: the Dockerfile's "
          f"steps on Debian's python{images.IMAGE_PYTHON} (kmcp.devcluster.project_image)", file=sys.stderr,
          flush=True)
    try:
        archive = project_image.build_project_image(request.project_dir, tag, request.dockerfile)
    except images.ImageBuildError as error:
        raise CommandFailed(f"building {tag} without a container engine: {error}") from None
    if node is not None:
        _load(node, archive.path, tag)
    else:
        print(f"image archive: {archive.path} (import it with `ctr images import` or `podman load`)",
              file=sys.stderr)
    return tag
