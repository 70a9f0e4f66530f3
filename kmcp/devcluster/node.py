"""A real Kubernetes node on this machine: containerd + kubelet + kube-scheduler + kube-proxy, joined to a
:class:`~kmcp.devcluster.control_plane.ControlPlane` started with ``with_node=True``.

    with DevCluster() as cluster:          # control plane + node, Ready
        cluster.kubeconfig                 # admin kubeconfig
        cluster.node.pod_subnet            # where pod IPs come from

CoreDNS runs beside them (:mod:`kmcp.devcluster.dns`) for ``*.svc.cluster.local``. Everything lives in the
cluster's directory (containerd's root, state and socket, the kubelet's root and pod logs,
CNI configuration and IP allocations) or on the one bridge the node creates (``kmcp0``): the node IP is that
bridge's address, pods are attached to it by the CNI bridge plugin without IP masquerading and without a default
route, and the Service range is routed into it, so no pod or Service traffic can leave the machine. containerd
fails every image pull fast (its proxy is a closed loopback port): images are imported, never pulled.

What the machine needs and how it was found to behave is in ``docs`` / NODE-NOTES: cgroup v1 (``failCgroupV1:
false``, cgroupfs), no CAP_SYS_RESOURCE (``restrict_oom_score_adj``), a non-loopback node IP. :func:`unsupported_reason`
checks it and answers in one line. Machine-wide changes are recorded before start and restored on stop
(:mod:`kmcp.devcluster.hoststate`); every process is stopped by its pid.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from kmcp.devcluster import devnode, dns
from kmcp.devcluster.binaries import (
    DnsToolchain,
    NodeToolchain,
    ensure_binaries,
    ensure_dns_binaries,
    ensure_node_binaries,
)
from kmcp.devcluster.control_plane import (
    SERVICE_CLUSTER_IP_RANGE,
    ControlPlane,
    ControlPlaneError,
    KeyPair,
    Lifecycle,
    ManagedProcess,
    ProcessGroup,
    _write_private,
    free_port,
    issue_cert,
    kubeconfig_yaml,
    stop_processes,
)
from kmcp.devcluster.hoststate import (
    CNI_NETNS_PREFIX,
    JOURNAL_NAME,
    NETNS_DIRS,
    HostState,
    Journal,
    RecordedProcess,
    cgroup_hierarchies,
    nft_tables,
    shim_pids,
)
from kmcp.devcluster.images import PAUSE_IMAGE, ImageArchive, pause_image

NODE_NAME = "kmcp-node"
BRIDGE = "kmcp0"
# Tried in order; the first that overlaps no route or address of this machine is the node's subnet.
SUBNET_CANDIDATES = ("10.213.0.0/24", "10.223.0.0/24", "172.29.213.0/24", "192.168.213.0/24")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
CNI_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
REQUIRED_COMMANDS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "mount", "umount")
CLOSED_PROXY = "http://127.0.0.1:9"  # discard port, nobody listens: a pull fails at once instead of leaving
BRIDGE_ALIAS = "kmcp dev node, journal "  # + the journal's path: the bridge names the run that made it
# What a Kubernetes node leaves machine-wide besides the bridge; found with no journal naming it, it is not ours.
FOREIGN_NFT_TABLES = ("kube-proxy",)
FOREIGN_CGROUPS = ("kubepods", "kubepods.slice")


class NodeError(ControlPlaneError):
    """The node could not start; the message says which part and carries its log's tail."""


# --------------------------------------------------------------------------------------------------------------
# Can this machine run a node?


def cgroup_version() -> int:
    return 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1


def cni_bin_dir() -> Path | None:
    for directory in CNI_DIRS:
        if all(os.access(directory / plugin, os.X_OK) for plugin in CNI_PLUGINS):
            return directory
    return None


def proxy_mode() -> str | None:
    """kube-proxy's mode here: nftables where ``nft`` works, else iptables on its nf_tables backend (both are
    nft tables, which is what teardown restores), else None."""
    if shutil.which("nft") and subprocess.run(["nft", "list", "tables"], capture_output=True,
                                              check=False).returncode == 0:
        return "nftables"
    if shutil.which("iptables"):
        version = subprocess.run(["iptables", "--version"], capture_output=True, text=True, check=False).stdout
        if "nf_tables" in version:
            return "iptables"
    return None


