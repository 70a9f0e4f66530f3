"""A small async Kubernetes API client for Trio, on :mod:`kmcp.kubehttp` (or httpx behind a proxy).

Only what the controller needs: get/list/create/update/delete, watch as an async iterator, server-side apply,
status patches, Events and Leases. A resource is described by :class:`Resource` (group, version, plural,
namespaced), so there is no per-kind code. Errors are typed (:class:`NotFound`, :class:`Conflict`, :class:`Gone`,
...) and carry the server's Status (reason, message, causes); a request that got no answer raises
:class:`ApiUnavailable`, so callers never see httpx's exceptions.

Configuration comes from a kubeconfig file or the in-cluster service account. A simple kubeconfig (a token or a
client certificate) is read by :mod:`kmcp.kubeconfig`; the official ``kubernetes`` package reads everything else (it
knows every kubeconfig dialect), imported lazily and only then. The HTTP clients, Trio and msgspec are imported by
the client itself, so the Resources, errors and configuration come without them (:mod:`kmcp.kubesync`, for
`kmcp get`, uses those).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from kmcp import kubehttp

Obj = dict[str, Any]
FIELD_MANAGER = "kmcp"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
METADATA_ONLY_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


# ------------------------------------------------------------------------------------------------------------------
# resources


@dataclass(frozen=True)
class Resource:
    """One REST resource: ``group`` "" is the core API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True
    kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """``/api/v1/namespaces/ns/pods/p/status``; a namespaced resource without namespace means all namespaces."""
        out = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            out += f"/namespaces/{namespace}"
        out += f"/{self.plural}"
        if name is not None:
            out += f"/{name}"
            if subresource:
                out += f"/{subresource}"
        return out


MCPSERVERS = Resource("kagent.dev", "v1alpha1", "mcpservers", kind="MCPServer")
DEPLOYMENTS = Resource("apps", "v1", "deployments", kind="Deployment")
SERVICES = Resource("", "v1", "services", kind="Service")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", kind="ServiceAccount")
SECRETS = Resource("", "v1", "secrets", kind="Secret")
CONFIG_MAPS = Resource("", "v1", "configmaps", kind="ConfigMap")
CORE_EVENTS = Resource("", "v1", "events", kind="Event")
EVENTS = Resource("events.k8s.io", "v1", "events", kind="Event")
LEASES = Resource("coordination.k8s.io", "v1", "leases", kind="Lease")
TOKEN_REVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", namespaced=False, kind="TokenReview")
SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False,
                                  kind="SubjectAccessReview")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False, kind="Namespace")
# What `auth: kubernetes` renders: cluster-scoped, so it cannot carry an owner reference to its MCPServer.
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False,
                                 kind="ClusterRoleBinding")

_BY_API_VERSION_KIND = {(r.api_version, r.kind): r for r in (
    MCPSERVERS, DEPLOYMENTS, SERVICES, SERVICE_ACCOUNTS, SECRETS, CONFIG_MAPS, EVENTS, LEASES, NAMESPACES,
    CLUSTER_ROLE_BINDINGS)}


def micro_time() -> str:
    """Now as a Kubernetes MicroTime (Lease renewTime, Event eventTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resource_for(obj: Mapping[str, Any]) -> Resource:
    """The Resource of a known kind (the children kmcp renders and the kinds it reads)."""
    try:
        return _BY_API_VERSION_KIND[(obj["apiVersion"], obj["kind"])]
    except KeyError:
        raise ValueError(f"kmcp.kube does not know {obj.get('apiVersion')}/{obj.get('kind')}") from None


# ------------------------------------------------------------------------------------------------------------------
# errors


class ApiError(Exception):
    """A non-2xx answer; ``reason``/``message``/``causes`` come from the server's metav1.Status when it sent one."""

    def __init__(self, status: int, reason: str = "", message: str = "", causes: list[Obj] | None = None,
                 method: str = "", path: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = causes or []
        self.method = method
        self.path = path
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())


