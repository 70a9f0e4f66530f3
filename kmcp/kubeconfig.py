"""The common kubeconfig files, read without the ``kubernetes`` package.

Importing that package's loader costs about half a second (it pulls in its whole API client), which every
`kmcp get` paid before its one request. Most kubeconfigs are simple: a server, a CA (a file or inline), and a
token or a client certificate. Those are read here. Anything else (exec plugins, auth providers, basic auth,
impersonation, proxies, a TLS server name) makes :func:`read` return None, and :func:`kmcp.kube.load_config`
hands the file to the kubernetes package, which knows every dialect and reports every error as before.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The keys read here; a cluster or user entry with any other key is left to the full loader.
CLUSTER_KEYS = frozenset({"server", "certificate-authority", "certificate-authority-data",
                          "insecure-skip-tls-verify", "extensions", "disable-compression"})
USER_KEYS = frozenset({"token", "tokenFile", "client-certificate", "client-certificate-data", "client-key",
                       "client-key-data", "extensions"})


@dataclass(frozen=True)
class FileConfig:
    """What a simple kubeconfig says: where the apiserver is, how to trust it, who we are."""

    server: str
    ssl_context: ssl.SSLContext
    token: str | None
    namespace: str
    refresh_token: Callable[[], str | None] | None = None  # re-reads a tokenFile, which may rotate


def _named(entries: Any, name: Any) -> Mapping[str, Any] | None:
    """The body of the entry called ``name`` in a kubeconfig list (clusters, users, contexts)."""
    if not isinstance(entries, list) or not isinstance(name, str):
        return None
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = next((v for k, v in entry.items() if k != "name"), None)
            return body if isinstance(body, dict) else {}
    return None


def _data(value: Any) -> bytes | None:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return None


def _path(base: Path, value: Any) -> str:
    """A file named in a kubeconfig: relative paths are relative to the kubeconfig's directory, as in kubectl."""
    named = Path(os.path.expanduser(str(value)))
    return str(named if named.is_absolute() else base / named)


def _ssl_context(cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path) -> ssl.SSLContext | None:
    if cluster.get("insecure-skip-tls-verify") is True:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif "certificate-authority-data" in cluster:
        ca = _data(cluster["certificate-authority-data"])
        if ca is None:
            return None
        ctx = ssl.create_default_context(cadata=ca.decode("ascii", "replace"))
    elif "certificate-authority" in cluster:
        ctx = ssl.create_default_context(cafile=_path(base, cluster["certificate-authority"]))
    else:
        ctx = ssl.create_default_context()
    cert = _pem(user, "client-certificate", base)
    key = _pem(user, "client-key", base)
    if (cert is None) != (key is None):
        return None
    if cert is not None and key is not None:
        # load_cert_chain reads files only: inline data goes through a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="kmcp-kubeconfig-") as directory:
            files = []
            for name, pem in (("client.crt", cert), ("client.key", key)):
                file = Path(directory) / name
                file.touch(mode=0o600)
                file.write_bytes(pem)
                files.append(str(file))
            ctx.load_cert_chain(files[0], files[1])
    return ctx


def _pem(user: Mapping[str, Any], field: str, base: Path) -> bytes | None:
    if f"{field}-data" in user:
        return _data(user[f"{field}-data"])
    if field in user:
        return Path(_path(base, user[field])).read_bytes()
    return None


def read(path: str | Path) -> FileConfig | None:
    """The current context of the kubeconfig at ``path``, or None when it needs the full loader (or is broken:
    the full loader then says how)."""
    import yaml

    file = Path(path)
    try:
        doc = yaml.load(file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    context = _named(doc.get("contexts"), doc.get("current-context"))
    if context is None:
        return None
    cluster = _named(doc.get("clusters"), context.get("cluster"))
    user = _named(doc.get("users"), context.get("user")) if context.get("user") else {}
    if cluster is None or user is None or not set(cluster) <= CLUSTER_KEYS or not set(user) <= USER_KEYS:
        return None
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        return None
    try:
        ctx = _ssl_context(cluster, user, file.parent)
        token_file = _path(file.parent, user["tokenFile"]) if "tokenFile" in user and "token" not in user else None
        token = Path(token_file).read_text().strip() if token_file else user.get("token")
    except (OSError, ssl.SSLError, ValueError):
        return None
    if ctx is None or (token is not None and not isinstance(token, str)):
        return None

    def reread() -> str | None:
        assert token_file is not None
        return Path(token_file).read_text().strip() or None

    return FileConfig(server=server, ssl_context=ctx, token=token or None,
                      namespace=str(context.get("namespace") or "default"),
                      refresh_token=reread if token_file else None)
