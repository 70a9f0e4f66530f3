"""A project's image where no container engine runs (these machines have a docker CLI and no daemon): the project's
Dockerfile read as a recipe and assembled into an OCI archive the way :mod:`kmcp.devcluster.images` makes the kmcp
image, without a daemon, a registry or root.

Only what a ``kmcp init python`` Dockerfile says can be done this way, and anything else is refused by name, never
skipped: ``FROM python:3…`` becomes the Debian root filesystem with Debian's python3 (a pulled base image is out of
reach; its Python is :data:`~kmcp.devcluster.images.IMAGE_PYTHON`, not the tag's); ``RUN pip install …`` runs
this machine's pip with ``--target`` into the image's ``dist-packages``, choosing wheels for the image's Python
and glibc (``.`` is the project, built as a wheel first); ``COPY`` takes files from the project as Docker would
(``.dockerignore`` honoured); WORKDIR, ENV, USER, CMD, ENTRYPOINT, EXPOSE and LABEL become the image config.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kmcp.devcluster.images import (
    IMAGE_PYTHON,
    ImageArchive,
    ImageBuildError,
    debian_rootfs_layer,
    default_image_cache,
    layer_tar,
    normalized_reference,
    prune,
    write_oci_archive,
)

SITE_PACKAGES = f"usr/local/lib/python{IMAGE_PYTHON}/dist-packages"  # on Debian's python3 sys.path
# Wheels that load on Debian bookworm (glibc 2.36) for x86_64; pip takes the listed tags literally.
WHEEL_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 37)))
PIP_FLAGS_KEPT = frozenset({"--no-cache-dir", "-q", "--quiet", "-U", "--upgrade", "--no-compile"})
KEEP_PROJECT_IMAGES = 4
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Recipe:
    """What the Dockerfile asks for, in the terms this builder can honour."""

    workdir: str = "/"
    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources in the project, destination)
    installs: list[list[str]] = field(default_factory=list)  # pip requirement arguments ("." is the project)
    user: str = ""
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    exposed: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments dropped, backslash continuations joined."""
    logical: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        logical.append((keyword.upper(), rest.strip()))
    return logical


def _exec_form(args: str) -> list[str]:
    if args.startswith("["):
        value = json.loads(args)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        raise ImageBuildError(f"not a JSON list of strings: {args}")
    return ["/bin/sh", "-c", args]


def _pip_arguments(args: str) -> list[str]:
    words = shlex.split(args)
    for prefix in (["pip", "install"], ["pip3", "install"], ["python", "-m", "pip", "install"],
                   ["python3", "-m", "pip", "install"]):
        if words[:len(prefix)] == prefix:
            rest = words[len(prefix):]
            unknown = [w for w in rest if w.startswith("-") and w not in PIP_FLAGS_KEPT]
            if unknown:
                raise ImageBuildError(f"RUN {args}: without a container engine kmcp build cannot honour "
                                      f"{' '.join(unknown)}")
            return [w for w in rest if not w.startswith("-")]
    raise ImageBuildError(f"RUN {args}: without a container engine kmcp build runs only `pip install …` "
                          "(install Docker or Podman for other RUN steps)")


def _absolute(workdir: str, path: str) -> str:
    return str(PurePosixPath(workdir) / path) + ("/" if path.endswith("/") or path in (".", "./") else "")


