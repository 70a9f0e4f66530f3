"""Reading a kubeconfig without the ``kubernetes`` package: what every `kmcp get` pays for at start-up.

The common files (a token or a client certificate, a CA by path or inline) are read by kmcp.kubeconfig; anything
else (exec plugins, auth providers, basic auth, proxies, impersonation) still goes through the kubernetes package,
which knows every dialect."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kmcp import kube, kubeconfig

ROOT = Path(__file__).resolve().parent.parent


def self_signed(tmp_path: Path, name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def write(path: Path, user: dict[str, Any], cluster: dict[str, Any], namespace: str | None = "team-a") -> Path:
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "other", "cluster": {"server": "https://wrong:1"}}, {"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": context}],
    }))
    return path


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_token_and_an_inline_ca_are_read_without_the_kubernetes_package(tmp_path: Path) -> None:
    ca, _ = self_signed(tmp_path, "ca")
    path = write(tmp_path / "config", {"token": "abc"},
                 {"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(ca)})
    config = kube.load_config(str(path))
    assert (config.server, config.token, config.namespace) == ("https://127.0.0.1:6443", "abc", "team-a")
    assert [c["subject"] for c in config.ssl_context.get_ca_certs()] == [((("commonName", "ca"),),)]
    probe = ("import sys; from kmcp import kube; kube.load_config(sys.argv[1]); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))")
    result = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_client_certificates_and_relative_paths(tmp_path: Path) -> None:
    ca, _ = self_signed(tmp_path, "ca")
    cert, key = self_signed(tmp_path, "me")
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(ca)
    (tmp_path / "pki" / "me.crt").write_bytes(cert)
    path = write(tmp_path / "config", {"client-certificate": "pki/me.crt", "client-key-data": b64(key)},
                 {"server": "https://k:6443", "certificate-authority": "pki/ca.crt"}, namespace=None)
    read = kubeconfig.read(path)
    assert read is not None and read.namespace == "default" and read.token is None
    assert read.ssl_context.get_ca_certs()[0]["subject"] == ((("commonName", "ca"),),)
    skip = kubeconfig.read(write(tmp_path / "insecure", {"token": "t"},
                                 {"server": "https://k:6443", "insecure-skip-tls-verify": True}))
    assert skip is not None and skip.ssl_context.check_hostname is False


@pytest.mark.parametrize(("user", "cluster"), [
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}}, {}),
    ({"auth-provider": {"name": "oidc"}}, {}),
    ({"username": "a", "password": "b"}, {}),
    ({"token": "t", "as": "someone"}, {}),
    ({"token": "t"}, {"proxy-url": "http://proxy:3128"}),
    ({"token": "t"}, {"tls-server-name": "kubernetes"}),
])
def test_other_dialects_are_left_to_the_kubernetes_package(tmp_path: Path, user: dict[str, Any],
                                                           cluster: dict[str, Any]) -> None:
    path = write(tmp_path / "config", user, {"server": "https://k:6443", **cluster})
    assert kubeconfig.read(path) is None


def test_an_exec_plugin_still_works_through_the_fallback(tmp_path: Path) -> None:
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": "from-plugin"}}
    plugin = {"apiVersion": "client.authentication.k8s.io/v1", "command": "sh",
              "args": ["-c", f"echo '{json.dumps(credential)}'"], "interactiveMode": "Never"}
    path = write(tmp_path / "config", {"exec": plugin}, {"server": "https://k:6443",
                                                         "insecure-skip-tls-verify": True})
    config = kube.load_config(str(path))
    assert (config.server, config.token, config.namespace) == ("https://k:6443", "from-plugin", "team-a")


def test_kmcp_get_reads_the_real_apiservers_kubeconfig_without_the_kubernetes_package(kubeconfig: Path) -> None:
    """The control plane's admin kubeconfig (inline CA, client certificate): `kmcp get -A` lists through it, and
    the kubernetes package is never imported (its import was most of the command's start-up)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "kmcp", "get", "-A", "--kubeconfig",
                             str(kubeconfig)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    # with or without the CRD installed: an answer from the apiserver, through TLS and the client certificate
    assert result.stdout.startswith(("NAMESPACE", "No MCPServers")) or "does not serve MCPServers" in result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert "kmcp.kube" in imported and not {m for m in imported if m.split(".")[0] == "kubernetes"}
