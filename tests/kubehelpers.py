"""Helpers for tests against the real kube-apiserver started by ``tests/conftest.py``.

``Kube`` is a thin httpx client bound to one kubeconfig (client certificate or bearer token): raw REST calls,
discovery-based paths for any kind, server-side apply of multi-document YAML, create/read/delete. Plus the
TokenRequest API to act as a ServiceAccount, and polling with a timeout. ``api_client`` hands out the official
``kubernetes`` client for tests that prefer typed APIs.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from kmcp.devcluster.control_plane import kubeconfig_yaml

T = TypeVar("T")
Obj = dict[str, Any]
FIELD_MANAGER = "kmcp-tests"


class KubeApiError(Exception):
    """A non-2xx answer from the apiserver; ``message`` is the server's own Status message."""

    def __init__(self, method: str, url: str, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            self.body: Obj = response.json()
        except ValueError:
            self.body = {"message": response.text}
        self.message: str = str(self.body.get("message", response.text))
        self.reason: str = str(self.body.get("reason", ""))
        super().__init__(f"{method} {url} -> {self.status} {self.reason}: {self.message}")


# ------------------------------------------------------------------------------------------------------------------
# kubeconfig


def _read_kubeconfig(path: Path | str) -> tuple[str, bytes, bytes | None, bytes | None, str | None]:
    """(server, ca_pem, client_cert_pem, client_key_pem, token) of the current context."""
    doc = yaml.safe_load(Path(path).read_text())
    ctx_name = doc["current-context"]
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])

    def data(section: Mapping[str, Any], key: str) -> bytes | None:
        if f"{key}-data" in section:
            return base64.b64decode(section[f"{key}-data"])
        if key in section:
            return Path(section[key]).read_bytes()
        return None

    ca = data(cluster, "certificate-authority")
    if ca is None:
        raise ValueError(f"{path}: cluster has no certificate authority")
    return cluster["server"], ca, data(user, "client-certificate"), data(user, "client-key"), user.get("token")


def _ssl_context(ca_pem: bytes, cert_pem: bytes | None, key_pem: bytes | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if cert_pem is not None and key_pem is not None:
        # load_cert_chain only reads files: a private temp dir that lives for the call.
        with tempfile.TemporaryDirectory(prefix="kmcp-tls-") as tmp:
            cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert_file.write_bytes(cert_pem)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)
            ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


# ------------------------------------------------------------------------------------------------------------------
# manifests


def load_manifests(manifests: str | Path | Obj | Iterable[Obj]) -> list[Obj]:
    """Objects from multi-document YAML text, a YAML file, one dict or dicts; empty documents are skipped."""
    if isinstance(manifests, Path):
        manifests = manifests.read_text()
    if isinstance(manifests, str):
        docs = list(yaml.safe_load_all(manifests))
    elif isinstance(manifests, dict):
        docs = [manifests]
    else:
        docs = list(manifests)
    out: list[Obj] = []
    for doc in docs:
        if not doc:
            continue
        if doc.get("kind", "").endswith("List") and "items" in doc:
            out.extend(doc["items"])
        else:
            out.append(doc)
    return out


# ------------------------------------------------------------------------------------------------------------------
# client