def unsupported_reason() -> str | None:
    """None when this machine can run a node, else one line saying why not and what would fix it."""
    if not sys.platform.startswith("linux"):
        return f"a dev node needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "a dev node needs root (it runs containerd and the kubelet)"
    missing = [cmd for cmd in REQUIRED_COMMANDS if shutil.which(cmd) is None]
    if missing:
        return (f"a dev node needs {', '.join(missing)} on PATH; `bash scripts/setup` as root installs them "
                "(Debian: containerd runc nftables)")
    if cni_bin_dir() is None:
        return (f"a dev node needs the CNI plugins {', '.join(CNI_PLUGINS)} in /usr/lib/cni or /opt/cni/bin "
                "(Debian: containernetworking-plugins)")
    if proxy_mode() is None:
        return ("a dev node needs nftables for kube-proxy (`nft list tables` must work; Debian: nftables), or "
                "iptables on its nf_tables backend")
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "a dev node needs overlayfs (containerd's snapshotter), which this kernel lacks"
    if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
        return "a dev node needs cgroups mounted at /sys/fs/cgroup"
    if cgroup_version() == 1 and not Path("/sys/fs/cgroup/memory").is_dir():
        return "a dev node needs the cgroup v1 memory controller mounted at /sys/fs/cgroup/memory"
    return None


def _routes_and_addresses() -> list[ipaddress.IPv4Network]:
    nets: list[ipaddress.IPv4Network] = []
    for argv in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr"]):
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout or "[]"
        for entry in json.loads(out):
            if "dst" in entry and entry["dst"] not in ("default", "local", "broadcast"):
                with contextlib.suppress(ValueError):
                    nets.append(ipaddress.ip_network(entry["dst"], strict=False))  # type: ignore[arg-type]
            for addr in entry.get("addr_info", []):
                with contextlib.suppress(ValueError):
                    nets.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))  # type: ignore[arg-type]
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def pick_subnet(taken: Sequence[ipaddress.IPv4Network] | None = None) -> ipaddress.IPv4Network:
    used = list(_routes_and_addresses() if taken is None else taken)
    used.append(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE))
    for candidate in SUBNET_CANDIDATES:
        net = ipaddress.IPv4Network(candidate)
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise NodeError(f"every candidate node subnet ({', '.join(SUBNET_CANDIDATES)}) is already in use here")


# --------------------------------------------------------------------------------------------------------------
# Generated configuration


def containerd_config(directory: Path, cni_bin: Path, cni_conf: Path) -> str:
    """containerd 1.6 (config version 2): own root/state/socket, cgroupfs, ``restrict_oom_score_adj`` (no
    CAP_SYS_RESOURCE here), the locally built sandbox image, CNI from the node's directory."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{directory / 'root'}"
state = "{directory / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{directory / 'containerd.sock'}"

[ttrpc]
  address = "{directory / 'containerd.sock.ttrpc'}"

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{directory / 'runc'}"

[{cri}.cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{cni_conf}"
  max_conf_num = 1
"""


def cni_conflist(subnet: ipaddress.IPv4Network, gateway: str, ipam_dir: Path) -> dict[str, Any]:
    """A bridge on ``kmcp0`` with host-local IPs; no masquerading and only two routes (the node's subnet and
    the Service range), so a pod can reach this machine's node and Services and nothing beyond."""
    hosts = list(subnet.hosts())
    return {
        "cniVersion": "1.0.0",
        "name": "kmcp",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                      "ranges": [[{"subnet": str(subnet), "gateway": gateway,
                                   "rangeStart": str(hosts[9]), "rangeEnd": str(hosts[-1])}]],
                      "routes": [{"dst": SERVICE_CLUSTER_IP_RANGE, "gw": gateway}]}},
        ],
    }


def kubelet_config(*, node_ip: str, port: int, healthz_port: int, ca_file: Path, tls_cert: Path, tls_key: Path,
                   runtime_socket: Path, resolv_conf: Path, pod_logs: Path, pod_subnet: str,
                   cluster_dns: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca_file)}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(tls_cert),
        "tlsPrivateKeyFile": str(tls_key),
        "containerRuntimeEndpoint": f"unix://{runtime_socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,  # cgroup v1 hosts: kubelet >= 1.35 refuses them unless told
        "failSwapOn": False,
        "resolvConf": str(resolv_conf),
        "clusterDNS": [cluster_dns],
        "clusterDomain": dns.CLUSTER_DOMAIN,
        "podLogsDir": str(pod_logs),
        "podCIDR": pod_subnet,
        "maxPods": 110,
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "registerNode": True,
        # A dev machine's disk is shared: never evict or garbage-collect images because of it.
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "shutdownGracePeriod": "0s",
        "staticPodPath": "",
    }