def namespace_terminating(error: BaseException) -> bool:
    """The apiserver refuses new objects in a namespace that is being deleted: nothing to retry or report."""
    return isinstance(error, ApiError) and any(c.get("reason") == "NamespaceTerminating" for c in error.causes)


class Unauthorized(ApiError):
    """401: the credentials are missing, expired or wrong."""


class Forbidden(ApiError):
    """403: RBAC does not allow the call."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: a stale resourceVersion (optimistic concurrency) or, as :class:`AlreadyExists`, a name clash."""


class AlreadyExists(Conflict):
    """409 with reason AlreadyExists."""


class Gone(ApiError):
    """410: the resourceVersion is too old (compacted); the caller must relist."""


class Invalid(ApiError):
    """422: the object fails validation; ``causes`` name the fields."""


class TooManyRequests(ApiError):
    """429: throttled, or a watch cache still initializing; retry after a pause."""


class ApiUnavailable(ApiError):
    """No answer at all: the connection failed, timed out or broke (status 0). The transport's exception (an
    ``httpx.HTTPError``) is the ``__cause__``; ``str()`` is its message, as callers showed it before kube wrapped it."""

    def __str__(self) -> str:
        return self.message


class ApiUnreachable(ApiUnavailable):
    """The connection to the apiserver could not be opened (refused, no route, TLS handshake failed)."""


class ApiTimeout(ApiUnavailable):
    """The apiserver did not answer in time (connect, read, write or pool timeout)."""


def unavailable(error: httpx.HTTPError | kubehttp.HttpError, method: str, path: str) -> ApiUnavailable:
    """The typed error for a transport failure, so no caller has to know which HTTP library kube uses."""
    from kmcp import kubehttp

    if isinstance(error, kubehttp.HttpError):
        cls = ApiUnreachable if isinstance(error, kubehttp.ConnectError) else \
            ApiTimeout if isinstance(error, kubehttp.Timeout) else ApiUnavailable
    else:
        import httpx  # only a client that uses httpx can have raised one of its errors

        cls = ApiUnreachable if isinstance(error, httpx.ConnectError) else \
            ApiTimeout if isinstance(error, httpx.TimeoutException) else ApiUnavailable
    return cls(0, type(error).__name__, str(error), method=method, path=path)


