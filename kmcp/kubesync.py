"""A blocking Kubernetes API client on the standard library, for the commands that make a few reads and exit
(``kmcp get``, ``kmcp status``).

:class:`kmcp.kube.Kube` is async, on httpx and Trio, for the controller and every command that waits or watches;
importing those two costs most of a short command's run (~0.3 s of ``kmcp get -A``, where kubectl takes 0.2 s in
all). This client shares kube's Resources, configuration and typed errors, and speaks HTTP/1.1 with
:mod:`http.client` over one kept-alive connection.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from kmcp import kube

Obj = dict[str, Any]


class SyncKube:
    """Reads for one identity on one cluster. Use ``with SyncKube(config) as client:``."""

    def __init__(self, config: kube.KubeConfig, *, timeout: float = 30.0, user_agent: str = "kmcp") -> None:
        self.config = config
        self.counter = kube.RequestCounter()
        url = urllib.parse.urlsplit(config.server)
        self._prefix = url.path.rstrip("/")
        self._timeout = timeout
        self._user_agent = user_agent
        self._host = url.hostname or "localhost"
        self._port = url.port
        self._https = url.scheme == "https"
        self._connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> SyncKube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._https:
                self._connection = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                                               context=self.config.ssl_context)
            else:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._connection

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """One call; the decoded JSON answer, or a typed :class:`kmcp.kube.ApiError` (``ApiUnreachable`` /
        ``ApiTimeout`` / ``ApiUnavailable`` when no answer came)."""
        target = self._prefix + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        verb = kube._verb(method, path, params, kube._is_collection(path))
        plural = kube._plural_of(path)
        connected = self._connection is not None
        try:
            try:
                connection = self._connect()
                connection.request(method, target, headers=headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not connected:
                    raise
                self.close()  # the kept-alive connection was closed by the server meanwhile: once more, anew
                connected = False
                connection = self._connect()
                connection.request(method, target, headers=headers)
                response = connection.getresponse()
            data = response.read()
        except (TimeoutError, OSError, http.client.HTTPException) as error:
            self.close()
            self.counter.add(verb, plural, 0)
            cls = kube.ApiTimeout if isinstance(error, TimeoutError) else \
                kube.ApiUnreachable if not connected and isinstance(error, OSError) else kube.ApiUnavailable
            raise cls(0, type(error).__name__, str(error) or type(error).__name__, method=method,
                      path=path) from error
        self.counter.add(verb, plural, response.status)
        if not 200 <= response.status < 300:
            try:
                body = json.loads(data)
            except ValueError:
                body = {"message": data[:500].decode(errors="replace")}
            raise kube.error_from_status(response.status, body, method, path)
        return json.loads(data) if data else None

    def get(self, resource: kube.Resource, name: str, namespace: str | None = None) -> Obj:
        return dict(self.request("GET", resource.path(namespace, name)))

    def list(self, resource: kube.Resource, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> Obj:
        """The List object (``items`` and ``metadata``), through every ``continue`` page."""
        params: dict[str, Any] = {"limit": 500}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items: list[Obj] = []
        while True:
            page = self.request("GET", resource.path(namespace), params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                page["items"] = items
                return dict(page)
            params["continue"] = token
