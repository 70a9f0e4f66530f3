"""Bearer tokens checked by the Kubernetes apiserver: TokenReview (audience-bound), then optionally a
SubjectAccessReview for the reviewed user. The adapter's own credentials are the pod's ServiceAccount token and CA
(re-read on every call: kubelet rotates the token)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import trio

from kmcp.adapter.auth_client import FetchError, fetch
from kmcp.adapter.auth_jwt import TokenInvalid
from kmcp.adapter.settings import AuthSettings


@dataclass(frozen=True)
class KubeUser:
    username: str
    uid: str
    groups: tuple[str, ...]
    extra: dict[str, list[str]]


class NotAuthorized(Exception):
    """The token is valid but its user may not use this server (403)."""


class KubeReviewer:
    def __init__(self, auth: AuthSettings) -> None:
        self.auth = auth

    async def _post(self, path: str, document: dict[str, object]) -> dict[str, object]:
        token = (await trio.Path(self.auth.kube_token_file).read_text()).strip()
        response = await fetch(self.auth.kube_api_url.rstrip("/") + path, method="POST",
                               body=msgspec.json.encode(document), ca_file=self.auth.kube_ca_file or None,
                               headers=[("authorization", f"Bearer {token}"),
                                        ("content-type", "application/json")])
        if response.status not in (200, 201):
            raise FetchError(f"{path}: HTTP {response.status}")
        try:
            result = msgspec.json.decode(response.body)
        except msgspec.DecodeError:
            raise FetchError(f"{path}: not JSON") from None
        if not isinstance(result, dict):
            raise FetchError(f"{path}: not an object")
        return result

    async def review(self, token: str) -> KubeUser:
        spec: dict[str, object] = {"token": token}
        if self.auth.audiences:
            spec["audiences"] = list(self.auth.audiences)
        result = await self._post("/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec})
        status = result.get("status")
        if not isinstance(status, dict) or status.get("authenticated") is not True:
            raise TokenInvalid("token_review_rejected")
        if self.auth.audiences:
            granted = status.get("audiences")
            if not isinstance(granted, list) or not any(a in self.auth.audiences for a in granted):
                raise TokenInvalid("wrong_audience")
        user = status.get("user")
        user = user if isinstance(user, dict) else {}
        extra = user.get("extra")
        return KubeUser(username=str(user.get("username", "")), uid=str(user.get("uid", "")),
                        groups=tuple(str(g) for g in user.get("groups") or []),
                        extra={str(k): [str(v) for v in vs] for k, vs in (extra or {}).items()
                               if isinstance(vs, list)} if isinstance(extra, dict) else {})

    async def authorize(self, user: KubeUser) -> None:
        sar = self.auth.sar
        if sar is None:
            return
        attributes = {"verb": sar.verb, "group": sar.group, "resource": sar.resource, "name": sar.name,
                      "namespace": sar.namespace}
        spec: dict[str, object] = {"resourceAttributes": {k: v for k, v in attributes.items() if v},
                                   "user": user.username, "groups": list(user.groups)}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = user.extra
        result = await self._post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
        status = result.get("status")
        if not isinstance(status, dict) or status.get("allowed") is not True:
            raise NotAuthorized(user.username)
