"""The dev node's cluster DNS: CoreDNS as a host process on the node's bridge address, answering ``cluster.local``
from the apiserver (its ``kubernetes`` plugin, with a kubeconfig of its own), exposed as on real clusters through
the ``kube-dns`` Service in ``kube-system`` at the Service range's tenth address, which the kubelet hands to pods.

A host process rather than a pod: it needs no image of its own and runs before the kubelet, so the first pod
already resolves. The Service has no selector; an EndpointSlice names the node address, and kube-proxy DNATs
``kube-dns:53`` to it like any other Service; the node starts only once a lookup through that Service answers.

It serves only the cluster's zones (``cluster.local`` and the reverse zones): CoreDNS answers REFUSED for any other
name, and the binary has no forward plugin, so nothing a pod asks ever leaves the machine.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
from pathlib import Path
from typing import Any

from kmcp.devcluster.control_plane import SERVICE_CLUSTER_IP_RANGE

CLUSTER_DOMAIN = "cluster.local"
ZONES = (CLUSTER_DOMAIN, "in-addr.arpa", "ip6.arpa")
DNS_PORT = 53
USER = "system:coredns"
KUBE_DNS_IP = str(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE)[10])  # kubeadm's choice: .10 of the range
MANAGED_BY = "kmcp.dev-node"
Obj = dict[str, Any]


def corefile(*, node_ip: str, kubeconfig: Path, health_port: int, ready_port: int) -> str:
    """One server block for the cluster's zones, bound to the node address only; health and readiness on
    loopback (their defaults, :8080 and :8181 on every address, would collide with anything else here)."""
    return f"""{' '.join(f'{zone}:{DNS_PORT}' for zone in ZONES)} {{
    bind {node_ip}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {' '.join(ZONES)} {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 5
    }}
    cache 5
}}
"""


def rbac_objects() -> list[Obj]:
    """What CoreDNS's kubernetes plugin reads (kubeadm's ``system:coredns`` role), bound to its own user."""
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": USER, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": USER, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]},
    ]


def service_objects(node_ip: str) -> list[Obj]:
    """The ``kube-dns`` Service (the name clients and docs expect) and the EndpointSlice that points it at the
    CoreDNS process on the node address."""
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "app.kubernetes.io/managed-by": MANAGED_BY}
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": KUBE_DNS_IP,
                  "ports": [{"name": "dns", "port": DNS_PORT, "protocol": "UDP", "targetPort": DNS_PORT},
                            {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP", "targetPort": DNS_PORT}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "kube-dns-node", "namespace": "kube-system",
                      "labels": {"kubernetes.io/service-name": "kube-dns",
                                 "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True}}],
         "ports": [{"name": "dns", "port": DNS_PORT, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP"}]},
    ]


_PLURALS = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Service": "services",
            "EndpointSlice": "endpointslices"}


def object_path(obj: Obj) -> str:
    """The object's own URL path on the apiserver (for a server-side apply PATCH)."""
    api_version = obj["apiVersion"]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    meta = obj["metadata"]
    namespace = f"/namespaces/{meta['namespace']}" if "namespace" in meta else ""
    return f"{base}{namespace}/{_PLURALS[obj['kind']]}/{meta['name']}"


def query_a(server: str, name: str, timeout: float = 5.0) -> tuple[int, list[str]]:
    """One UDP A query: the response code and the IPv4 addresses in the answer section (how the node knows
    kube-proxy already routes the Service to CoreDNS, and how the tests look names up without a resolver)."""
    ident = secrets.randbelow(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, 53))
        reply = sock.recv(4096)
    got_id, flags, _, answers, _, _ = struct.unpack("!HHHHHH", reply[:12])
    if got_id != ident:
        raise ValueError(f"DNS answer {got_id} to query {ident}")
    offset = 12 + len(question) + 4
    addresses = []
    for _ in range(answers):
        offset += 2 if reply[offset] & 0xC0 == 0xC0 else reply.index(b"\0", offset) + 1 - offset
        rtype, _, _, length = struct.unpack("!HHIH", reply[offset:offset + 10])
        offset += 10
        if rtype == 1:
            addresses.append(socket.inet_ntoa(reply[offset:offset + length]))
        offset += length
    return flags & 0xF, addresses
