"""A dev node whose supervisor is killed (SIGKILL: no teardown runs) leaves the machine changed: its bridge, nft
tables, mounts, cgroups, network namespaces, and containerd, the kubelet and the pods still running. The next start
in the same state directory finds the run's journal, stops exactly what that run started, restores the host, says
so in one line, and starts; its own teardown then leaves the host as it was before the first start. State that no
journal of ours accounts for is refused with one line naming it.

Named to run before the session's node starts (one node per machine: the bridge name is fixed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmcp.commands import devmode
from kmcp.devcluster import hoststate
from kmcp.devcluster.images import PAUSE_IMAGE
from kmcp.devcluster.node import BRIDGE
from tests.kubehelpers import Kube, wait_for
from tests.node.conftest import NODE_NOTICES, assert_host_restored, node_skip_reason
from tests.node.test_a_devup import processes_using
from tests.node.test_node import TIMINGS

pytestmark = [pytest.mark.node, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


class Supervisor:
    """``python -m kmcp.devcluster.node --dir DIR``: a control plane and a node until a signal."""

    def __init__(self, directory: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "kmcp.devcluster.node", "--dir", str(directory)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    def wait_ready(self, timeout: float = 240) -> Path:
        """The kubeconfig, once the node is Ready."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line.startswith("export KUBECONFIG="):
                return Path(line.strip().split("=", 1)[1])
        self.proc.kill()
        self.proc.wait()
        raise AssertionError("the node did not start:\n" + "\n".join(self.lines))


def run_pause_pod(kubeconfig: Path) -> None:
    """A pod on the node, so the run has containers, mounts, a network namespace and pod cgroups to leave."""
    with Kube.from_kubeconfig(kubeconfig) as kube:
        wait_for(lambda: kube.read("v1", "ServiceAccount", "default", "default"), timeout=60,
                 description="default ServiceAccount")
        kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "left-behind", "namespace": "default"},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                        {"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "IfNotPresent"}]}})
        wait_for(lambda: (kube.read("v1", "Pod", "left-behind", "default") or {}).get("status", {}).get("phase")
                 == "Running" or None, timeout=60, description="the pod Running")


def test_a_killed_node_is_restored_by_the_next_start_in_its_directory_and_its_teardown_restores_the_host(
        tmp_path: Path) -> None:
    reason = node_skip_reason()
    if reason:
        pytest.skip(reason)
    assert not Path(f"/sys/class/net/{BRIDGE}").exists(), f"{BRIDGE} exists: another dev node runs on this machine"
    directory = tmp_path / "state"
    journal_path = directory / hoststate.JOURNAL_NAME
    before = hoststate.HostState.record()

    first = Supervisor(directory)
    run_pause_pod(first.wait_ready())
    journal = hoststate.Journal.load(journal_path)
    started = {p.name for p in journal.processes}
    assert {"etcd", "kube-apiserver", "containerd", "kubelet", "kube-proxy"} <= started, started
    os.kill(first.proc.pid, signal.SIGKILL)  # the supervisor we started, by its pid
    first.proc.wait()
    # What the killed run left: its processes, the bridge, the pod's cgroups, network namespace and mounts.
    assert {p.name for p in journal.live_processes()} == started
    left = hoststate.HostState.record().changes_since(before, [Path(d) for d in journal.owned_dirs])
    assert f"link {BRIDGE}" in left and any("mount" in x for x in left) and any("kubepods" in x for x in left), left
    # `kmcp dev up` in this directory takes the bridge for its own killed run (and so restores it); elsewhere it is
    # another node's.
    assert devmode.node_facts(journal_path).busy is None
    assert devmode.node_facts(tmp_path / "elsewhere" / hoststate.JOURNAL_NAME).busy is not None

    began = time.monotonic()
    second = Supervisor(directory)
    second.wait_ready()
    second_dirs = hoststate.Journal.load(journal_path).owned_dirs  # its node directory
    TIMINGS["node start after a killed run (restore + start)"] = time.monotonic() - began
    try:
        notices = [line for line in second.lines if line.startswith("kmcp node: ")]
        assert len(notices) == 1, second.lines
        assert notices[0].startswith(f"kmcp node: a previous run in {directory} was killed "
                                     f"(pid {first.proc.pid}); restored what it left: "), notices[0]
        assert f"link {BRIDGE}" in notices[0] and "process(es)" in notices[0], notices[0]
        NODE_NOTICES.append(f"killed-run recovery said: {notices[0]}")
        assert not any("Traceback" in line for line in second.lines)
        assert journal.live_processes() == [], "the killed run's processes survived the next start"
        assert not [d for d in journal.remove_dirs if Path(d).exists()], "the killed run's node directory is left"
    finally:
        second.proc.send_signal(signal.SIGTERM)  # the node we started, by its pid: a clean stop
        second.proc.wait(120)
    assert second.proc.returncode == 0
    assert not journal_path.exists()
    for path in [directory, *map(Path, journal.owned_dirs), *map(Path, second_dirs)]:
        assert processes_using(path) == [], f"processes of {path} survived"
    assert_host_restored(before, hoststate.HostState.record())


def node_refused(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kmcp.devcluster.node", "--dir", str(directory)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_state_no_journal_of_ours_accounts_for_is_refused_in_one_line_naming_it(tmp_path: Path) -> None:
    reason = node_skip_reason()
    if reason:
        pytest.skip(reason)
    assert not Path(f"/sys/class/net/{BRIDGE}").exists(), f"{BRIDGE} exists: another dev node runs on this machine"
    before = hoststate.HostState.record()
    # A bridge of that name that no dev node made (this test's own, removed below).
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    try:
        done = node_refused(tmp_path / "a")
    finally:
        subprocess.run(["ip", "link", "delete", BRIDGE], check=True)
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"kmcp: interface {BRIDGE} exists and no kmcp dev node made it"), done.stderr
    # kube-proxy's table, as another Kubernetes node on this machine would have it (this test's own).
    subprocess.run(["nft", "add", "table", "ip", "kube-proxy"], check=True)
    try:
        done = node_refused(tmp_path / "b")
    finally:
        subprocess.run(["nft", "delete", "table", "ip", "kube-proxy"], check=True)
    assert done.returncode == 1
    assert done.stderr == ("kmcp: nft table ip kube-proxy exists and no kmcp dev node recorded it (another "
                           "Kubernetes node on this machine?): not starting one beside it\n"), done.stderr
    assert processes_using(tmp_path) == []
    assert_host_restored(before, hoststate.HostState.record())
