"""The bearer-token gate in front of the MCP endpoints, and the RFC 9728 protected-resource metadata.

Imported only when auth is enabled (start-up time). Tokens are never logged or kept: the review cache is keyed by
their SHA-256, and failure metrics carry a reason, not a token."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec
import trio

from kmcp.adapter.auth_client import FetchError
from kmcp.adapter.auth_jwt import JwtVerifier, TokenInvalid
from kmcp.adapter.auth_kube import KubeReviewer, NotAuthorized
from kmcp.adapter.metrics import Metrics
from kmcp.adapter.server.http import Request, Responder
from kmcp.adapter.server.httputil import JSON
from kmcp.adapter.settings import AuthSettings

METADATA_PATH = "/.well-known/oauth-protected-resource"
MAX_CACHE = 10_000


@dataclass(frozen=True)
class _Verdict:
    error: str | None  # None: allowed; else a metric reason
    status: int = 200


class AuthGate:
    def __init__(self, auth: AuthSettings, metrics: Metrics) -> None:
        self.auth = auth
        self.metrics = metrics
        self._cache: dict[bytes, tuple[float, _Verdict]] = {}
        self._jwt = JwtVerifier(issuer=auth.jwt_issuer, audiences=auth.audiences,
                                jwks_url=auth.jwt_jwks_url or None, clock_skew=auth.jwt_clock_skew,
                                ca_file=auth.jwt_ca_file or None) if auth.mode == "jwt" else None
        self._kube = KubeReviewer(auth) if auth.mode == "kubernetes" else None

    def resource_url(self, request: Request) -> str:
        if self.auth.resource_url:
            return self.auth.resource_url
        return f"http://{request.header('host', 'localhost')}/mcp"

    def metadata_url(self, request: Request) -> str:
        split = urlsplit(self.resource_url(request))
        return f"{split.scheme}://{split.netloc}{METADATA_PATH}"

    async def metadata(self, request: Request, responder: Responder) -> None:
        document = {"resource": self.resource_url(request),
                    "authorization_servers": list(self.auth.authorization_servers),
                    "bearer_methods_supported": ["header"]}
        await responder.respond(200, [(b"content-type", JSON), (b"cache-control", b"max-age=300")],
                                msgspec.json.encode(document))

    async def admit(self, request: Request, responder: Responder) -> bool:
        """True if the request may go on; otherwise the 401/403/503 has been sent."""
        scheme, _, token = request.header("authorization").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or "," in token or " " in token:
            reason = "missing_token" if not request.header("authorization") else "malformed"
            return await self._deny(request, responder, 401, reason, token_sent=reason != "missing_token")
        verdict = await self._check(token)
        if verdict.error is None:
            return True
        return await self._deny(request, responder, verdict.status, verdict.error, token_sent=True)

    async def _check(self, token: str) -> _Verdict:
        key = hashlib.sha256(token.encode()).digest()
        now = trio.current_time()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            if self._jwt is not None:
                await self._jwt.verify(token)
            elif self._kube is not None:
                user = await self._kube.review(token)
                await self._kube.authorize(user)
            verdict = _Verdict(None)
        except TokenInvalid as error:
            verdict = _Verdict(error.reason, 401)
        except NotAuthorized:
            verdict = _Verdict("forbidden", 403)
        except FetchError as error:
            print(f"kmcp adapter: auth backend unavailable: {error}", file=sys.stderr)
            return _Verdict("backend_unavailable", 503)  # not cached
        if self._kube is not None:  # JWTs are re-verified locally each time: cheap, and exp stays exact
            if len(self._cache) >= MAX_CACHE:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHE:
                    self._cache.clear()
            self._cache[key] = (now + self.auth.cache_ttl, verdict)
        return verdict

    async def _deny(self, request: Request, responder: Responder, status: int, reason: str, *,
                    token_sent: bool) -> bool:
        self.metrics.auth_failures[reason] += 1
        challenge = f'Bearer resource_metadata="{self.metadata_url(request)}"'
        if status == 401 and token_sent:
            challenge += ', error="invalid_token"'
        elif status == 403:
            challenge += ', error="insufficient_scope"'
        headers = [(b"content-type", JSON), (b"www-authenticate", challenge.encode())]
        if status == 503:
            headers = [(b"content-type", JSON), (b"retry-after", b"5")]
        message = {401: "unauthorized", 403: "forbidden", 503: "authentication backend unavailable"}[status]
        await responder.respond(status, headers, msgspec.json.encode({"error": message}))
        return False
