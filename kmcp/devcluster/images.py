"""Container images for the dev node without any registry: built locally as OCI archives, cached, imported.

Two images, both cached under ``~/.cache/kmcp/images`` (``$KMCP_IMAGE_CACHE``) keyed by what they are built from,
so a rerun costs only the import:

- the sandbox (pause) image: one layer holding the static ``pause`` program built beside the kubelet;
- the kmcp image, what the repository's Dockerfile describes (Python + ``dist/kmcp``, the zipapp pre-unpacked so a
  read-only root filesystem works, user 65532): a Debian root filesystem made once with ``debootstrap`` holding
  Debian's ``python3``, plus one layer with the zipapp. It runs the controller, the adapter sidecar and the bundled
  example server (``kmcp dev echo-server``), so it also serves as the test MCP server image.

Layers are uncompressed tars (digest = diff id): containerd imports them without a registry round trip.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmcp import __version__

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_PACKAGES = ("python3", "ca-certificates")
IMAGE_PYTHON = "3.11"  # bookworm's python3: compiled extensions put into an image must be built for it
PAUSE_IMAGE = "registry.k8s.io/pause:kmcp-local"
KMCP_IMAGE = f"ghcr.io/kagent-dev/kmcp/controller:{__version__}"
KMCP_UID = 65532
KEEP_KMCP_IMAGES = 2
ROOTFS_EXCLUDES = ("./dev/*", "./proc/*", "./sys/*", "./run/*", "./tmp/*", "./var/cache/apt/archives/*.deb",
                   "./var/lib/apt/lists/*", "./usr/share/doc/*", "./usr/share/man/*", "./usr/share/locale/*")


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says which step and why."""


def default_image_cache() -> Path:
    explicit = os.environ.get("KMCP_IMAGE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kmcp" / "images"


@dataclass(frozen=True)
class ImageArchive:
    """One OCI image-layout tar and the reference it carries (what ``ctr images import`` names it)."""

    name: str
    path: Path


# --------------------------------------------------------------------------------------------------------------
# OCI layout


def normalized_reference(tag: str) -> str:
    """The name containerd's CRI looks up for ``tag`` (``my-server:0.1.0`` → ``docker.io/library/my-server:0.1.0``),
    so a pod's ``image: my-server:0.1.0`` finds the imported archive."""
    first, _, rest = tag.partition("/")
    if not rest:
        tag = f"docker.io/library/{tag}"
    elif not ("." in first or ":" in first or first == "localhost"):
        tag = f"docker.io/{tag}"
    last = tag.rsplit("/", 1)[-1]
    return tag if ":" in last or "@" in last else f"{tag}:latest"



def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_oci_archive(out: Path, name: str, layers: Sequence[Path], config: dict[str, Any]) -> ImageArchive:
    """An OCI image layout in a tar: ``index.json`` names the image (both the OCI and the containerd annotation,
    so ``ctr images import`` stores it under exactly ``name``), one manifest, one config, the layers as given."""
    layer_digests = [_sha256_file(layer) for layer in layers]
    image_config = {
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in layer_digests]},
        "history": [{"created_by": "kmcp.devcluster.images"} for _ in layers],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{config_digest}", "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{d}",
                    "size": layer.stat().st_size} for d, layer in zip(layer_digests, layers, strict=True)],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{manifest_digest}", "size": len(manifest_bytes),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
        }],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w") as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        _add_bytes(tar, f"blobs/sha256/{manifest_digest}", manifest_bytes)
        _add_bytes(tar, f"blobs/sha256/{config_digest}", config_bytes)
        for digest, layer in zip(layer_digests, layers, strict=True):
            tar.add(str(layer), arcname=f"blobs/sha256/{digest}")
    partial.rename(out)
    return ImageArchive(name, out)


@contextlib.contextmanager
def layer_tar(path: Path) -> Iterator[tarfile.TarFile]:
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        yield tar
    partial.rename(path)


