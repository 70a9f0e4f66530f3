"""The metrics endpoint, secured like controller-runtime's: HTTPS with a self-signed certificate made at start, and
a bearer token checked by TokenReview then SubjectAccessReview (nonResourceURL /metrics, verb get).

401 without a token or with one the apiserver does not authenticate, 403 when RBAC does not allow the user to get
/metrics, 200 with the metrics otherwise. Decisions are cached for a few seconds so a scrape costs no API calls."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kmcp import kube
from kmcp.controller import httpserver

METRICS_CONTENT_TYPE = [("content-type", "text/plain; version=0.0.4; charset=utf-8")]
TEXT = [("content-type", "text/plain; charset=utf-8")]
CACHE_SECONDS = 10.0


def self_signed_context() -> ssl.SSLContext:
    """A server SSLContext with a fresh EC key and a 1-year self-signed certificate for this host."""
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kmcp-controller-manager-metrics")])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(host),
                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    if not _load_chain_from_memory(ctx, cert_pem, key_pem):
        # load_cert_chain reads files only: a private temporary directory for the duration of the call.
        with tempfile.TemporaryDirectory(prefix="kmcp-metrics-") as tmp:
            cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert_file.write_bytes(cert_pem)
            key_file.write_bytes(key_pem)
            key_file.chmod(0o600)
            ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def _load_chain_from_memory(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> bool:
    """Load the pair through anonymous memory files (Linux): the installed controller runs with a read-only root
    filesystem and no writable /tmp, where a temporary directory cannot be made (found on the dev node)."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        return False
    fds: list[int] = []
    try:
        for data in (cert_pem, key_pem):
            fd = memfd_create("kmcp-metrics-tls", getattr(os, "MFD_CLOEXEC", 0))
            fds.append(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        ctx.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
        return True
    except OSError:
        return False
    finally:
        for fd in fds:
            os.close(fd)


class MetricsAuthorizer:
    """Bearer token -> (status code, reason), through the apiserver's TokenReview and SubjectAccessReview."""

    def __init__(self, client: kube.Kube) -> None:
        self.client = client
        self._cache: dict[str, tuple[float, int, str]] = {}

    async def check(self, token: str) -> tuple[int, str]:
        now = trio.current_time()
        cached = self._cache.get(token)
        if cached and now - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        result = await self._review(token)
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[token] = (now, *result)
        return result

    async def _review(self, token: str) -> tuple[int, str]:
        review = await self.client.create(kube.TOKEN_REVIEWS, {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return 401, "Unauthorized"
        user = status.get("user") or {}
        sar_spec: dict[str, object] = {
            "user": user.get("username", ""),
            "groups": user.get("groups") or [],
            "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
        }
        if user.get("uid"):
            sar_spec["uid"] = user["uid"]
        if user.get("extra"):
            sar_spec["extra"] = user["extra"]
        sar = await self.client.create(kube.SUBJECT_ACCESS_REVIEWS, {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": sar_spec})
        if not (sar.get("status") or {}).get("allowed"):
            return 403, f"Forbidden (user={user.get('username', '')}, verb=get, resource=, subresource=)"
        return 200, "OK"


def metrics_handler(render: Callable[[], str], authorizer: MetricsAuthorizer | None) -> httpserver.Handler:
    async def handle(request: httpserver.Request) -> httpserver.Response:
        if request.path != "/metrics":
            return 404, TEXT, b"not found\n"
        if request.method not in ("GET", "HEAD"):
            return 405, [*TEXT, ("allow", "GET, HEAD")], b"method not allowed\n"
        if authorizer is not None:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return 401, TEXT, b"Unauthorized\n"
            try:
                code, reason = await authorizer.check(token.strip())
            except (kube.ApiError, OSError) as error:
                return 500, TEXT, f"authorization failed: {error}\n".encode()
            if code != 200:
                return code, TEXT, f"{reason}\n".encode()
        return 200, METRICS_CONTENT_TYPE, render().encode()

    return handle


async def serve_metrics(render: Callable[[], str], host: str, port: int, *, secure: bool, client: kube.Kube,
                        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    ctx = self_signed_context() if secure else None
    authorizer = MetricsAuthorizer(client) if secure else None
    await httpserver.serve(metrics_handler(render, authorizer), host, port, ssl_context=ctx,
                           task_status=task_status)
