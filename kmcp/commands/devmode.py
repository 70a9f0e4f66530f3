"""Which pods ``kmcp dev up`` runs: on the real node (containerd + kubelet, :mod:`kmcp.devcluster.node`) or with
the local pod runner (:mod:`kmcp.devcluster.podrunner`, the rendered pod's containers as processes on 127.0.0.1).

``--node auto`` (the default) takes the real node when this machine can run one *now*: the node's own check
(:func:`kmcp.devcluster.node.unsupported_reason`: root, containerd, runc, CNI, nftables, cgroups) passes, no other
dev node holds its bridge, and what it needs is already built (kubelet & co., CoreDNS, the image root filesystem).
The last rule keeps a first ``dev up`` from starting an unannounced build of several minutes; ``--node real``
builds what is missing, ``--node local`` never tries. Whatever is chosen is said in one line, with the reason.

:func:`choose_mode` is pure (tested without a machine); :func:`node_facts` gathers what it decides on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kmcp.errors import BadInput, CommandFailed

REQUESTS = ("auto", "real", "local")
ENV_VAR = "KMCP_DEV_NODE"
# What building the missing pieces costs, from NODE-NOTES.md (2 cores, warm Go cache): said before it starts.
BUILD_MINUTES = "~4 min for the node's binaries, ~4 min for the image root filesystem"


class Mode(enum.Enum):
    REAL = "real"
    LOCAL = "local"


@dataclass(frozen=True)
class NodeFacts:
    """What decides the mode: why no node can run here (None: one can), what holds the node's bridge, what is
    not built yet."""

    unsupported: str | None = None
    busy: str | None = None
    unbuilt: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModeChoice:
    mode: Mode
    reason: str
    builds: bool = False  # the node's pieces get built first: minutes, once

    def line(self) -> str:
        """The one line ``dev up`` prints before anything else."""
        what = ("real node (containerd + kubelet run the pods)" if self.mode is Mode.REAL
                else "local pod runner (the pod's containers run as local processes)")
        return f"kmcp dev mode: {what}: {self.reason}"


def requested_mode(flag: str | None, environ: Mapping[str, str]) -> str:
    """``--node`` wins over ``$KMCP_DEV_NODE``; neither means auto."""
    value = (flag or environ.get(ENV_VAR) or "auto").strip().lower()
    if value not in REQUESTS:
        source = "--node" if flag else f"${ENV_VAR}"
        raise BadInput(f"{source}: {value!r} is not one of {', '.join(REQUESTS)}")
    return value


def choose_mode(requested: str, facts: NodeFacts) -> ModeChoice:
    """The mode for ``requested`` (auto, real, local) on a machine described by ``facts``.

    ``real`` on a machine that cannot run a node fails rather than quietly running something else.
    """
    if requested == "local":
        return ModeChoice(Mode.LOCAL, "asked for (--node local)")
    if requested == "real":
        blocker = facts.unsupported or facts.busy
        if blocker:
            raise CommandFailed(f"--node real: {blocker}")
        if facts.unbuilt:
            return ModeChoice(Mode.REAL, f"asked for (--node real); building {', '.join(facts.unbuilt)} first "
                                         f"({BUILD_MINUTES}, once)", builds=True)
        return ModeChoice(Mode.REAL, "asked for (--node real)")
    if facts.unsupported:
        return ModeChoice(Mode.LOCAL, f"no real node here, {facts.unsupported}")
    if facts.busy:
        return ModeChoice(Mode.LOCAL, f"no real node, {facts.busy}")
    if facts.unbuilt:
        return ModeChoice(Mode.LOCAL, f"this machine can run a real node but {', '.join(facts.unbuilt)} "
                                      f"{'is' if len(facts.unbuilt) == 1 else 'are'} not built yet "
                                      "(once, by `kmcp dev up --node real` or `bash scripts/setup`)")
    return ModeChoice(Mode.REAL, "this machine can run one (--node local for the pod runner)")


def node_facts(journal: Path | None = None) -> NodeFacts:
    """This machine, as :func:`choose_mode` needs it. ``journal``: where this directory's node keeps its journal;
    a bridge that a killed run of this directory left is not busy (the start restores what that run left)."""
    from kmcp.devcluster.binaries import DnsToolchain, NodeToolchain, default_cache_root
    from kmcp.devcluster.images import debian_rootfs_path
    from kmcp.devcluster.node import BRIDGE, bridge_owner, unsupported_reason

    unsupported = unsupported_reason()
    if unsupported:
        return NodeFacts(unsupported=unsupported)
    busy = None
    owner = bridge_owner()
    if owner is not None and not (journal is not None and owner == str(journal) and journal.is_file()):
        busy = f"interface {BRIDGE} exists: another dev node runs on this machine"
    root = default_cache_root()
    unbuilt = []
    if not NodeToolchain(root).complete():
        unbuilt.append("kubelet, kube-scheduler and kube-proxy")
    if not DnsToolchain(root).complete():
        unbuilt.append("CoreDNS")
    if not debian_rootfs_path().is_file():
        unbuilt.append("the image root filesystem")
    return NodeFacts(busy=busy, unbuilt=tuple(unbuilt))
