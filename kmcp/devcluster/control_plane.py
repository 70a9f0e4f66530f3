"""A real, local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager on 127.0.0.1.

By default no kubelet, no scheduler, no deployment/replicaset controllers: only the controllers that need no node
(garbage collection, namespace deletion, service accounts and their tokens, the root CA ConfigMap, aggregated cluster
roles). ``with_node=True`` prepares it for :class:`kmcp.devcluster.node.Node`: every controller, the Node authorizer,
and kubelet client credentials.
The apiserver runs with RBAC, a client-certificate CA and a service-account token issuer, so authentication and
authorization behave as on a real cluster.

    with ControlPlane() as cp:
        subprocess.run(["kubectl", "--kubeconfig", str(cp.kubeconfig), "get", "ns"])

Importing this module starts nothing. Every process runs in its own process group and is terminated (SIGTERM, then
SIGKILL after a grace period) on exit, also when start-up fails half-way.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kmcp.devcluster.binaries import Toolchain, ensure_binaries

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"
KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = ("https://kubernetes.default.svc.cluster.local", "kubernetes.default.svc")
ADMIN_USER = "kmcp-test-admin"
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)
PROCESS_NAMES = ("etcd", "kube-apiserver", "kube-controller-manager")
PORT_ATTEMPTS = 3


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message carries the tail of the failing process's log."""


# --------------------------------------------------------------------------------------------------------------
# PKI


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=days))


def make_ca(common_name: str = "kmcp-dev-ca", days: int = 3650) -> tuple[KeyPair, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = _name(common_name)
    builder = _validity(x509.CertificateBuilder(), days).subject_name(name).issuer_name(name)
    cert = (
        builder.public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)), key


