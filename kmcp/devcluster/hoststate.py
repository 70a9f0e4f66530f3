"""What a dev node changes on the machine, recorded before it starts and put back after it stops.

The kubelet sets kernel sysctls, kube-proxy and the kubelet write nftables/iptables tables, the CNI bridge plugin
turns on IP forwarding, containerd mounts root filesystems and network namespaces, the kubelet creates cgroups. None
of it is ours to keep: :meth:`HostState.restore` removes what is new and rewrites what changed, and says what it
could not undo instead of raising (it runs during teardown).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
CNI_NETNS_PREFIX = "cni-"  # the CNI library's network namespace names; no other is ours to remove
JOURNAL_NAME = "host-journal.json"


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

    def to_json(self) -> dict[str, Any]:
        return {"sysctls": self.sysctls, "nft": self.nft, "links": sorted(self.links), "mounts": sorted(self.mounts),
                "netns": {k: sorted(v) for k, v in self.netns.items()},
                "cgroups": {k: sorted(v) for k, v in self.cgroups.items()}, "side_dirs": self.side_dirs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostState:
        return cls(sysctls=dict(data["sysctls"]), nft=dict(data["nft"]), links=set(data["links"]),
                   mounts=set(data["mounts"]), netns={k: set(v) for k, v in data["netns"].items()},
                   cgroups={k: set(v) for k, v in data["cgroups"].items()}, side_dirs=dict(data["side_dirs"]))

    def changes_since(self, before: HostState, owned_dirs: Sequence[Path]) -> list[str]:
        """What differs from ``before`` among the things :meth:`restore` would undo, short (for one line)."""
        prefixes = [str(d).rstrip("/") + "/" for d in owned_dirs]
        mounts = [p for p in self.mounts - before.mounts if any(p.startswith(x) for x in prefixes)]
        netns = {n for d, names in self.netns.items() for n in names - before.netns.get(d, set())
                 if n.startswith(CNI_NETNS_PREFIX)}  # a set: /var/run is usually /run
        cgroups = sorted({n for h, names in self.cgroups.items() for n in names - before.cgroups.get(h, set())})
        nft = [k for k in set(self.nft) | set(before.nft) if self.nft.get(k) != before.nft.get(k)]
        sysctls = [k for k, v in self.sysctls.items() if before.sysctls.get(k, v) != v]
        found = [f"link {name}" for name in sorted(self.links - before.links)]
        found += [f"{len(nft)} nft table(s)"] if nft else []
        found += [f"{len(mounts)} mount(s)"] if mounts else []
        found += [f"{len(netns)} network namespace(s)"] if netns else []
        found += [f"cgroup(s) {', '.join(cgroups)}"] if cgroups else []
        found += [f"sysctl(s) {', '.join(sysctls)}"] if sysctls else []
        return found

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
            for name in sorted(n for n in set(os.listdir(d)) - before if n.startswith(CNI_NETNS_PREFIX)):
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


# --------------------------------------------------------------------------------------------------------------
# What a running node keeps on disk so that the next start can finish a killed run's teardown


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None when there is no such live process (a
    zombie counts as gone: it holds nothing but its pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def shim_pids(under: Iterable[str | Path]) -> list[int]:
    """The containerd shims serving a containerd whose socket is in one of the directories ``under``.

    A shim daemonizes (its parent is init, its own session) and containerd 1.6's runc shim writes no pid file, so
    it is found by its ``-address`` argument: the node's own containerd socket, a path no other containerd uses.
    """
    prefixes = [str(d).rstrip("/") + "/" for d in under]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not Path(argv[0]).name.startswith("containerd-shim") or "-address" not in argv[:-1]:
            continue
        address = argv[argv.index("-address") + 1]
        if any(address.startswith(prefix) for prefix in prefixes):
            found.append(int(entry.name))
    return sorted(found)


@dataclass(frozen=True)
class RecordedProcess:
    name: str
    pid: int
    start_time: int

    @classmethod
    def of(cls, name: str, pid: int) -> RecordedProcess | None:
        started = process_start_time(pid)
        return None if started is None else cls(name, pid, started)

    def alive(self) -> bool:
        """Still running, and still the process that was recorded (not a reused pid)."""
        return process_start_time(self.pid) == self.start_time


@dataclass
class Journal:
    """The node's record at ``path``: the host before the node changed it and everything the node started."""

    path: Path
    before: HostState
    supervisor: RecordedProcess
    owned_dirs: list[str] = field(default_factory=list)
    owned_links: list[str] = field(default_factory=list)
    remove_dirs: list[str] = field(default_factory=list)  # temp dirs of the run, removed once restored
    processes: list[RecordedProcess] = field(default_factory=list)

    def save(self) -> None:
        data = {"before": self.before.to_json(), "supervisor": asdict(self.supervisor),
                "owned_dirs": self.owned_dirs, "owned_links": self.owned_links, "remove_dirs": self.remove_dirs,
                "processes": [asdict(p) for p in self.processes]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(data) + "\n")
        partial.rename(self.path)

    @classmethod
    def load(cls, path: Path) -> Journal:
        data = json.loads(path.read_text())
        return cls(path, HostState.from_json(data["before"]), RecordedProcess(**data["supervisor"]),
                   list(data["owned_dirs"]), list(data["owned_links"]), list(data["remove_dirs"]),
                   [RecordedProcess(**p) for p in data["processes"]])

    def add_process(self, name: str, pid: int) -> None:
        recorded = RecordedProcess.of(name, pid)
        if recorded is not None:
            self.processes.append(recorded)
            self.save()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def live_processes(self) -> list[RecordedProcess]:
        return [p for p in self.processes if p.alive()]

    def finish(self, timeout: float = 10.0) -> tuple[list[str], list[str]]:
        """Finish the teardown a killed run could not do: stop what it started, then restore the host.

        Returns (what was found and undone, what could not be undone). Only processes this journal recorded are
        signalled, by pid (and their process groups: each was started as its own session leader), plus the
        processes in cgroups the run created and the containerd shims of its containerd (:func:`shim_pids`).
        """
        found = HostState.record().changes_since(self.before, [Path(d) for d in self.owned_dirs])
        victims = self._leftover_pids()
        # The kubelet first (it would restart containers), then every other process at once.
        ordered = sorted(self.live_processes(), key=lambda p: p.name != "kubelet")
        for proc in ordered:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    os.kill(proc.pid, signal.SIGKILL)
        for recorded in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(recorded.pid, signal.SIGKILL)
        killed = len(ordered) + len(victims)
        deadline = time.monotonic() + timeout
        while any(p.alive() for p in [*ordered, *victims]) and time.monotonic() < deadline:
            time.sleep(0.05)
        problems = [f"process {p.name} (pid {p.pid}) did not exit" for p in [*ordered, *victims] if p.alive()]
        if killed:
            found.insert(0, f"{killed} process(es)")
        problems += self.before.restore(owned_dirs=[Path(d) for d in self.owned_dirs], owned_links=self.owned_links)
        if not problems:
            for directory in self.remove_dirs:
                shutil.rmtree(directory, ignore_errors=True)
        return found, problems

    def _leftover_pids(self) -> list[RecordedProcess]:
        """The pods' processes (in cgroups the run created) and the shims of its containerd."""
        pids: set[int] = set()
        for hierarchy, names in top_cgroups().items():
            for name in names - self.before.cgroups.get(hierarchy, set()):
                for procs in (Path(hierarchy) / name).rglob("cgroup.procs"):
                    with contextlib.suppress(OSError, ValueError):
                        pids.update(int(line) for line in procs.read_text().split())
        pids.update(shim_pids(self.owned_dirs))
        pids -= {os.getpid()}
        return [r for r in (RecordedProcess.of("leftover", pid) for pid in sorted(pids)) if r is not None]