class Kube:
    """A synchronous REST client for one identity on one cluster."""

    def __init__(self, server: str, ca_pem: bytes, *, client_cert_pem: bytes | None = None,
                 client_key_pem: bytes | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self.ca_pem = ca_pem
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.server, verify=_ssl_context(ca_pem, client_cert_pem, client_key_pem),
                                 headers=headers, timeout=timeout)
        self._resources: dict[str, list[Obj]] = {}

    @classmethod
    def from_kubeconfig(cls, path: Path | str, **kwargs: Any) -> Kube:
        server, ca, cert, key, token = _read_kubeconfig(path)
        return cls(server, ca, client_cert_pem=cert, client_key_pem=key, token=token, **kwargs)

    def with_token(self, token: str) -> Kube:
        """Same cluster, authenticated only by ``token`` (e.g. a ServiceAccount's)."""
        return Kube(self.server, self.ca_pem, token=token)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw REST
    def request(self, method: str, path: str, *, check: bool = True, **kwargs: Any) -> httpx.Response:
        """``path`` like ``/api/v1/namespaces``; raises :class:`KubeApiError` on non-2xx when ``check``."""
        response = self.http.request(method, path, **kwargs)
        if check and not response.is_success:
            raise KubeApiError(method, path, response)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Obj, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    # -- discovery
    def _group_version_resources(self, api_version: str, refresh: bool) -> list[Obj]:
        if refresh or api_version not in self._resources:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            response = self.get(path, check=False)
            self._resources[api_version] = response.json().get("resources", []) if response.is_success else []
        return self._resources[api_version]

    def resource_info(self, api_version: str, kind: str, discovery_timeout: float = 10.0) -> Obj:
        """The discovery entry (name = plural, namespaced, verbs) for ``kind``; waits for new CRDs to appear."""
        deadline = time.monotonic() + discovery_timeout
        refresh = False
        while True:
            for res in self._group_version_resources(api_version, refresh):
                if res.get("kind") == kind and "/" not in res["name"]:
                    return res
            if time.monotonic() > deadline:
                raise LookupError(f"the apiserver serves no kind {kind} in {api_version}")
            refresh = True
            time.sleep(0.1)

    def path(self, api_version: str, kind: str, name: str | None = None, namespace: str | None = None,
             subresource: str | None = None) -> str:
        """REST path of a collection (``name`` None) or an object, e.g. ``/api/v1/namespaces/ns/pods/p``."""
        info = self.resource_info(api_version, kind)
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if info["namespaced"] and namespace:
            prefix += f"/namespaces/{namespace}"
        elif info["namespaced"] and name is not None:
            raise ValueError(f"{kind} {name} is namespaced: pass namespace")
        out = f"{prefix}/{info['name']}"
        if name is not None:
            out += f"/{name}"
        if subresource:
            out += f"/{subresource}"
        return out

    def _object_path(self, obj: Obj, namespace: str | None, with_name: bool = True) -> str:
        meta = obj.get("metadata", {})
        info = self.resource_info(obj["apiVersion"], obj["kind"])
        ns = (meta.get("namespace") or namespace) if info["namespaced"] else None
        return self.path(obj["apiVersion"], obj["kind"], meta["name"] if with_name else None, ns)

    # -- objects
    def apply(self, manifests: str | Path | Obj | Iterable[Obj], namespace: str | None = None, *,
              field_manager: str = FIELD_MANAGER, force: bool = True) -> list[Obj]:
        """Server-side apply every object (namespaced ones default to ``namespace``); returns the live objects."""
        out: list[Obj] = []
        for obj in load_manifests(manifests):
            path = self._object_path(obj, namespace)
            response = self.request(
                "PATCH", path, content=json.dumps(obj),
                headers={"Content-Type": "application/apply-patch+yaml"},
                params={"fieldManager": field_manager, "force": "true" if force else "false"},
            )
            out.append(response.json())
        return out

    def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        """POST one object; raises :class:`KubeApiError` (e.g. 422 with the validation message)."""
        return dict(self.post(self._object_path(obj, namespace, with_name=False), obj).json())

    def read(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        response = self.get(self.path(api_version, kind, name, namespace), check=False)
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise KubeApiError("GET", str(response.request.url), response)
        return dict(response.json())

    def items(self, api_version: str, kind: str, namespace: str | None = None, **params: str) -> list[Obj]:
        """The items of a collection (``params`` e.g. labelSelector=...)."""
        return list(self.get(self.path(api_version, kind, None, namespace), params=params).json()["items"])

    def remove(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               propagation: str | None = None) -> bool:
        """DELETE one object (``propagation``: Foreground, Background or Orphan); False if it was not there."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation:
            body["propagationPolicy"] = propagation
        response = self.request("DELETE", self.path(api_version, kind, name, namespace), json=body, check=False)
        if response.status_code == 404:
            return False
        if not response.is_success:
            raise KubeApiError("DELETE", str(response.request.url), response)
        return True

    def wait_for_condition(self, api_version: str, kind: str, name: str, condition: str, *,
                           namespace: str | None = None, status: str = "True", timeout: float = 30.0) -> Obj:
        """Poll until ``status.conditions[type=condition].status == status``; returns the object."""
        def check() -> Obj | None:
            obj = self.read(api_version, kind, name, namespace)
            for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
                if cond.get("type") == condition and cond.get("status") == status:
                    return obj
            return None

        return wait_for(check, timeout=timeout, description=f"{kind} {name} condition {condition}={status}")

    def wait_deleted(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
                     timeout: float = 30.0) -> None:
        wait_for(lambda: self.read(api_version, kind, name, namespace) is None, timeout=timeout,
                 description=f"{kind} {name} to be deleted")


# ------------------------------------------------------------------------------------------------------------------
# polling, ServiceAccounts, official client


def wait_for(predicate: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.1,
             description: str = "condition") -> T:
    """Call ``predicate`` until it returns a truthy value (returned) or ``timeout`` seconds pass (TimeoutError).

    Exceptions from ``predicate`` count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as err:
            last = err
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {description}; last result: {last!r}")
        time.sleep(interval)


def service_account_token(kube: Kube, namespace: str, name: str, *, audiences: Iterable[str] = (),
                          expiration_seconds: int = 3600) -> str:
    """A bound token for ServiceAccount ``namespace/name`` from the TokenRequest API."""
    spec: Obj = {"expirationSeconds": expiration_seconds}
    if audiences:
        spec["audiences"] = list(audiences)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    response = kube.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body)
    return str(response.json()["status"]["token"])


def service_account_kubeconfig(kube: Kube, namespace: str, name: str, path: Path, *,
                               expiration_seconds: int = 3600) -> Path:
    """Write a kubeconfig at ``path`` that authenticates as ServiceAccount ``namespace/name`` (token inside)."""
    token = service_account_token(kube, namespace, name, expiration_seconds=expiration_seconds)
    user = f"system:serviceaccount:{namespace}:{name}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(kubeconfig_yaml(kube.server, kube.ca_pem, user, token=token, namespace=namespace))
    return path


def api_client(kubeconfig: Path | str) -> Any:
    """The official client's ``kubernetes.client.ApiClient`` for ``kubeconfig`` (close it when done)."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))
