"""A running dev node as other processes find it: the node publishes where its containerd listens, and
``kmcp build --load-dev-node`` imports an image archive there, as ``kind load`` does for a kind cluster.

The node writes ``dev-node.json`` into its cluster directory and, while it runs, the same record at
:func:`default_record` (one node per machine: its bridge name is fixed); it removes both when it stops. A record
left by a killed run is recognised (its containerd pid is gone) and reported, not used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

RECORD_NAME = "dev-node.json"
NAMESPACE = "k8s.io"  # the kubelet's containerd namespace


class DevNodeNotFound(RuntimeError):
    """No running dev node where one was looked for; the message says where and what to do."""


@dataclass(frozen=True)
class DevNodeRecord:
    containerd_socket: str
    containerd_pid: int
    kubeconfig: str

    def running(self) -> bool:
        try:
            os.kill(self.containerd_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return Path(self.containerd_socket).exists()


def default_record() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kmcp" / RECORD_NAME


def publish(record: DevNodeRecord, paths: list[Path]) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(asdict(record), indent=2) + "\n")
        partial.rename(path)


def unpublish(record: DevNodeRecord, paths: list[Path]) -> None:
    """Remove the records that still name this node (a newer node may have replaced the default one)."""
    for path in paths:
        with contextlib.suppress(OSError, ValueError, TypeError):
            if read(path) == record:
                path.unlink()


def read(path: Path) -> DevNodeRecord:
    data = json.loads(path.read_text())
    return DevNodeRecord(str(data["containerd_socket"]), int(data["containerd_pid"]), str(data["kubeconfig"]))


def find(where: Path | None = None) -> DevNodeRecord:
    """The running node recorded at ``where`` (a cluster directory or a record file; default
    :func:`default_record`)."""
    path = where or default_record()
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        record = read(path)
    except FileNotFoundError:
        raise DevNodeNotFound(f"no dev node recorded at {path}: start one as root with "
                              "`python -m kmcp.devcluster.node` (or name its directory)") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DevNodeNotFound(f"{path}: not a dev node record ({err})") from None
    if not record.running():
        raise DevNodeNotFound(f"the dev node recorded at {path} is not running (containerd pid "
                              f"{record.containerd_pid} is gone)")
    return record


def import_archive(record: DevNodeRecord, archive: Path, name: str) -> None:
    """``ctr images import`` into the node's containerd, then check that ``name`` is there for the kubelet."""
    ctr = shutil.which("ctr")
    if ctr is None:
        raise DevNodeNotFound("loading into the dev node needs containerd's ctr on PATH")
    base = [ctr, "--address", record.containerd_socket, "-n", NAMESPACE]
    proc = subprocess.run([*base, "images", "import", "--all-platforms", str(archive)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"ctr images import {archive} failed: {proc.stderr.strip()}")
    listed = subprocess.run([*base, "images", "ls", "-q"], capture_output=True, text=True, timeout=60)
    if name not in listed.stdout.split():
        raise RuntimeError(f"importing {archive} into the dev node did not give the image {name}")