def issue_cert(ca: KeyPair, ca_key: ec.EllipticCurvePrivateKey, common_name: str, *,
               organizations: Sequence[str] = (), dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (),
               server: bool = False, client: bool = False, days: int = 3650) -> KeyPair:
    """A leaf certificate signed by ``ca`` for a TLS server and/or a client (CN = user, O = groups)."""
    key = _key()
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (
        _validity(x509.CertificateBuilder(), days)
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class Pki:
    """Paths of every PEM file the control plane uses, all under one directory."""

    directory: Path

    @property
    def ca_crt(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_crt(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_crt(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def controller_manager_crt(self) -> Path:
        return self.directory / "kube-controller-manager.crt"

    @property
    def controller_manager_key(self) -> Path:
        return self.directory / "kube-controller-manager.key"

    @property
    def kubelet_client_crt(self) -> Path:
        return self.directory / "apiserver-kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.directory / "apiserver-kubelet-client.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.ca_crt, self.ca_key, self.apiserver_crt, self.apiserver_key,
                                         self.admin_crt, self.admin_key, self.controller_manager_crt,
                                         self.controller_manager_key, self.kubelet_client_crt,
                                         self.kubelet_client_key, self.sa_key, self.sa_pub))

    def generate(self, extra_ips: Sequence[str] = ()) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca, ca_key = make_ca()
        serving = issue_cert(
            ca, ca_key, "kube-apiserver", server=True,
            dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"],
            ip_addresses=["127.0.0.1", KUBERNETES_SERVICE_IP, *extra_ips],
        )
        admin = issue_cert(ca, ca_key, ADMIN_USER, organizations=["system:masters"], client=True)
        kcm = issue_cert(ca, ca_key, "system:kube-controller-manager", client=True)
        # How the apiserver authenticates to a kubelet (logs, exec, port-forward), when a node runs.
        kubelet_client = issue_cert(ca, ca_key, "kube-apiserver-kubelet-client", organizations=["system:masters"],
                                    client=True)
        sa_key = _key()
        sa_pub = sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        for path, data in ((self.ca_crt, ca.cert_pem), (self.ca_key, ca.key_pem),
                           (self.apiserver_crt, serving.cert_pem), (self.apiserver_key, serving.key_pem),
                           (self.admin_crt, admin.cert_pem), (self.admin_key, admin.key_pem),
                           (self.controller_manager_crt, kcm.cert_pem), (self.controller_manager_key, kcm.key_pem),
                           (self.kubelet_client_crt, kubelet_client.cert_pem),
                           (self.kubelet_client_key, kubelet_client.key_pem),
                           (self.sa_key, _key_pem(sa_key)), (self.sa_pub, sa_pub)):
            _write_private(path, data)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def kubeconfig_yaml(server: str, ca_pem: bytes, user: str, *, client_cert_pem: bytes | None = None,
                    client_key_pem: bytes | None = None, token: str | None = None,
                    namespace: str | None = None, cluster: str = "kmcp-dev") -> str:
    """A self-contained kubeconfig (everything embedded, JSON is valid YAML) for one user of one cluster."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    creds: dict[str, str] = {}
    if client_cert_pem is not None and client_key_pem is not None:
        creds = {"client-certificate-data": b64(client_cert_pem), "client-key-data": b64(client_key_pem)}
    if token is not None:
        creds["token"] = token
    context: dict[str, str] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": f"{user}@{cluster}", "context": context}],
        "current-context": f"{user}@{cluster}",
        "preferences": {},
    }
    return json.dumps(doc, indent=2) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Processes


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick; the usual small race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self, env: Mapping[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: killpg reaches any children too
                env=dict(env) if env is not None else None, close_fds=True,
            )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def failure(self, what: str) -> ControlPlaneError:
        code = self.popen.poll() if self.popen else None
        status = f"exited with code {code}" if code is not None else "is still running"
        return ControlPlaneError(f"{self.name} {what} ({status}); last lines of {self.log_path}:\n"
                                 f"{log_tail(self.log_path)}")


def stop_processes(processes: Sequence[ManagedProcess], grace: float = 5.0) -> None:
    """Stop each process in order: SIGTERM its group, wait up to ``grace`` seconds, SIGKILL the group, reap.

    One at a time on purpose: kube-apiserver drains in about a second while etcd is up, but retries for minutes
    when etcd is already gone.
    """
    for proc in processes:
        if proc.popen is None:
            continue
        proc.signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=grace)
        # Also when the leader is gone: a child left in the group must not survive.
        proc.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)


class Lifecycle:
    """``start()`` / ``stop()`` and a ``with`` block around them (the control plane, the node, the dev cluster)."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ProcessGroup(Lifecycle):
    """What the control plane and the node share: the processes they started, found by name."""

    processes: list[ManagedProcess]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def process(self, name: str) -> ManagedProcess:
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise KeyError(name)


# --------------------------------------------------------------------------------------------------------------
# The control plane


@dataclass
class ControlPlane(ProcessGroup):
    """etcd + kube-apiserver + kube-controller-manager in ``workdir`` (a fresh temp dir unless given).

    Attributes filled in by :meth:`start`: ``server`` (https URL), ``kubeconfig`` (admin kubeconfig path),
    ``ca_file``/``ca_pem`` (the cluster CA), ``pki`` (all certificate paths), ``processes``.
    A given ``workdir`` is kept (etcd data and certificates are reused on the next start); a temp dir is removed.
    """

    workdir: Path | None = None
    toolchain: Toolchain | None = None
    start_timeout: float = 60.0
    stop_grace: float = 5.0
    extra_args: Mapping[str, Sequence[str]] = field(default_factory=dict)
    wait_for_default_service_account: bool = True
    # A real node will join (kmcp.devcluster.node): run every controller, authorize kubelets with the Node
    # authorizer, and reach kubelets by their InternalIP with a client certificate.
    with_node: bool = False
    # Where the apiserver listens and what it advertises (the kubernetes Service's endpoint). Loopback unless a node
    # runs: then the node's own bridge address, so pods reach it at kubernetes.default.svc.
    address: str = "127.0.0.1"
    # Told each process as it starts, and the temp dir it made when no workdir was given (a node's journal keeps
    # both: see kmcp.devcluster.hoststate.Journal).
    on_launch: Callable[[ManagedProcess], None] | None = None
    on_temp_dir: Callable[[Path], None] | None = None

    server: str = field(init=False, default="")
    etcd_url: str = field(init=False, default="")
    processes: list[ManagedProcess] = field(init=False, default_factory=list)
    startup_seconds: float = field(init=False, default=0.0)
    _owns_dir: bool = field(init=False, default=False)
    _dir: Path | None = field(init=False, default=None)

    # -- paths
    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise RuntimeError("control plane not started")
        return self._dir

    @property
    def pki(self) -> Pki:
        return Pki(self.directory / "pki")

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "admin.kubeconfig"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.directory / "kube-controller-manager.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_crt

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    # -- lifecycle
    def start(self) -> ControlPlane:
        if self.processes:
            raise RuntimeError("control plane already started")
        started = time.monotonic()
        if self.workdir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="kmcp-cp-"))
            self._owns_dir = True
            if self.on_temp_dir is not None:
                self.on_temp_dir(self._dir)
        else:
            self._dir = Path(self.workdir)
            self._dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            chain = self.toolchain = self.toolchain or ensure_binaries()
            if not self.pki.complete():
                self.pki.generate(extra_ips=[self.address] if self.address != "127.0.0.1" else [])
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    self._start_etcd(chain)
                    self._start_apiserver(chain)
                    self._write_kubeconfigs()
                    self._start_controller_manager(chain)
                    break
                except ControlPlaneError as err:
                    # free_port() is a pick, not a reservation: another process may have taken it meanwhile.
                    if "address already in use" not in str(err) or attempt == PORT_ATTEMPTS:
                        raise
                    stop_processes(list(reversed(self.processes)), self.stop_grace)
                    self.processes.clear()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Terminate every process (idempotent); remove the temp dir if this object created it."""
        atexit.unregister(self.stop)
        # Reverse start order: controllers and apiserver first, etcd last.
        stop_processes(list(reversed(self.processes)), self.stop_grace)
        if self._owns_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._owns_dir = False

    # -- helpers
    def _args(self, name: str) -> list[str]:
        return list(self.extra_args.get(name, ()))

    def _launch(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.log_dir / f"{name}.log")
        self.processes.append(proc)
        proc.start()
        if self.on_launch is not None:
            self.on_launch(proc)
        return proc

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
        return ctx

    def _get(self, url: str, ctx: ssl.SSLContext | None) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                return int(resp.status), resp.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            return int(err.code), err.read().decode(errors="replace")

    def _wait(self, proc: ManagedProcess, what: str, probe: Callable[[], bool], deadline: float) -> None:
        last_error = ""
        while True:
            if not proc.running():
                raise proc.failure(f"exited while waiting for {what}")
            try:
                if probe():
                    return
            except (OSError, ValueError) as err:
                last_error = f"{type(err).__name__}: {err}"
            if time.monotonic() > deadline:
                raise proc.failure(f"not ready: {what} after {self.start_timeout:.0f}s"
                                   + (f" (last error: {last_error})" if last_error else ""))
            time.sleep(0.1)

    def _deadline(self) -> float:
        return time.monotonic() + self.start_timeout

    def _start_etcd(self, chain: Toolchain) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        data_dir = self.directory / "etcd"
        data_dir.mkdir(exist_ok=True, mode=0o700)
        proc = self._launch("etcd", [
            str(chain.path("etcd")),
            "--name=kmcp",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=kmcp={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            *self._args("etcd"),
        ])

        def healthy() -> bool:
            status, body = self._get(f"{self.etcd_url}/health", None)
            return status == 200 and '"health":"true"' in body.replace(" ", "")

        self._wait(proc, "etcd /health", healthy, self._deadline())

    def _start_apiserver(self, chain: Toolchain) -> None:
        port = free_port() if self.address == "127.0.0.1" else free_port(self.address)
        self.server = f"https://{self.address}:{port}"
        pki = self.pki
        proc = self._launch("kube-apiserver", [
            str(chain.path("kube-apiserver")),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--secure-port={port}",
            f"--cert-dir={self.directory / 'apiserver-certs'}",
            f"--tls-cert-file={pki.apiserver_crt}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_crt}",
            "--authorization-mode=Node,RBAC" if self.with_node else "--authorization-mode=RBAC",
            *self._node_apiserver_args(),
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--api-audiences={','.join(API_AUDIENCES)}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--profiling=false",
            # On loopback no pod could use the kubernetes Service's endpoint; on the node's address they do.
            f"--endpoint-reconciler-type={'none' if self.address == '127.0.0.1' else 'lease'}",
            "--v=1",
            *self._args("kube-apiserver"),
        ])
        ctx = self._ssl_context()

        def ready() -> bool:
            status, _ = self._get(f"{self.server}/readyz", ctx)
            return status == 200

        self._wait(proc, "kube-apiserver /readyz", ready, self._deadline())

    def _node_apiserver_args(self) -> list[str]:
        if not self.with_node:
            return []
        return [
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={self.pki.kubelet_client_crt}",
            f"--kubelet-client-key={self.pki.kubelet_client_key}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _write_kubeconfigs(self) -> None:
        pki = self.pki
        ca = pki.ca_crt.read_bytes()
        _write_private(self.kubeconfig, kubeconfig_yaml(
            self.server, ca, ADMIN_USER, client_cert_pem=pki.admin_crt.read_bytes(),
            client_key_pem=pki.admin_key.read_bytes(), namespace="default").encode())
        _write_private(self.controller_manager_kubeconfig, kubeconfig_yaml(
            self.server, ca, "system:kube-controller-manager",
            client_cert_pem=pki.controller_manager_crt.read_bytes(),
            client_key_pem=pki.controller_manager_key.read_bytes()).encode())

    def _start_controller_manager(self, chain: Toolchain) -> None:
        port = free_port()
        pki = self.pki
        kubeconfig = str(self.controller_manager_kubeconfig)
        proc = self._launch("kube-controller-manager", [
            str(chain.path("kube-controller-manager")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--controllers={'*' if self.with_node else ','.join(CONTROLLERS)}",
            *([f"--cluster-signing-cert-file={pki.ca_crt}", f"--cluster-signing-key-file={pki.ca_key}"]
              if self.with_node else []),
            f"--root-ca-file={pki.ca_crt}",
            f"--service-account-private-key-file={pki.sa_key}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.directory / 'controller-manager-certs'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--profiling=false",
            "--v=1",
            *self._args("kube-controller-manager"),
        ])
        deadline = self._deadline()
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; /healthz is all we read

        def healthy() -> bool:
            status, _ = self._get(f"https://127.0.0.1:{port}/healthz", insecure)
            return status == 200

        self._wait(proc, "kube-controller-manager /healthz", healthy, deadline)
        if self.wait_for_default_service_account:
            ctx = self._ssl_context()

            def default_sa() -> bool:
                status, _ = self._get(f"{self.server}/api/v1/namespaces/default/serviceaccounts/default", ctx)
                return status == 200

            self._wait(proc, "the default ServiceAccount in namespace default", default_sa, deadline)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kmcp.devcluster.control_plane``: start, print the kubeconfig path, run until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description="Run a local etcd + kube-apiserver + kube-controller-manager.")
    parser.add_argument("--dir", type=Path, default=None, help="state directory (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    with ControlPlane(workdir=args.dir) as cp:
        print(f"ready in {cp.startup_seconds:.1f}s: {cp.server}", flush=True)
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        # Block only now: children inherit the signal mask and must stay killable.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