_BY_STATUS: dict[int, type[ApiError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
                                         410: Gone, 422: Invalid, 429: TooManyRequests}


def error_from_status(code: int, body: Any, method: str = "", path: str = "") -> ApiError:
    status = body if isinstance(body, dict) else {}
    reason = str(status.get("reason", ""))
    cls = AlreadyExists if code == 409 and reason == "AlreadyExists" else _BY_STATUS.get(code, ApiError)
    details = status.get("details") or {}
    return cls(code, reason, str(status.get("message", "")), list(details.get("causes") or []), method, path)


def _error(response: httpx.Response, method: str, path: str) -> ApiError:
    return _error_from(response.status_code, response.content, method, path)


def _error_from(code: int, content: bytes, method: str, path: str) -> ApiError:
    try:
        body = _decode(content)
    except ValueError:
        body = {"message": content[:500].decode("utf-8", "replace")}
    return error_from_status(code, body, method, path)


def _encode(value: Any) -> bytes:
    """JSON, by msgspec (imported on first use: the module's Resources and errors come without it)."""
    import msgspec

    return msgspec.json.encode(value)


def _decode(content: bytes) -> Any:
    """JSON, by msgspec (several times faster than the json module on the apiserver's answers)."""
    import msgspec

    try:
        return msgspec.json.decode(content)
    except msgspec.DecodeError as error:
        raise ValueError(str(error)) from error


def _proxied(server: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment sends requests to ``server`` through a proxy (HTTPS_PROXY/ALL_PROXY, not bypassed by
    NO_PROXY): only httpx knows proxies."""
    import urllib.parse

    env = os.environ if environ is None else environ
    proxies = {k.lower()[:-6]: v for k, v in env.items() if k.lower().endswith("_proxy") and v}
    url = urllib.parse.urlsplit(server)
    if not (proxies.get(url.scheme or "https") or proxies.get("all")):
        return False
    host = (url.hostname or "").lower()
    for entry in (e.strip().lower().lstrip(".") for e in proxies.get("no", "").split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return False
    return True


# ------------------------------------------------------------------------------------------------------------------
# configuration


@dataclass
class KubeConfig:
    """Where the apiserver is and how to authenticate; ``refresh_token`` re-reads a rotating token (sync)."""

    server: str
    ssl_context: ssl.SSLContext
    token: str | None = None
    namespace: str = "default"
    in_cluster: bool = False
    refresh_token: Callable[[], str | None] | None = None
    refresh_interval: float = 60.0


def _bearer(api_key: Mapping[str, str]) -> str | None:
    value = api_key.get("authorization") or api_key.get("BearerToken")
    if not value:
        return None
    return value.split(" ", 1)[1] if value.lower().startswith("bearer ") else value


def _ssl_context_from(configuration: Any) -> ssl.SSLContext:
    if configuration.verify_ssl:
        ctx = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if configuration.cert_file and configuration.key_file:
        ctx.load_cert_chain(configuration.cert_file, configuration.key_file)
    return ctx


def load_config(kubeconfig: str | None = None, *, environ: Mapping[str, str] | None = None,
                service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeConfig:
    """Explicit kubeconfig, else in-cluster (when the service account files exist), else $KUBECONFIG or
    ~/.kube/config. Synchronous (reads files): call it before trio.run or through trio.to_thread."""
    import importlib

    env = os.environ if environ is None else environ
    in_cluster = kubeconfig is None and bool(env.get("KUBERNETES_SERVICE_HOST")) and \
        (service_account_dir / "token").exists()
    path = kubeconfig or env.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
    if not in_cluster:
        from kmcp import kubeconfig as simple

        found = simple.read(path)  # the common files, without the half second the kubernetes package costs
        if found is not None:
            return KubeConfig(found.server, found.ssl_context, found.token, found.namespace,
                              refresh_token=found.refresh_token)
    # Lazily, and untyped: the kubernetes package's loaders, for in-cluster and every other kubeconfig dialect.
    k8s_client: Any = importlib.import_module("kubernetes.client")
    incluster_config: Any = importlib.import_module("kubernetes.config.incluster_config")
    kube_config: Any = importlib.import_module("kubernetes.config.kube_config")
    configuration = k8s_client.Configuration()
    if in_cluster:
        # Projected tokens rotate: the loader's hook re-reads the file (at most once a minute).
        loader = incluster_config.InClusterConfigLoader(
            token_filename=str(service_account_dir / "token"),
            cert_filename=str(service_account_dir / "ca.crt"),
            try_refresh_token=True,
            environ=dict(env),
        )
        loader.load_and_set(configuration)
        namespace_file = service_account_dir / "namespace"
        namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"

        def refresh() -> str | None:
            hook = configuration.refresh_api_key_hook
            if hook is not None:
                hook(configuration)
            return _bearer(configuration.api_key)

        return KubeConfig(configuration.host, _ssl_context_from(configuration), _bearer(configuration.api_key),
                          namespace, in_cluster=True, refresh_token=refresh)
    loader = kube_config._get_kube_config_loader(filename=path, persist_config=False)
    loader.load_and_set(configuration)
    namespace = (loader.current_context.get("context") or {}).get("namespace") or "default"

    def refresh_kubeconfig() -> str | None:
        hook = configuration.refresh_api_key_hook
        if hook is not None:
            hook(configuration)
        return _bearer(configuration.api_key)

    return KubeConfig(configuration.host, _ssl_context_from(configuration), _bearer(configuration.api_key),
                      namespace, refresh_token=refresh_kubeconfig if configuration.refresh_api_key_hook else None)


# ------------------------------------------------------------------------------------------------------------------
# client


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Obj


@dataclass
class RequestCounter:
    """Requests by (verb, resource plural, status code); ``writes()`` is what the zero-writes promise is about."""

    counts: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def add(self, verb: str, resource: str, code: int) -> None:
        key = (verb, resource, code)
        self.counts[key] = self.counts.get(key, 0) + 1

    def writes(self, exclude: frozenset[str] = frozenset({"tokenreviews", "subjectaccessreviews"})) -> int:
        return sum(n for (verb, res, _), n in self.counts.items() if verb in WRITE_VERBS and res not in exclude)


def _verb(method: str, path: str, params: Mapping[str, Any] | None, is_collection: bool) -> str:
    if method == "GET":
        if params and params.get("watch"):
            return "watch"
        return "list" if is_collection else "get"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


class Kube:
    """An async client for one identity on one cluster. Use ``async with Kube(config) as kube:``."""

    def __init__(self, config: KubeConfig, *, timeout: float = 30.0, user_agent: str = "kmcp",
                 http: httpx.AsyncClient | None = None) -> None:
        """Requests go through :mod:`kmcp.kubehttp` (lean keep-alive HTTP/1.1), or through httpx when ``http`` is
        given or the environment names a proxy for the server."""
        self.config = config
        self.counter = RequestCounter()
        self._token = config.token
        self._token_read_at = time.monotonic()
        # Imported here, not at the top: `kmcp get` reads this module's Resources and errors without them.
        from kmcp import kubehttp

        self._kubehttp = kubehttp
        self._lean: kubehttp.Client | None = None
        self._http: httpx.AsyncClient | None = http
        if http is None and not _proxied(config.server):
            self._lean = kubehttp.Client(config.server.rstrip("/"), config.ssl_context, timeout=timeout,
                                         headers={"User-Agent": user_agent})
        elif http is None:
            import httpx

            self._http = httpx.AsyncClient(base_url=config.server.rstrip("/"), verify=config.ssl_context,
                                           timeout=timeout, headers={"User-Agent": user_agent})

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._lean is not None:
            await self._lean.aclose()
        if self._http is not None:
            await self._http.aclose()

    async def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        refresh = self.config.refresh_token
        if refresh is not None and time.monotonic() - self._token_read_at > self.config.refresh_interval:
            import trio

            self._token = await trio.to_thread.run_sync(refresh)
            self._token_read_at = time.monotonic()
        headers = dict(extra or {})
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      accept: str = "application/json") -> Any:
        """One call; the decoded JSON answer, or a typed :class:`ApiError` (:class:`ApiUnavailable` when no answer
        came)."""
        headers = await self._headers({"Accept": accept})
        content = None
        if body is not None:
            content = _encode(body)
            headers["Content-Type"] = content_type
        verb, plural = _verb(method, path, params, _is_collection(path)), _plural_of(path)
        if self._lean is not None:
            try:
                code, data = await self._lean.request(method, path + self._kubehttp.query(params), headers=headers,
                                                      body=content)
            except self._kubehttp.HttpError as error:
                self.counter.add(verb, plural, 0)
                raise unavailable(error, method, path) from error
        else:
            assert self._http is not None
            import httpx

            try:
                response = await self._http.request(method, path, params=params, content=content, headers=headers)
            except httpx.HTTPError as error:
                self.counter.add(verb, plural, 0)
                raise unavailable(error, method, path) from error
            code, data = response.status_code, response.content
        self.counter.add(verb, plural, code)
        if not 200 <= code < 300:
            raise _error_from(code, data, method, path)
        return _decode(data) if data else None

    # -- objects
    async def get(self, resource: Resource, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> Obj:
        return dict(await self.request("GET", resource.path(namespace, name, subresource)))

    async def list(self, resource: Resource, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, metadata_only: bool = False,
                   resource_version: str | None = None) -> Obj:
        """The List object (``items`` and ``metadata.resourceVersion``). Pages through ``continue`` tokens."""
        items: list[Obj] = []
        last: Obj = {}
        async for page in self.list_pages(resource, namespace, label_selector=label_selector,
                                          field_selector=field_selector, metadata_only=metadata_only,
                                          resource_version=resource_version):
            items.extend(page.get("items") or [])
            last = page
        last["items"] = items
        return dict(last)

    async def list_pages(self, resource: Resource, namespace: str | None = None, *,
                         label_selector: str | None = None, field_selector: str | None = None,
                         metadata_only: bool = False, resource_version: str | None = None,
                         limit: int = 500) -> AsyncGenerator[Obj, None]:
        """Each page of a list as it comes (at most ``limit`` items), so a caller can keep what it needs of one page
        before the next arrives; the last page's ``metadata.resourceVersion`` is the list's."""
        params: dict[str, Any] = {"limit": limit}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if resource_version is not None:  # "0": any cached version will do; else at least this one
            params["resourceVersion"] = resource_version
            if resource_version != "0":
                params["resourceVersionMatch"] = "NotOlderThan"
        accept = METADATA_ONLY_LIST if metadata_only else "application/json"
        while True:
            page = await self.request("GET", resource.path(namespace), params=params, accept=accept)
            token = (page.get("metadata") or {}).get("continue")
            yield page
            if not token:
                return
            params = {k: v for k, v in params.items() if k not in ("resourceVersion", "resourceVersionMatch")}
            params["continue"] = token

    async def create(self, resource: Resource, obj: Obj, namespace: str | None = None) -> Obj:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return dict(await self.request("POST", resource.path(ns), body=obj))

    async def replace(self, resource: Resource, obj: Obj, namespace: str | None = None) -> Obj:
        """PUT (update); ``metadata.resourceVersion`` in ``obj`` makes it conditional."""
        meta = obj["metadata"]
        ns = namespace or meta.get("namespace")
        return dict(await self.request("PUT", resource.path(ns, meta["name"]), body=obj))

    async def delete(self, resource: Resource, name: str, namespace: str | None = None, *,
                     propagation: str | None = None) -> None:
        body: Obj | None = None
        if propagation:
            body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        await self.request("DELETE", resource.path(namespace, name), body=body)

    async def apply(self, obj: Obj, *, resource: Resource | None = None, field_manager: str = FIELD_MANAGER,
                    force: bool = True, subresource: str | None = None) -> Obj:
        """Server-side apply: the fields in ``obj`` become owned by ``field_manager``; others' fields stay."""
        res = resource or resource_for(obj)
        meta = obj["metadata"]
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return dict(await self.request("PATCH", res.path(meta.get("namespace"), meta["name"], subresource),
                                       params=params, body=obj, content_type="application/apply-patch+yaml"))

    async def patch(self, resource: Resource, name: str, namespace: str | None, patch: Obj, *,
                    subresource: str | None = None, patch_type: str = "application/merge-patch+json",
                    field_manager: str = FIELD_MANAGER) -> Obj:
        return dict(await self.request("PATCH", resource.path(namespace, name, subresource),
                                       params={"fieldManager": field_manager}, body=patch, content_type=patch_type))

    async def patch_status(self, resource: Resource, name: str, namespace: str | None, status: Obj) -> Obj:
        """JSON merge patch of the status subresource (``status`` replaces lists such as conditions whole)."""
        return await self.patch(resource, name, namespace, {"status": status}, subresource="status")

    # -- watch
    async def watch(self, resource: Resource, namespace: str | None = None, *, resource_version: str,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int = 300, metadata_only: bool = False) -> AsyncGenerator[WatchEvent, None]:
        """Events after ``resource_version`` until the server ends the watch (``timeout_seconds``).

        Bookmarks are asked for (they carry only a newer resourceVersion). An expired resourceVersion raises
        :class:`Gone`: the caller relists."""
        params: dict[str, Any] = {"watch": "true", "resourceVersion": resource_version,
                                  "allowWatchBookmarks": "true", "timeoutSeconds": timeout_seconds}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        path = resource.path(namespace)
        headers = await self._headers({"Accept": METADATA_ONLY if metadata_only else "application/json"})
        lines = self._watch_lean(resource, path, params, headers, timeout_seconds) if self._lean is not None \
            else self._watch_httpx(resource, path, params, headers, timeout_seconds)
        async with aclosing(lines):
            async for line in lines:
                if not line.strip():
                    continue
                event = _decode(line)
                kind, obj = event.get("type", ""), event.get("object") or {}
                if kind == "ERROR":
                    raise error_from_status(int(obj.get("code") or 500), obj, "WATCH", path)
                yield WatchEvent(kind, obj)

    async def _watch_lean(self, resource: Resource, path: str, params: Mapping[str, Any], headers: Mapping[str, str],
                          timeout_seconds: int) -> AsyncGenerator[bytes, None]:
        assert self._lean is not None
        try:
            async with self._lean.stream("GET", path + self._kubehttp.query(params), headers=headers, within=30.0,
                                         read_timeout=timeout_seconds + 30.0) as response:
                self.counter.add("watch", resource.plural, response.status)
                if not response.is_success:
                    raise _error_from(response.status, await response.read(), "GET", path)
                async for line in response.lines():
                    yield line
        except self._kubehttp.HttpError as error:  # opening the stream, or the connection breaking mid-watch
            raise unavailable(error, "WATCH", path) from error

    async def _watch_httpx(self, resource: Resource, path: str, params: Mapping[str, Any],
                           headers: Mapping[str, str], timeout_seconds: int) -> AsyncGenerator[bytes, None]:
        assert self._http is not None
        import httpx

        timeout = httpx.Timeout(30.0, read=timeout_seconds + 30.0)
        try:
            async with self._http.stream("GET", path, params=params, headers=headers, timeout=timeout) as response:
                self.counter.add("watch", resource.plural, response.status_code)
                if not response.is_success:
                    await response.aread()
                    raise _error(response, "GET", path)
                async for line in response.aiter_lines():
                    yield line.encode()
        except httpx.HTTPError as error:  # opening the stream, or the connection breaking mid-watch
            raise unavailable(error, "WATCH", path) from error

    async def server_version(self) -> tuple[int, int]:
        """The apiserver's (major, minor) from /version, for rules that changed between Kubernetes versions."""
        return parse_server_version(await self.request("GET", "/version"))

    # -- helpers for the controller's side channels
    async def create_event(self, namespace: str, event: Obj) -> Obj:
        return await self.create(EVENTS, event, namespace)

    async def get_lease(self, namespace: str, name: str) -> Obj:
        return await self.get(LEASES, name, namespace)

    async def create_lease(self, namespace: str, lease: Obj) -> Obj:
        return await self.create(LEASES, lease, namespace)

    async def update_lease(self, namespace: str, lease: Obj) -> Obj:
        return await self.replace(LEASES, lease, namespace)


def parse_server_version(info: Mapping[str, Any]) -> tuple[int, int]:
    """(major, minor) of a /version answer. Some providers say minor "32+"; gitVersion ("v1.37.0-gke.1") is the
    fallback when major/minor are missing."""
    def leading_int(text: str) -> int | None:
        digits = text[: len(text) - len(text.lstrip("0123456789"))]
        return int(digits) if digits else None

    major, minor = leading_int(str(info.get("major", ""))), leading_int(str(info.get("minor", "")))
    if major is None or minor is None:
        parts = str(info.get("gitVersion", "")).lstrip("v").split(".")
        major, minor = (leading_int(parts[0]), leading_int(parts[1])) if len(parts) >= 2 else (None, None)
    if major is None or minor is None:
        raise ValueError(f"no Kubernetes version in {dict(info)!r}")
    return major, minor


def _plural_of(path: str) -> str:
    parts = [p for p in path.split("?")[0].split("/") if p]
    # /api/v1/namespaces/ns/pods/name/sub  or /apis/g/v/plural...
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    return rest[0] if rest else ""


def _is_collection(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    return len(rest) == 1