def _key_values(args: str) -> dict[str, str]:
    """``K=V K2="v 2"``, or the legacy ``K some value`` form."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: args.split(None, 1)[1] if len(words) > 1 else ""}
    return {key: value for key, _, value in (w.partition("=") for w in words)}


def parse_dockerfile(text: str) -> Recipe:
    """The recipe of a single-stage ``FROM python:3…`` Dockerfile; ImageBuildError names what it cannot do."""
    recipe = Recipe()
    bases = 0
    for keyword, args in _instructions(text):
        if "$" in args and keyword not in ("RUN", "CMD", "ENTRYPOINT"):
            raise ImageBuildError(f"{keyword} {args}: variables are not expanded without a container engine")
        if keyword == "FROM":
            bases += 1
            if bases > 1 or not args.split()[0].startswith("python:3"):
                raise ImageBuildError(f"FROM {args}: without a container engine kmcp build makes only images "
                                      "from one `FROM python:3…` stage (install Docker or Podman)")
        elif keyword == "WORKDIR":
            recipe.workdir = _absolute(recipe.workdir, args).rstrip("/") or "/"
        elif keyword == "ENV":
            recipe.env.update(_key_values(args))
        elif keyword == "COPY":
            words = shlex.split(args)
            if any(w.startswith("--") for w in words) or len(words) < 2:
                raise ImageBuildError(f"COPY {args}: only `COPY <source>... <destination>` without flags")
            recipe.copies.append((words[:-1], _absolute(recipe.workdir, words[-1])))
        elif keyword == "RUN":
            recipe.installs.append(_pip_arguments(args))
        elif keyword == "USER":
            recipe.user = args
        elif keyword == "CMD":
            recipe.cmd = _exec_form(args)
        elif keyword == "ENTRYPOINT":
            recipe.entrypoint = _exec_form(args)
        elif keyword == "EXPOSE":
            recipe.exposed += [p if "/" in p else f"{p}/tcp" for p in args.split()]
        elif keyword == "LABEL":
            recipe.labels.update(_key_values(args))
        else:
            raise ImageBuildError(f"{keyword}: not supported without a container engine (install Docker or Podman)")
    if bases != 1:
        raise ImageBuildError("the Dockerfile has no FROM")
    return recipe


# ----------------------------------------------------------------------------------------------------------------
# Assembling the layer


def _ignored(project: Path) -> list[str]:
    path = project / ".dockerignore"
    if not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line.strip("/") for line in lines if line and not line.startswith("#")]


def _is_ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(prefix, pattern.replace("**/", "*")) for pattern in patterns
               for prefix in prefixes)


def _copy_into(stage: Path, project: Path, sources: list[str], destination: str, ignored: list[str]) -> None:
    """Docker's COPY: a directory's contents land in the destination; a file lands in it when it ends in ``/``."""
    root = project.resolve()
    into_dir = destination.endswith("/") or len(sources) > 1
    for source in sources:
        src = (project / source).resolve()
        if src != root and root not in src.parents:
            raise ImageBuildError(f"COPY {source}: outside the project directory")
        if not src.exists():
            raise ImageBuildError(f"COPY {source}: no such file in {project}")
        target = stage / destination.lstrip("/")
        if src.is_dir():
            for path in sorted(src.rglob("*")):
                relative = path.relative_to(root).as_posix()
                if path.is_file() and not _is_ignored(relative, ignored):
                    out = target / path.relative_to(src)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, out)
        else:
            out = target / src.name if into_dir else target
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)


def _pip(python: str, args: list[str], what: str) -> None:
    proc = subprocess.run([python, "-m", "pip", *args, "--disable-pip-version-check"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-12:])
        raise ImageBuildError(f"{what} failed (pip exit {proc.returncode}):\n{tail}")


def _install(stage: Path, project: Path, requirements: list[str], work: Path) -> None:
    """``pip install`` for the image: the project built as a wheel here (pure Python: the build backend runs on
    this machine), then every requirement as a wheel for the image's Python and platform into its dist-packages."""
    python = sys.executable
    wanted = []
    for requirement in requirements:
        if requirement in (".", "./"):
            wheels = work / "wheels"
            _pip(python, ["wheel", "--no-deps", "-q", "-w", str(wheels), str(project)], "building the project")
            wanted += [str(w) for w in sorted(wheels.glob("*.whl"))]
        else:
            wanted.append(requirement)
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    _pip(python, ["install", "-q", "--no-compile", "--target", str(stage / SITE_PACKAGES), *platforms,
                  "--python-version", IMAGE_PYTHON, "--implementation", "cp", "--only-binary=:all:", *wanted],
         f"pip install {' '.join(requirements)} for Python {IMAGE_PYTHON}")


def _add_stage(layer: Path, stage: Path) -> None:
    with layer_tar(layer) as tar:
        def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if info.isdir() else info.mode | 0o444
            return info

        for entry in sorted(stage.iterdir()):
            tar.add(str(entry), arcname=entry.name, filter=owned_by_root)


def _digest(project: Path, recipe_text: str) -> str:
    digest = hashlib.sha256(recipe_text.encode())
    for path in sorted(p for p in project.rglob("*") if p.is_file()):
        if not {".venv", ".git", "__pycache__", "dist"} & set(path.relative_to(project).parts):
            digest.update(path.relative_to(project).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_project_image(project: Path, tag: str, dockerfile: str = "Dockerfile", cache: Path | None = None,
                        log: bool = True) -> ImageArchive:
    """The project's image as an OCI archive named ``normalized_reference(tag)``; cached by the project's files."""
    cache = cache or default_image_cache()
    text = (project / dockerfile).read_text()
    recipe = parse_dockerfile(text)
    rootfs = debian_rootfs_layer(cache, log)
    name = normalized_reference(tag)
    out = cache / f"project-{_digest(project, f'{text}{name}{rootfs.name}')}.oci.tar"
    if out.is_file():
        return ImageArchive(name, out)
    with tempfile.TemporaryDirectory(prefix="kmcp-project-", dir=cache) as tmp:
        stage = Path(tmp) / "stage"
        (stage / "usr/local/bin").mkdir(parents=True)
        # python:3 images have `python`; Debian's python3 package has only `python3`.
        (stage / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        (stage / recipe.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        ignored = _ignored(project)
        for sources, destination in recipe.copies:
            _copy_into(stage, project, sources, destination, ignored)
        for requirements in recipe.installs:
            _install(stage, project, requirements, Path(tmp))
        layer = Path(tmp) / "layer.tar"
        _add_stage(layer, stage)
        config: dict[str, object] = {"Env": [f"{k}={v}" for k, v in recipe.env.items()],
                                     "WorkingDir": recipe.workdir, "User": recipe.user,
                                     "Labels": recipe.labels, "ExposedPorts": {p: {} for p in recipe.exposed}}
        if recipe.entrypoint is not None:
            config["Entrypoint"] = recipe.entrypoint
        if recipe.cmd is not None:
            config["Cmd"] = recipe.cmd
        archive = write_oci_archive(out, name, [rootfs, layer], config)
    prune(cache, "project-*.oci.tar", keep=KEEP_PROJECT_IMAGES)
    return archive