def _dir_entry(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


# --------------------------------------------------------------------------------------------------------------
# The images


def pause_image(pause_binary: Path, cache: Path | None = None) -> ImageArchive:
    """The sandbox image: ``/pause``, nothing else."""
    cache = cache or default_image_cache()
    key = _sha256_file(pause_binary)[:16]
    out = cache / f"pause-{key}.oci.tar"
    if out.is_file():
        return ImageArchive(PAUSE_IMAGE, out)
    cache.mkdir(parents=True, exist_ok=True)
    layer = cache / f"pause-{key}.layer.tar"
    with layer_tar(layer) as tar:
        info = tar.gettarinfo(str(pause_binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755
        with open(pause_binary, "rb") as f:
            tar.addfile(info, f)
    archive = write_oci_archive(out, PAUSE_IMAGE, [layer], {"Entrypoint": ["/pause"], "User": "65535:65535"})
    layer.unlink()
    return archive


def debian_rootfs_path(cache: Path | None = None) -> Path:
    """Where :func:`debian_rootfs_layer` keeps its layer (so callers can tell whether it is built yet)."""
    key = hashlib.sha256(f"{DEBIAN_SUITE} {DEBIAN_MIRROR} {' '.join(DEBIAN_PACKAGES)}".encode()).hexdigest()[:12]
    return (cache or default_image_cache()) / f"debian-{DEBIAN_SUITE}-python3-{key}.layer.tar"


def debian_rootfs_layer(cache: Path | None = None, log: bool = True) -> Path:
    """A Debian ``bookworm`` root filesystem with python3 (debootstrap, minbase), as one layer tar; made once."""
    cache = cache or default_image_cache()
    out = debian_rootfs_path(cache)
    if out.is_file():
        return out
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageBuildError("building the kmcp image needs debootstrap (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root to build the kmcp image's root filesystem")
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kmcp-rootfs-", dir=cache) as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}", DEBIAN_SUITE,
             str(rootfs), DEBIAN_MIRROR],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-15:])
            raise ImageBuildError(f"debootstrap {DEBIAN_SUITE} failed (exit {proc.returncode}):\n{tail}")
        partial = out.with_name(out.name + ".partial")
        tar = subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs),
             *[f"--exclude={pattern}" for pattern in ROOTFS_EXCLUDES], "-cf", str(partial), "."],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if tar.returncode != 0:
            raise ImageBuildError(f"packing the Debian root filesystem failed:\n{tar.stdout[-2000:]}")
        partial.rename(out)
    if log:
        print(f"built the Debian {DEBIAN_SUITE} + python3 root filesystem in {time.monotonic() - started:.0f}s",
              file=sys.stderr)
    return out


def _kmcp_layer(zipapp: Path, layer: Path, python: str) -> None:
    """``/usr/local/bin/kmcp``, its dependencies pre-unpacked under ``/opt/kmcp/shiv`` (as the Dockerfile does, so
    a read-only root filesystem works) and ``/manager`` (the controller's entrypoint in the manifests)."""
    with tempfile.TemporaryDirectory(prefix="kmcp-layer-") as tmp:
        stage = Path(tmp)
        (stage / "usr/local/bin").mkdir(parents=True)
        target = stage / "usr/local/bin/kmcp"
        shutil.copyfile(zipapp, target)
        target.chmod(0o755)
        shiv_root = stage / "opt/kmcp/shiv"
        shiv_root.mkdir(parents=True)
        env = dict(os.environ, SHIV_ROOT=str(shiv_root), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run([python, str(target), "--version"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageBuildError(f"unpacking {zipapp} with {python} failed:\n{proc.stderr[-2000:]}")
        manager = stage / "manager"
        manager.write_text('#!/bin/sh\nexec kmcp controller "$@"\n')
        manager.chmod(0o755)
        with layer_tar(layer) as tar:
            for entry in ("usr", "usr/local", "usr/local/bin", "opt"):
                _dir_entry(tar, entry)

            def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode |= 0o444 | (0o111 if info.isdir() or info.mode & 0o100 else 0)
                return info

            tar.add(str(target), arcname="usr/local/bin/kmcp", filter=owned_by_root)
            tar.add(str(stage / "opt/kmcp"), arcname="opt/kmcp", filter=owned_by_root)
            tar.add(str(manager), arcname="manager", filter=owned_by_root)


def kmcp_image(zipapp: Path, cache: Path | None = None, log: bool = True,
               name: str = KMCP_IMAGE) -> ImageArchive:
    """The kmcp image for ``zipapp`` (cached by the zipapp's digest and the root filesystem)."""
    cache = cache or default_image_cache()
    rootfs = debian_rootfs_layer(cache, log)
    key = hashlib.sha256(f"{_sha256_file(zipapp)} {rootfs.name} {name}".encode()).hexdigest()[:16]
    out = cache / f"kmcp-{key}.oci.tar"
    if out.is_file():
        return ImageArchive(name, out)
    python = shutil.which(f"python{IMAGE_PYTHON}") or sys.executable
    layer = cache / f"kmcp-{key}.layer.tar"
    _kmcp_layer(zipapp, layer, python)
    config = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SHIV_ROOT=/opt/kmcp/shiv",
                "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"],
        "User": f"{KMCP_UID}:{KMCP_UID}",
        "Entrypoint": ["kmcp"],
        "Cmd": ["--help"],
    }
    archive = write_oci_archive(out, name, [rootfs, layer], config)
    layer.unlink()
    prune(cache, "kmcp-*.oci.tar", keep=KEEP_KMCP_IMAGES)
    return archive


def prune(cache: Path, pattern: str, keep: int) -> None:
    """Every source change makes a new kmcp image (~350 MB): keep only the newest few."""
    archives = sorted(cache.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in archives[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kmcp.devcluster.images``: build (or find cached) the root filesystem and, given a zipapp, the
    kmcp image; print the archives' paths."""
    import argparse

    parser = argparse.ArgumentParser(description="Build the dev node's images (cached in ~/.cache/kmcp/images).")
    parser.add_argument("--rootfs", action="store_true", help="the Debian + python3 root filesystem layer")
    parser.add_argument("--zipapp", type=Path, default=None, help="build the kmcp image for this dist/kmcp")
    args = parser.parse_args(argv)
    try:
        if args.rootfs:
            print(debian_rootfs_layer())
        if args.zipapp:
            image = kmcp_image(args.zipapp)
            print(f"{image.name} {image.path}")
    except ImageBuildError as err:
        print(f"kmcp: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
