"""What a dev node changes on the machine, recorded before it starts and put back after it stops.

The kubelet sets kernel sysctls, kube-proxy and the kubelet write nftables/iptables tables, the CNI bridge plugin
turns on IP forwarding, containerd mounts root filesystems and network namespaces, the kubelet creates cgroups. None
of it is ours to keep: :meth:`HostState.restore` removes what is new and rewrites what changed, and says what it
could not undo instead of raising (it runs during teardown).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Every sysctl a kubelet, kube-proxy or the CNI bridge plugin may write (kubelet: its "kernel defaults").
SYSCTLS = (
    "kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
# Directories outside the node's own that containerd, the CNI library or the kubelet create when missing.
SIDE_DIRS = (Path("/run/containerd"), Path("/var/lib/cni"), Path("/run/netns"), Path("/var/lib/kubelet"),
             Path("/var/log/pods"), Path("/var/log/containers"))


def _run(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)


def read_sysctls(names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = (Path("/proc/sys") / name).read_text().strip()
    return values


def nft_tables() -> dict[str, str]:
    """``"family name"`` → the table's ruleset text, for every nftables table (iptables-nft's tables too)."""
    if shutil.which("nft") is None:
        return {}
    listing = _run(["nft", "list", "tables"])
    tables: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table":
            key = f"{parts[1]} {parts[2]}"
            tables[key] = _run(["nft", "list", "table", parts[1], parts[2]]).stdout
    return tables


def link_names() -> set[str]:
    return {entry.name for entry in Path("/sys/class/net").iterdir()}


def mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                points.append(fields[4].encode().decode("unicode_escape"))
    return points


def cgroup_hierarchies() -> list[Path]:
    """Each mounted cgroup hierarchy's root: the v1 controller directories, or the one v2 root."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    return sorted(p for p in CGROUP_ROOT.iterdir()
                  if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists())


def top_cgroups() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for hierarchy in cgroup_hierarchies():
        with contextlib.suppress(OSError):
            found[str(hierarchy)] = {p.name for p in hierarchy.iterdir() if p.is_dir()}
    return found


def _rmdir_tree(path: Path) -> bool:
    """Remove a cgroup and its children, deepest first (cgroup directories go with rmdir, not unlink)."""
    ok = True
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            child.rmdir()
        except OSError:
            ok = False
    try:
        path.rmdir()
    except OSError:
        ok = False
    return ok


def unmount(point: str) -> bool:
    return _run(["umount", "-l", point]).returncode == 0


@dataclass
class HostState:
    """A snapshot of the machine-wide state a node touches (see the module docstring)."""

    sysctls: dict[str, str] = field(default_factory=dict)
    nft: dict[str, str] = field(default_factory=dict)
    links: set[str] = field(default_factory=set)
    mounts: set[str] = field(default_factory=set)
    netns: dict[str, set[str]] = field(default_factory=dict)
    cgroups: dict[str, set[str]] = field(default_factory=dict)
    side_dirs: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def record(cls) -> HostState:
        return cls(
            sysctls=read_sysctls(),
            nft=nft_tables(),
            links=link_names(),
            mounts=set(mount_points()),
            netns={str(d): set(os.listdir(d)) if d.is_dir() else set() for d in NETNS_DIRS},
            cgroups=top_cgroups(),
            side_dirs={str(d): d.exists() for d in SIDE_DIRS},
        )

    def restore(self, owned_dirs: Sequence[Path], owned_links: Sequence[str]) -> list[str]:
        """Undo what changed since :meth:`record`; returns one line per thing that could not be undone.

        ``owned_dirs``: the node's own directories, whose mounts are all removed. ``owned_links``: interfaces the
        node created. Run it only once every process of the node has exited.
        """
        problems: list[str] = []
        problems += self._restore_mounts(owned_dirs)
        problems += self._restore_netns()
        problems += self._restore_links(owned_links)
        problems += self._restore_nft()
        problems += self._restore_cgroups()
        problems += self._restore_sysctls()
        problems += self._restore_side_dirs()
        return problems

    def _restore_mounts(self, owned_dirs: Sequence[Path]) -> list[str]:
        prefixes = [str(d).rstrip("/") + "/" for d in owned_dirs] + [str(d) + "/" for d in NETNS_DIRS]
        new = [p for p in mount_points() if p not in self.mounts and any(p.startswith(x) for x in prefixes)]
        problems = []
        for point in sorted(set(new), key=len, reverse=True):
            if not unmount(point):
                problems.append(f"could not unmount {point}")
        return problems

    def _restore_netns(self) -> list[str]:
        problems = []
        for directory, before in self.netns.items():
            d = Path(directory)
            if not d.is_dir():
                continue
            for name in set(os.listdir(d)) - before:
                unmount(str(d / name))
                try:
                    (d / name).unlink()
                except OSError as err:
                    problems.append(f"could not remove network namespace {d / name}: {err.strerror}")
        return problems

    def _restore_links(self, owned_links: Sequence[str]) -> list[str]:
        problems = []
        for name in sorted(link_names() - self.links):
            kind = Path(f"/sys/class/net/{name}/master")
            master = kind.resolve().name if kind.exists() else ""
            if name in owned_links or master in owned_links:
                result = _run(["ip", "link", "delete", name])
                if result.returncode != 0 and name in link_names():
                    problems.append(f"could not delete link {name}: {result.stderr.strip()}")
        return problems

    def _restore_nft(self) -> list[str]:
        problems = []
        now = nft_tables()
        for key, text in now.items():
            before = self.nft.get(key)
            if before == text:
                continue
            family, name = key.split(" ", 1)
            result = _run(["nft", "delete", "table", family, name])
            if result.returncode != 0:
                problems.append(f"could not delete nft table {key}: {result.stderr.strip()}")
                continue
            if before is not None:
                result = _run(["nft", "-f", "-"], stdin=before)
                if result.returncode != 0:
                    problems.append(f"could not restore nft table {key}: {result.stderr.strip()}")
        for key, text in self.nft.items():
            if key not in now:
                result = _run(["nft", "-f", "-"], stdin=text)
                if result.returncode != 0:
                    problems.append(f"could not restore nft table {key}: {result.stderr.strip()}")
        return problems

    def _restore_cgroups(self) -> list[str]:
        problems = []
        for hierarchy, names in top_cgroups().items():
            for name in sorted(names - self.cgroups.get(hierarchy, set())):
                if not _rmdir_tree(Path(hierarchy) / name):
                    problems.append(f"could not remove cgroup {hierarchy}/{name}")
        return problems

    def _restore_sysctls(self) -> list[str]:
        problems = []
        for name, value in read_sysctls(self.sysctls).items():
            if value != self.sysctls[name]:
                try:
                    (Path("/proc/sys") / name).write_text(self.sysctls[name] + "\n")
                except OSError as err:
                    problems.append(f"could not restore sysctl {name}={self.sysctls[name]}: {err.strerror}")
        return problems

    def _restore_side_dirs(self) -> list[str]:
        for directory, existed in self.side_dirs.items():
            if not existed:
                shutil.rmtree(directory, ignore_errors=True)
        return [f"could not remove {d}" for d, existed in self.side_dirs.items() if not existed and Path(d).exists()]
