"""The dev node's generated configuration and image archives, without starting anything (pure functions)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import tarfile
import tomllib
from pathlib import Path

import pytest

from kmcp.devcluster import dns
from kmcp.devcluster.binaries import COREDNS_PLUGINS, coredns_main
from kmcp.devcluster.control_plane import SERVICE_CLUSTER_IP_RANGE
from kmcp.devcluster.images import PAUSE_IMAGE, write_oci_archive
from kmcp.devcluster.node import (
    SUBNET_CANDIDATES,
    NodeError,
    cni_conflist,
    containerd_config,
    kubelet_config,
    pick_subnet,
)


def test_node_subnet_avoids_every_network_in_use_and_the_service_range() -> None:
    first = ipaddress.IPv4Network(SUBNET_CANDIDATES[0])
    assert pick_subnet([]) == first
    assert pick_subnet([ipaddress.IPv4Network("10.213.0.128/25")]) == ipaddress.IPv4Network(SUBNET_CANDIDATES[1])
    assert pick_subnet([ipaddress.IPv4Network("0.0.0.0/0")]) == first  # a default route takes nothing
    with pytest.raises(NodeError, match="already in use"):
        pick_subnet([ipaddress.IPv4Network(c) for c in SUBNET_CANDIDATES])
    assert not any(ipaddress.IPv4Network(c).overlaps(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE))
                   for c in SUBNET_CANDIDATES)


def test_pods_get_no_masquerade_and_no_route_off_the_machine(tmp_path: Path) -> None:
    conf = cni_conflist(ipaddress.IPv4Network("10.213.0.0/24"), "10.213.0.1", tmp_path)
    (bridge,) = conf["plugins"]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["routes"] == [{"dst": SERVICE_CLUSTER_IP_RANGE, "gw": "10.213.0.1"}]
    assert bridge["ipam"]["dataDir"] == str(tmp_path)  # IP allocations live in the node's directory
    (range_,) = bridge["ipam"]["ranges"][0]
    assert ipaddress.ip_address(range_["rangeStart"]) > ipaddress.ip_address("10.213.0.1")


def test_containerd_runs_from_its_own_directory_with_what_this_vm_needs(tmp_path: Path) -> None:
    doc = tomllib.loads(containerd_config(tmp_path, Path("/usr/lib/cni"), tmp_path / "net.d"))
    assert doc["root"].startswith(str(tmp_path)) and doc["state"].startswith(str(tmp_path))
    assert doc["grpc"]["address"] == str(tmp_path / "containerd.sock")
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE: negative oom_score_adj fails
    assert cri["sandbox_image"] == PAUSE_IMAGE
    assert cri["stream_server_address"] == "127.0.0.1"
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False and runc["Root"].startswith(str(tmp_path))


def test_kubelet_accepts_cgroup_v1_and_binds_to_the_node_ip(tmp_path: Path) -> None:
    conf = kubelet_config(node_ip="10.213.0.1", port=10250, healthz_port=10248, ca_file=tmp_path / "ca",
                          tls_cert=tmp_path / "c", tls_key=tmp_path / "k", runtime_socket=tmp_path / "s",
                          resolv_conf=tmp_path / "r", pod_logs=tmp_path / "logs", pod_subnet="10.213.0.0/24",
                          cluster_dns=dns.KUBE_DNS_IP)
    assert conf["failCgroupV1"] is False and conf["cgroupDriver"] == "cgroupfs"
    assert conf["clusterDNS"] == ["10.0.0.10"] and conf["clusterDomain"] == "cluster.local"
    assert conf["address"] == "10.213.0.1" and conf["healthzBindAddress"] == "127.0.0.1"
    assert conf["readOnlyPort"] == 0 and conf["authentication"]["anonymous"]["enabled"] is False


def test_oci_archive_names_the_image_and_its_digests_match(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(__file__, arcname="hello.py")
    archive = write_oci_archive(tmp_path / "img.oci.tar", "example.test/hello:1", [layer], {"Cmd": ["x"]})
    with tarfile.open(archive.path) as tar:
        def blob(digest: str) -> bytes:
            f = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert f is not None
            return f.read()

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        (entry,) = json.load(index_file)["manifests"]
        assert entry["annotations"]["io.containerd.image.name"] == "example.test/hello:1"
        manifest_bytes = blob(entry["digest"])
        assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == entry["digest"]
        manifest = json.loads(manifest_bytes)
        (layer_desc,) = manifest["layers"]
        assert blob(layer_desc["digest"]) == layer.read_bytes()
        config = json.loads(blob(manifest["config"]["digest"]))
        assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
        assert config["config"] == {"Cmd": ["x"]}


def test_coredns_serves_only_the_cluster_zones_on_the_node_address(tmp_path: Path) -> None:
    text = dns.corefile(node_ip="10.213.0.1", kubeconfig=tmp_path / "k", health_port=1, ready_port=2)
    assert text.splitlines()[0] == "cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {"
    assert "bind 10.213.0.1" in text and f"kubeconfig {tmp_path / 'k'}" in text
    assert "health 127.0.0.1:1" in text and "ready 127.0.0.1:2" in text
    assert "forward" not in text and "forward" not in COREDNS_PLUGINS
    # Every plugin the Corefile names is compiled in; the directive order is CoreDNS's own.
    used = {line.split()[0] for line in text.splitlines()[1:] if line.strip() and not line.strip().startswith("}")}
    assert used - {"kubeconfig", "pods", "ttl"} <= set(COREDNS_PLUGINS)
    assert 'dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes"}' \
        in coredns_main()


def test_kube_dns_service_sits_at_the_tenth_service_address_and_points_at_the_node() -> None:
    service, endpoints = dns.service_objects("10.213.0.1")
    assert ipaddress.ip_address(service["spec"]["clusterIP"]) in ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE)
    assert service["spec"]["clusterIP"] == dns.KUBE_DNS_IP == "10.0.0.10"
    assert "selector" not in service["spec"]
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    assert endpoints["endpoints"][0]["addresses"] == ["10.213.0.1"]
    assert dns.object_path(service) == "/api/v1/namespaces/kube-system/services/kube-dns"
    assert dns.object_path(endpoints) == "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices/kube-dns-node"
    assert dns.object_path(dns.rbac_objects()[0]) == "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:coredns"


def test_a_node_journal_round_trips_and_knows_its_processes_by_pid_and_start_time(tmp_path: Path) -> None:
    import os
    import subprocess

    from kmcp.devcluster.hoststate import HostState, Journal, RecordedProcess

    before = HostState(sysctls={"kernel/panic": "1"}, nft={"ip t": "table ip t {\n}\n"}, links={"lo", "eth0"},
                       mounts={"/"}, netns={"/run/netns": {"x"}}, cgroups={"/sys/fs/cgroup/memory": {"a"}},
                       side_dirs={"/var/lib/cni": False})
    me = RecordedProcess.of("supervisor", os.getpid())
    assert me is not None and me.alive()
    child = subprocess.Popen(["sleep", "30"])
    journal = Journal(tmp_path / "host-journal.json", before, me, owned_dirs=["/tmp/n"], owned_links=["kmcp0"])
    journal.save()
    journal.add_process("sleep", child.pid)
    loaded = Journal.load(journal.path)
    assert loaded.before == before and loaded.supervisor == me and loaded.owned_links == ["kmcp0"]
    assert [p.name for p in loaded.live_processes()] == ["sleep"]
    # Another process with the same pid is not the one recorded.
    assert not RecordedProcess("sleep", child.pid, loaded.processes[0].start_time + 1).alive()
    child.kill()
    child.wait()
    assert loaded.live_processes() == []


def test_what_changed_since_a_snapshot_is_said_short_and_netns_once_through_the_run_symlink() -> None:
    from kmcp.devcluster.hoststate import HostState

    before = HostState(sysctls={"kernel/panic": "1"}, links={"lo"}, mounts={"/"}, cgroups={"/c/memory": {"a"}},
                       netns={"/run/netns": set(), "/var/run/netns": set()})
    now = HostState(sysctls={"kernel/panic": "10"}, nft={"ip kube-proxy": "x"}, links={"lo", "kmcp0"},
                    mounts={"/", "/tmp/n/a", "/tmp/n/b", "/elsewhere"}, cgroups={"/c/memory": {"a", "kubepods"}},
                    netns={"/run/netns": {"cni-1", "other"}, "/var/run/netns": {"cni-1", "other"}})
    assert now.changes_since(before, [Path("/tmp/n")]) == [
        "link kmcp0", "1 nft table(s)", "2 mount(s)", "1 network namespace(s)", "cgroup(s) kubepods",
        "sysctl(s) kernel/panic"]