def kube_proxy_config(*, kubeconfig: Path, mode: str, pod_subnet: str, node_ip: str, healthz_port: int,
                      metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": mode,
        "clusterCIDR": pod_subnet,
        "hostnameOverride": NODE_NAME,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{node_ip}/32"],
        # Zero: leave the machine's conntrack sysctls as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


# --------------------------------------------------------------------------------------------------------------
# What a killed run left


def bridge_owner() -> str | None:
    """The journal path the existing ``kmcp0`` bridge names, "" for a bridge that names none, None for no bridge."""
    link = Path(f"/sys/class/net/{BRIDGE}")
    if not link.exists():
        return None
    with contextlib.suppress(OSError):
        alias = (link / "ifalias").read_text().strip()
        if alias.startswith(BRIDGE_ALIAS):
            return alias[len(BRIDGE_ALIAS):]
    return ""


def foreign_node_state() -> str | None:
    """One machine-wide thing a Kubernetes node makes that is here although no journal of ours names it."""
    for key in nft_tables():
        if key.split(" ", 1)[1] in FOREIGN_NFT_TABLES:
            return f"nft table {key}"
    for hierarchy in cgroup_hierarchies():
        for name in FOREIGN_CGROUPS:
            if (hierarchy / name).is_dir():
                return f"cgroup {hierarchy / name}"
    for directory in NETNS_DIRS:
        if directory.is_dir():
            for name in sorted(os.listdir(directory)):
                if name.startswith(CNI_NETNS_PREFIX):
                    return f"network namespace {directory / name}"
    return None


def recover_leftovers(journal_path: Path) -> str | None:
    """Before a node starts with its journal at ``journal_path``: finish the teardown of a previous run of the same
    state directory that was killed, and say so in one line; None when nothing was left.

    Refuses (:class:`NodeError`, one line naming it) when the machine holds a node's state that is not this
    directory's: another dev node's bridge (running or left behind), a ``kmcp0`` no dev node made, or kube-proxy
    tables, kubepods cgroups or CNI network namespaces no journal accounts for.
    """
    owner = bridge_owner()
    mine = str(journal_path)
    if owner is not None and owner != mine:
        if not owner:
            raise NodeError(f"interface {BRIDGE} exists and no kmcp dev node made it (its alias names no journal): "
                            f"not ours to remove; `ip link delete {BRIDGE}` if nothing uses it")
        other = Path(owner)
        try:
            journal = Journal.load(other)
        except (OSError, ValueError, KeyError, TypeError):
            raise NodeError(f"interface {BRIDGE} belongs to the dev node whose journal was {owner}, which is gone: "
                            f"not ours to remove; `ip link delete {BRIDGE}` if nothing uses it") from None
        if journal.supervisor.alive():
            raise NodeError(f"another dev node runs on this machine (pid {journal.supervisor.pid}, state in "
                            f"{other.parent}): one node per machine, stop it first")
        raise NodeError(f"a dev node in {other.parent} was killed and left its state here: start it again with that "
                        f"directory, or run `python -m kmcp.devcluster.node --recover {other}`, to restore it")
    if not journal_path.exists():
        if owner == mine:
            raise NodeError(f"interface {BRIDGE} names the journal {journal_path}, which is gone (its directory was "
                            "removed while the node ran): what that run changed cannot be restored from it; "
                            f"`ip link delete {BRIDGE}` and stop its processes by hand")
        if owner is None:
            foreign = foreign_node_state()
            if foreign:
                raise NodeError(f"{foreign} exists and no kmcp dev node recorded it (another Kubernetes node on "
                                "this machine?): not starting one beside it")
        return None
    try:
        journal = Journal.load(journal_path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise NodeError(f"{journal_path}: not a readable node journal ({err}); remove it if no node uses this "
                        "directory") from None
    if journal.supervisor.alive() and journal.supervisor.pid != os.getpid():
        raise NodeError(f"the dev node of {journal_path.parent} is running (pid {journal.supervisor.pid}): stop it "
                        "first")
    found, problems = journal.finish()
    if problems:
        raise NodeError(f"a previous run in {journal_path.parent} was killed and what it left could not all be "
                        f"restored: {'; '.join(problems)}")
    journal.remove()
    return (f"a previous run in {journal_path.parent} was killed (pid {journal.supervisor.pid}); restored what it "
            f"left: {', '.join(found) or 'nothing'}")


# --------------------------------------------------------------------------------------------------------------
# The node


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NodeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")


@dataclass
class Node(ProcessGroup):
    """The node of ``control_plane`` (which must run with ``with_node=True``); files under its directory."""

    control_plane: ControlPlane
    toolchain: NodeToolchain | None = None
    dns_toolchain: DnsToolchain | None = None
    images: Sequence[ImageArchive] = ()
    start_timeout: float = 90.0
    stop_grace: float = 5.0
    proxy_mode: str | None = None  # None: nftables if it works here, else iptables (see proxy_mode())
    workdir: Path | None = None  # default: "node" in the control plane's directory
    journal_path: Path | None = None  # default: in the node's directory (see hoststate.Journal)
    remove_journal_on_stop: bool = True  # False when the owner (DevCluster) still has processes to stop

    subnet: ipaddress.IPv4Network = field(init=False, default=ipaddress.IPv4Network("10.213.0.0/24"))
    processes: list[ManagedProcess] = field(init=False, default_factory=list)
    startup_seconds: float = field(init=False, default=0.0)
    timings: dict[str, float] = field(init=False, default_factory=dict)
    restore_problems: list[str] = field(init=False, default_factory=list)
    recovered: str | None = field(init=False, default=None)  # the line recover() said, if it restored anything
    _host: HostState | None = field(init=False, default=None)
    _journal: Journal | None = field(init=False, default=None)
    _recover_checked: bool = field(init=False, default=False)
    _network_ready: bool = field(init=False, default=False)

    # -- paths and addresses
    @property
    def directory(self) -> Path:
        return self.workdir or self.control_plane.directory / "node"

    @property
    def journal_file(self) -> Path:
        return self.journal_path or self.directory / JOURNAL_NAME

    @property
    def containerd_dir(self) -> Path:
        return self.directory / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def node_ip(self) -> str:
        return str(next(self.subnet.hosts()))

    @property
    def pod_subnet(self) -> str:
        return str(self.subnet)

    # -- lifecycle
    def start(self) -> Node:
        if self.processes:
            raise RuntimeError("node already started")
        reason = unsupported_reason()
        if reason:
            raise NodeError(reason)
        if not self.control_plane.with_node:
            raise RuntimeError("the control plane must be started with with_node=True")
        started = time.monotonic()
        chain = self.toolchain = self.toolchain or ensure_node_binaries()
        dns_chain = self.dns_toolchain = self.dns_toolchain or ensure_dns_binaries()
        try:
            if not self._network_ready:
                self.create_network()
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._step("containerd", self._start_containerd)
            self._step("images", lambda: self._import_images([pause_image(chain.path("pause")), *self.images]))
            self._step("credentials", self._write_credentials)
            self._step("coredns", lambda: self._start_coredns(dns_chain))
            self._step("kubelet", lambda: self._start_kubelet(chain))
            self._step("kube-scheduler", lambda: self._start_scheduler(chain))
            self._step("kube-proxy", lambda: self._start_kube_proxy(chain))
            self._step("kube-dns", self._wait_kube_dns)
            self._step("node Ready", self._wait_node_ready)
            devnode.publish(self._record(), self._record_paths())
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def create_network(self) -> None:
        """Record the machine's state, then create the bridge; before the control plane starts when the apiserver
        is to listen on the node's address (:class:`DevCluster`)."""
        if self._host is None:
            self.recover()
            self._host = HostState.record()
            supervisor = RecordedProcess.of("supervisor", os.getpid())
            assert supervisor is not None
            self._journal = Journal(self.journal_file, self._host, supervisor, owned_dirs=[str(self.directory)],
                                    owned_links=[BRIDGE])
            self._journal.save()
            atexit.register(self.stop)
        self._step("network", self._create_network)
        self._network_ready = True

    def recover(self) -> str | None:
        """What a killed previous run with this journal left, restored (see :func:`recover_leftovers`); once."""
        if not self._recover_checked:
            self.recovered = recover_leftovers(self.journal_file)
            self._recover_checked = True
        return self.recovered

    def record_process(self, name: str, pid: int | None) -> None:
        """Keep ``pid`` in the journal: a process of this node's run, stopped by a later start if this one is
        killed."""
        if self._journal is not None and pid is not None:
            self._journal.add_process(name, pid)

    def remove_journal(self) -> None:
        if self._journal is not None and not self.restore_problems:
            self._journal.remove()
        self._journal = None

    def _step(self, name: str, action: Callable[[], None]) -> None:
        began = time.monotonic()
        action()
        self.timings[name] = time.monotonic() - began

    def stop(self) -> None:
        """Stop the pods, then every process by its pid, then put the machine back as it was (idempotent).

        What could not be restored is kept in ``restore_problems`` and printed, one line each.
        """
        atexit.unregister(self.stop)
        if self._host is None:
            return
        by_name = {p.name: p for p in self.processes}
        if "containerd" in by_name and by_name["containerd"].pid is not None:
            devnode.unpublish(self._record(), self._record_paths())
        if "kube-scheduler" in by_name:  # no new pod may reach the kubelet while it drains
            stop_processes([by_name["kube-scheduler"]], self.stop_grace)
        if "kubelet" in by_name and by_name["kubelet"].running():
            with contextlib.suppress(OSError, ValueError, NodeError):
                self._drain()
        stop_processes([p for p in reversed(self.processes) if p.name != "containerd"], self.stop_grace)
        self._kill_leftover_tasks()
        shims = set(self._shim_pids())
        stop_processes([p for p in self.processes if p.name == "containerd"], self.stop_grace)
        # A shim outlives containerd by design; it is still ours. Looked for again once containerd is gone: a
        # sandbox the kubelet asked for just before it stopped may have got its shim meanwhile.
        for pid in shims | set(self._shim_pids()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.processes.clear()
        self.restore_problems = self._host.restore(owned_dirs=[self.directory], owned_links=[BRIDGE])
        self._host = None
        self._network_ready = False
        self._recover_checked = False
        if self.remove_journal_on_stop:
            self.remove_journal()  # kept when something could not be restored: the next start tries again
        for line in self.restore_problems:
            print(f"kmcp node teardown: {line}", file=sys.stderr)

    # -- helpers
    def _record(self) -> devnode.DevNodeRecord:
        pid = self.process("containerd").pid
        assert pid is not None
        return devnode.DevNodeRecord(str(self.containerd_socket), pid, str(self.control_plane.kubeconfig))

    def _record_paths(self) -> list[Path]:
        return [self.control_plane.directory / devnode.RECORD_NAME, devnode.default_record()]

    def _launch(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.directory / "logs" / f"{name}.log")
        self.processes.append(proc)
        proc.start(env)
        self.record_process(name, proc.pid)
        return proc

    def _wait(self, proc: ManagedProcess | None, what: str, probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while True:
            if proc is not None and not proc.running():
                raise NodeError(str(proc.failure(f"exited while waiting for {what}")))
            try:
                if probe():
                    return
            except (OSError, ValueError, subprocess.SubprocessError) as err:
                last = f" (last error: {type(err).__name__}: {err})"
            if time.monotonic() > deadline:
                if proc is not None:
                    raise NodeError(str(proc.failure(f"not ready: {what} after {self.start_timeout:.0f}s{last}")))
                raise NodeError(f"not ready: {what} after {self.start_timeout:.0f}s{last}")
            time.sleep(0.1)

    def _api(self, method: str, path: str, body: object = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        cp = self.control_plane
        ctx = ssl.create_default_context(cafile=str(cp.pki.ca_crt))
        ctx.load_cert_chain(str(cp.pki.admin_crt), str(cp.pki.admin_key))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{cp.server}{path}", data=data, method=method,
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                return int(resp.status), json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return int(err.code), None

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        """Run ``ctr`` against this node's containerd in the kubelet's namespace (``k8s.io``)."""
        proc = subprocess.run(["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    # -- steps
    def _create_network(self) -> None:
        if BRIDGE in os.listdir("/sys/class/net"):
            raise NodeError(f"interface {BRIDGE} already exists: another dev node runs on this machine, or one was "
                            f"not cleaned up (`ip link delete {BRIDGE}`)")
        self.subnet = pick_subnet()
        _ip("link", "add", BRIDGE, "type", "bridge")
        self._bridge_created = True
        _ip("link", "set", "dev", BRIDGE, "alias", f"{BRIDGE_ALIAS}{self.journal_file}")
        _ip("addr", "add", f"{self.node_ip}/{self.subnet.prefixlen}", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        # Host → ClusterIP: kube-proxy DNATs in the output hook; the source must be the node IP so the pod's
        # answer stays on the bridge (pods have no default route).
        _ip("route", "add", SERVICE_CLUSTER_IP_RANGE, "dev", BRIDGE, "src", self.node_ip)

    def _start_containerd(self) -> None:
        d = self.containerd_dir
        cni_conf = self.directory / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        bin_dir = cni_bin_dir()
        assert bin_dir is not None  # unsupported_reason() checked
        (cni_conf / "10-kmcp.conflist").write_text(json.dumps(
            cni_conflist(self.subnet, self.node_ip, self.directory / "cni" / "ipam"), indent=2) + "\n")
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = d / "config.toml"
        config.write_text(containerd_config(d, bin_dir, cni_conf))
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(HTTP_PROXY=CLOSED_PROXY, HTTPS_PROXY=CLOSED_PROXY, NO_PROXY="")
        proc = self._launch("containerd", ["containerd", "--config", str(config), "--log-level", "warn"], env)

        def up() -> bool:
            return (self.containerd_socket.exists()
                    and subprocess.run(["ctr", "--address", str(self.containerd_socket), "version"],
                                       capture_output=True, timeout=10, check=False).returncode == 0)

        self._wait(proc, "containerd's socket", up)

    def _import_images(self, images: Sequence[ImageArchive]) -> None:
        for image in images:
            self.ctr("images", "import", "--all-platforms", str(image.path), timeout=300)
            if image.name not in self.ctr("images", "ls", "-q").split():
                raise NodeError(f"importing {image.path} did not give the image {image.name}")

    def _write_credentials(self) -> None:
        cp = self.control_plane
        pki = cp.pki
        ca = KeyPair(pki.ca_crt.read_bytes(), pki.ca_key.read_bytes())
        ca_key = serialization.load_pem_private_key(ca.key_pem, None)
        from cryptography.hazmat.primitives.asymmetric import ec

        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        creds = self.directory / "pki"
        creds.mkdir(exist_ok=True, mode=0o700)
        serving = issue_cert(ca, ca_key, f"system:node:{NODE_NAME}", organizations=["system:nodes"], server=True,
                             dns_names=[NODE_NAME], ip_addresses=[self.node_ip])
        _write_private(creds / "kubelet.crt", serving.cert_pem)
        _write_private(creds / "kubelet.key", serving.key_pem)
        for name, user, groups in (("kubelet", f"system:node:{NODE_NAME}", ["system:nodes"]),
                                   ("kube-scheduler", "system:kube-scheduler", []),
                                   ("kube-proxy", "system:kube-proxy", []),
                                   ("coredns", dns.USER, [])):
            pair = issue_cert(ca, ca_key, user, organizations=groups, client=True)
            _write_private(self.directory / f"{name}.kubeconfig", kubeconfig_yaml(
                cp.server, ca.cert_pem, user, client_cert_pem=pair.cert_pem,
                client_key_pem=pair.key_pem).encode())
        # The kubelet appends this file's search list to every pod's and uses its nameserver only for pods with
        # dnsPolicy Default: no search domain of this machine, no resolver of it. ClusterFirst pods ask kube-dns.
        (self.directory / "resolv.conf").write_text("nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n")

    def _start_coredns(self, chain: DnsToolchain) -> None:
        """CoreDNS on the node address, then the RBAC it reads with and the ``kube-dns`` Service pointing at it;
        Ready once its kubernetes plugin has synced with the apiserver."""
        for obj in dns.rbac_objects():
            self._apply(obj)
        health, ready = free_port(), free_port()
        config = self.directory / "Corefile"
        config.write_text(dns.corefile(node_ip=self.node_ip, kubeconfig=self.directory / "coredns.kubeconfig",
                                       health_port=health, ready_port=ready))
        proc = self._launch("coredns", [str(chain.path("coredns")), "-conf", str(config), "-quiet"])

        def synced() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ready}/ready", timeout=5) as r:
                    return int(r.status) == 200
            except urllib.error.HTTPError:
                return False

        self._wait(proc, "CoreDNS /ready (its kubernetes plugin synced)", synced)
        for obj in dns.service_objects(self.node_ip):
            self._apply(obj)

    def _apply(self, obj: dict[str, Any]) -> None:
        status, _ = self._api("PATCH", f"{dns.object_path(obj)}?fieldManager=kmcp-dev-node&force=true", obj,
                              content_type="application/apply-patch+yaml")
        if status not in (200, 201):
            raise NodeError(f"applying {obj['kind']} {obj['metadata']['name']} failed: HTTP {status}")

    def _start_kubelet(self, chain: NodeToolchain) -> None:
        cp = self.control_plane
        config = self.directory / "kubelet-config.json"
        healthz = free_port()
        config.write_text(json.dumps(kubelet_config(
            node_ip=self.node_ip, port=free_port(self.node_ip), healthz_port=healthz, ca_file=cp.pki.ca_crt,
            tls_cert=self.directory / "pki" / "kubelet.crt", tls_key=self.directory / "pki" / "kubelet.key",
            runtime_socket=self.containerd_socket, resolv_conf=self.directory / "resolv.conf",
            pod_logs=self.directory / "pod-logs", pod_subnet=self.pod_subnet, cluster_dns=dns.KUBE_DNS_IP),
            indent=2) + "\n")
        proc = self._launch("kubelet", [
            str(chain.path("kubelet")),
            f"--config={config}",
            f"--kubeconfig={self.directory / 'kubelet.kubeconfig'}",
            f"--root-dir={self.directory / 'kubelet'}",
            f"--cert-dir={self.directory / 'kubelet-certs'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={self.node_ip}",
            "--v=1",
        ])

        def registered() -> bool:
            status, _ = self._api("GET", f"/api/v1/nodes/{NODE_NAME}")
            return status == 200

        self._wait(proc, f"node {NODE_NAME} registered", registered)

    def _start_scheduler(self, chain: NodeToolchain) -> None:
        kubeconfig = str(self.directory / "kube-scheduler.kubeconfig")
        port = free_port()
        proc = self._launch("kube-scheduler", [
            str(chain.path("kube-scheduler")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.directory / 'scheduler-certs'}",
            "--profiling=false",
            "--v=1",
        ])
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; /healthz is all we read

        def healthy() -> bool:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5, context=insecure) as r:
                return int(r.status) == 200

        self._wait(proc, "kube-scheduler /healthz", healthy)

    def _start_kube_proxy(self, chain: NodeToolchain) -> None:
        healthz = free_port()
        config = self.directory / "kube-proxy-config.json"
        config.write_text(json.dumps(kube_proxy_config(
            kubeconfig=self.directory / "kube-proxy.kubeconfig", mode=self.proxy_mode or proxy_mode() or "nftables",
            pod_subnet=self.pod_subnet,
            node_ip=self.node_ip, healthz_port=healthz, metrics_port=free_port()), indent=2) + "\n")
        proc = self._launch("kube-proxy", [str(chain.path("kube-proxy")), f"--config={config}", "--v=1"])

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{healthz}/healthz", timeout=5) as r:
                    return int(r.status) == 200
            except urllib.error.HTTPError:
                return False

        self._wait(proc, "kube-proxy /healthz", healthy)

    def _wait_kube_dns(self) -> None:
        """Until kube-proxy has the kube-dns Service's rules, a pod's first lookup times out: wait for them."""
        def answered() -> bool:
            return dns.query_a(dns.KUBE_DNS_IP, "kubernetes.default.svc.cluster.local", timeout=0.5)[0] == 0

        self._wait(self.process("kube-proxy"), f"kube-dns answering at {dns.KUBE_DNS_IP}", answered)

    def _wait_node_ready(self) -> None:
        def ready() -> bool:
            status, node = self._api("GET", f"/api/v1/nodes/{NODE_NAME}")
            conditions = (node or {}).get("status", {}).get("conditions", []) if status == 200 else []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        self._wait(self.process("kubelet"), f"node {NODE_NAME} Ready", ready)

    # -- teardown
    def _drain(self, timeout: float = 20.0) -> None:
        """Delete every pod bound to the node at once (grace 0) and wait until containerd runs no task: the kubelet
        then has torn down each sandbox properly (CNI DEL, network namespace removed)."""
        status, pods = self._api("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE_NAME}")
        for pod in (pods or {}).get("items", []) if status == 200 else []:
            meta = pod["metadata"]
            self._api("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                      {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._running_tasks() and not self._ready_sandboxes():
                return
            time.sleep(0.2)

    def _running_tasks(self) -> list[str]:
        out = self.ctr("tasks", "ls", check=False, timeout=10)
        return [line.split()[0] for line in out.splitlines()[1:] if "RUNNING" in line]

    def _ready_sandboxes(self) -> list[str]:
        # A sandbox whose network is still set up has a netns path under the kubelet's CNI bookkeeping.
        netns = [Path("/run/netns"), Path("/var/run/netns")]
        return [p.name for d in netns if d.is_dir() for p in d.iterdir() if p.name.startswith("cni-")]

    def _kill_leftover_tasks(self) -> None:
        if not self.containerd_socket.exists() or not any(p.name == "containerd" and p.running()
                                                          for p in self.processes):
            return
        for task in self._running_tasks():
            self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", task, check=False, timeout=10)
        deadline = time.monotonic() + 5
        while self._running_tasks() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _shim_pids(self) -> list[int]:
        """The shims of this node's containerd (see :func:`~kmcp.devcluster.hoststate.shim_pids`)."""
        return shim_pids([self.containerd_dir])


@dataclass
class DevCluster(Lifecycle):
    """A control plane with every controller plus one real node, in ``workdir`` (a temp dir unless given).

    The run's journal (:class:`~kmcp.devcluster.hoststate.Journal`) is ``workdir/host-journal.json``: a start in a
    ``workdir`` whose previous run was killed first stops what that run left and restores the host
    (``node.recovered`` says what, in one line). ``fresh``: then empty ``workdir``, for a new cluster every start.
    """

    workdir: Path | None = None
    images: Sequence[ImageArchive] = ()
    fresh: bool = False
    control_plane: ControlPlane = field(init=False)
    node: Node = field(init=False)
    _node_dir: Path = field(init=False)
    startup_seconds: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.control_plane = ControlPlane(workdir=self.workdir, with_node=True)
        self._node_dir = Path(tempfile.mkdtemp(prefix="kmcp-node-"))
        journal = (self.workdir or self._node_dir) / JOURNAL_NAME
        self.node = Node(self.control_plane, images=self.images, workdir=self._node_dir, journal_path=journal,
                         remove_journal_on_stop=False)
        # The control plane's processes are the run's too: a later start stops them if this run is killed.
        self.control_plane.on_launch = lambda proc: self.node.record_process(proc.name, proc.pid)

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    def start(self) -> DevCluster:
        reason = unsupported_reason()
        if reason:
            raise NodeError(reason)
        started = time.monotonic()
        self.control_plane.toolchain = self.control_plane.toolchain or ensure_binaries()
        self.node.toolchain = self.node.toolchain or ensure_node_binaries()
        self.node.dns_toolchain = self.node.dns_toolchain or ensure_dns_binaries()
        try:
            self.node.recover()
            if self.fresh and self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            # The bridge first: the apiserver listens on the node's address, where pods reach it.
            self.node.create_network()
            if self.node._journal is not None:
                self.node._journal.remove_dirs.append(str(self._node_dir))
                self.node._journal.save()
                if self.workdir is None:  # the control plane's temp dir, made by its start below
                    self.control_plane.on_temp_dir = self._journal_control_plane_dir
            self.control_plane.address = self.node.node_ip
            self.control_plane.start()
            self.node.start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _journal_control_plane_dir(self, directory: Path) -> None:
        if self.node._journal is not None:
            self.node._journal.remove_dirs.append(str(directory))
            self.node._journal.save()

    def stop(self) -> None:
        self.node.stop()
        self.control_plane.stop()
        self.node.remove_journal()  # last: until here a killed stop leaves processes the next start must stop
        shutil.rmtree(self._node_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kmcp.devcluster.node``: a control plane and a node until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description="Run a local control plane and one real node (root).")
    parser.add_argument("--dir", type=Path, default=None, help="state directory (default: a temp dir, removed)")
    parser.add_argument("--check", action="store_true",
                        help="only say whether this machine can run a node (exit 0) or why not (exit 2)")
    parser.add_argument("--recover", type=Path, metavar="JOURNAL", default=None,
                        help="stop what a killed node recorded in JOURNAL (host-journal.json, or its directory) "
                             "left, restore the host, and exit")
    args = parser.parse_args(argv)
    reason = unsupported_reason()
    if reason:
        print(f"kmcp: {reason}", file=sys.stderr)
        return 2
    if args.check:
        return 0
    if args.recover is not None:
        journal = args.recover / JOURNAL_NAME if args.recover.is_dir() else args.recover
        try:
            done = recover_leftovers(journal)
        except NodeError as err:
            print(f"kmcp: {err}", file=sys.stderr)
            return 1
        print(f"kmcp node: {done or f'nothing left by the run of {journal}'}", flush=True)
        return 0
    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM while starting: the start's own cleanup stops what it started (as for Ctrl-C).
    signal.signal(signal.SIGTERM, interrupted)
    cluster = DevCluster(workdir=args.dir)
    try:
        cluster.start()
    except (ControlPlaneError, RuntimeError) as err:
        print(f"kmcp: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kmcp: interrupted while starting; stopped what had started", file=sys.stderr)
        return 130
    finally:
        if cluster.node.recovered:
            print(f"kmcp node: {cluster.node.recovered}", file=sys.stderr, flush=True)
    try:
        # Blocked before saying it is ready: a signal sent as soon as the lines are read waits for sigwait.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in cluster.node.timings.items())
        print(f"ready in {cluster.startup_seconds:.1f}s (control plane {cluster.control_plane.startup_seconds:.1f}s;"
              f" node: {steps})", flush=True)
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


