"""One reconcile of one MCPServer: read the caches, compute what should exist, apply what differs, report.

Level-triggered and idempotent: it never looks at the event that woke it. Spec problems are terminal (they go to
status as Accepted=False and are not retried); API failures raise so the queue retries with back-off. On a converged
cluster it makes no write at all: a child is applied only when the cached object does not already contain what kmcp
would apply, and status is patched only when it would change."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kmcp import kube, render, spec
from kmcp.controller import conditions as cond
from kmcp.controller.events import EventRecorder
from kmcp.controller.informer import Informer, Key
from kmcp.controller.settings import ControllerSettings

Obj = dict[str, Any]
APPLIED_HASH_ANNOTATION = "kmcp.kagent.dev/applied-hash"
CHILD_KINDS = ("ServiceAccount", "Service", "Deployment")  # the namespaced children, owned by the MCPServer
# Held by an MCPServer while a ClusterRoleBinding exists for it: no owner reference can reach a cluster-scoped
# object, so the controller deletes the binding itself and only then lets the MCPServer go, even when it was down
# at the time of the delete.
AUTH_BINDING_FINALIZER = render.AUTH_BINDING_FINALIZER
SERVER_NAMESPACE_LABEL = render.SERVER_NAMESPACE_LABEL
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
log = logging.getLogger("kmcp.controller.reconcile")


def binding_owner(binding: Obj) -> Key | None:
    """The (namespace, name) of the MCPServer an auth ClusterRoleBinding was rendered for, from its labels (a
    cluster-scoped object has no owner reference to say so)."""
    labels = (binding.get("metadata") or {}).get("labels") or {}
    namespace, name = labels.get(SERVER_NAMESPACE_LABEL), labels.get(INSTANCE_LABEL)
    if labels.get(MANAGED_BY_LABEL) != render.MANAGED_BY or not namespace or not name:
        return None
    return str(namespace), str(name)


@dataclass
class Caches:
    servers: Informer
    deployments: Informer
    services: Informer
    service_accounts: Informer
    secrets: Informer
    config_maps: Informer
    auth_bindings: Informer  # ClusterRoleBindings labelled for an MCPServer

    def for_kind(self, kind: str) -> Informer:
        return {"Deployment": self.deployments, "Service": self.services,
                "ServiceAccount": self.service_accounts, "ClusterRoleBinding": self.auth_bindings}[kind]

    def all(self) -> list[Informer]:
        return [self.servers, self.deployments, self.services, self.service_accounts, self.secrets,
                self.config_maps, self.auth_bindings]

    def bindings_of(self, key: Key) -> list[Obj]:
        return self.auth_bindings.owned_by(key)  # indexed by binding_owner (see Manager._build)


class NamespaceTerminating(Exception):
    """The MCPServer's namespace is being deleted: stop, the namespace controller removes everything."""


class ReconcileError(Exception):
    """A retryable failure; ``reason`` becomes the Warning Event's reason."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@contextlib.contextmanager
def failing_as(reason: str, what: str, namespace: str | None = None) -> Iterator[None]:
    """An API call that fails inside becomes a :class:`ReconcileError` (``reason``, ``"{what}: {error}"``) for the
    queue to retry. With ``namespace``, a refusal because that namespace is being deleted (only creates and applies
    get one) becomes :class:`NamespaceTerminating` instead. Answers the caller expects, such as NotFound, are caught
    inside the block."""
    try:
        yield
    except kube.ApiError as exc:
        if namespace is not None and kube.namespace_terminating(exc):
            raise NamespaceTerminating(namespace) from None
        raise ReconcileError(reason, f"{what}: {exc}") from exc


def difference(live: Any, desired: Any, path: str = "") -> str | None:
    """The path of the first field of ``desired`` missing from or different in ``live``, else None.

    The apiserver adds defaults and other managers add fields; neither makes the object differ from what kmcp
    applies (lists must have the same length and match element-wise). Fields kmcp stops setting are caught by the
    applied-hash annotation, which changes with them."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return path or "."
        for key, value in desired.items():
            if key not in live:
                return f"{path}.{key}"
            found = difference(live[key], value, f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return path
        for index, (a, b) in enumerate(zip(live, desired, strict=True)):
            found = difference(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return None if live == desired else path


def contains(live: Any, desired: Any) -> bool:
    """True when ``live`` already holds every field of ``desired`` (see :func:`difference`)."""
    return difference(live, desired) is None


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def with_applied_hash(obj: Obj) -> Obj:
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    out = dict(obj)
    meta = dict(out["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_HASH_ANNOTATION: digest}
    out["metadata"] = meta
    return out


@dataclass(frozen=True)
class References:
    """The Secrets and ConfigMaps an MCPServer references, as the caches hold them."""

    missing: list[str] = field(default_factory=list)    # "Secret name" / "ConfigMap name"
    conflicts: list[str] = field(default_factory=list)  # ConfigMap keys that two of them hold
    digest: str = ""  # of their resourceVersions: rendered into the pod template, so a change rolls the pods

    @property
    def resolved(self) -> bool:
        return not (self.missing or self.conflicts)


def references(server: spec.MCPServer, caches: Caches) -> References:
    """What the caches hold of the Secrets and ConfigMaps ``server`` references."""
    ns = server.metadata.namespace
    dep = server.spec.deployment
    missing: list[str] = []
    conflicts: list[str] = []
    versions: list[tuple[str, str, str]] = []
    for ref in dep.secret_refs:
        obj = caches.secrets.get(ns, ref.name)
        if obj is None:
            missing.append(f"Secret {ref.name}")
        else:
            versions.append(("Secret", ref.name, str(obj["metadata"].get("resourceVersion", ""))))
    seen_keys: dict[str, str] = {}
    for ref in dep.config_map_refs:
        obj = caches.config_maps.get(ns, ref.name)
        if obj is None:
            missing.append(f"ConfigMap {ref.name}")
            continue
        versions.append(("ConfigMap", ref.name, str(obj["metadata"].get("resourceVersion", ""))))
        for data_key in [*(obj.get("data") or {}), *(obj.get("binaryData") or {})]:
            if data_key in seen_keys and seen_keys[data_key] != ref.name:
                conflicts.append(f"key {data_key!r} is in ConfigMaps {seen_keys[data_key]} and {ref.name}")
            seen_keys.setdefault(data_key, ref.name)
    digest = hashlib.sha256(json.dumps(versions).encode()).hexdigest()[:16] if versions else ""
    return References(missing, conflicts, digest)


def deployment_ready(deployment: Obj | None) -> cond.Condition:
    if deployment is None:
        return cond.Condition("Ready", "False", "DeploymentNotFound", "the Deployment does not exist yet")
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    status = deployment.get("status") or {}
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return cond.Condition("Ready", "False", "DeploymentProgressing",
                              f"waiting for the Deployment controller to observe generation {generation}")
    available = cond.find(list(status.get("conditions") or []), "Available")
    if available is not None and available.get("status") == "True":
        return cond.Condition("Ready", "True", "DeploymentReady", "MCPServer deployment is ready")
    detail = (available or {}).get("message") or "the Deployment has no available replicas"
    return cond.Condition("Ready", "False", "DeploymentUnavailable", str(detail))


@dataclass(frozen=True)
class Observed:
    """What one reconcile found and did, all that an MCPServer's status is computed from. ``problems`` not empty: the
    spec is not accepted and nothing else was looked at. Otherwise the references were resolved and, when none was
    missing, the children applied: ``apply_error`` says why they were not, else ``deployment`` is the Deployment as
    the apply left it."""

    problems: Sequence[spec.Problem] = ()
    url: str = ""
    refs: References = References()
    apply_error: ReconcileError | None = None
    deployment: Obj | None = None


NOT_ACCEPTED = "the spec is not accepted"
REFS_NOT_RESOLVED = "waiting for the referenced objects"


def server_conditions(observed: Observed) -> list[cond.Condition]:
    """Accepted, ResolvedRefs, Programmed, Ready: each step's condition, and the later ones held back by the first
    that did not pass."""
    if observed.problems:
        message = "; ".join(str(p) for p in observed.problems)
        return [cond.Condition("Accepted", "False", observed.problems[0].reason, message),
                cond.Condition("ResolvedRefs", "Unknown", "NotAccepted", NOT_ACCEPTED),
                cond.Condition("Programmed", "False", "NotAccepted", NOT_ACCEPTED),
                cond.Condition("Ready", "False", "NotAccepted", NOT_ACCEPTED)]
    accepted = cond.Condition("Accepted", "True", "Accepted", "the spec is valid")
    missing, conflicts = observed.refs.missing, observed.refs.conflicts
    if not observed.refs.resolved:
        message = (f"not found: {', '.join(missing)}" if missing else "") + \
            ("; " if missing and conflicts else "") + "; ".join(conflicts)
        return [accepted, cond.Condition("ResolvedRefs", "False", "RefNotFound" if missing else "ConflictingKeys",
                                         message),
                cond.Condition("Programmed", "False", "RefsNotResolved", REFS_NOT_RESOLVED),
                cond.Condition("Ready", "False", "RefsNotResolved", REFS_NOT_RESOLVED)]
    resolved = cond.Condition("ResolvedRefs", "True", "ResolvedRefs", "every referenced Secret and ConfigMap exists")
    if observed.apply_error is not None:
        return [accepted, resolved,
                cond.Condition("Programmed", "False", observed.apply_error.reason, str(observed.apply_error)),
                cond.Condition("Ready", "False", "NotProgrammed", "the children are not applied")]
    programmed = cond.Condition("Programmed", "True", "Programmed",
                                "the Deployment, Service and ServiceAccount are applied")
    return [accepted, resolved, programmed, deployment_ready(observed.deployment)]


def server_status(obj: Obj, observed: Observed, now: str) -> Obj:
    """The status the MCPServer ``obj`` should have after a reconcile that observed ``observed``: a pure function, so
    it is tested without an apiserver. Conditions keep their lastTransitionTime unless their status changes; the
    URL of a spec no longer accepted stays what it was."""
    generation = int(obj["metadata"].get("generation") or 0)
    before = obj.get("status") or {}
    conditions = cond.set_conditions(list(before.get("conditions") or []), server_conditions(observed), generation,
                                     now)
    status: Obj = {"observedGeneration": generation, "conditions": conditions}
    url = observed.url or str(before.get("url") or "")
    if url:
        status["url"] = url
    return status


def decode(obj: Obj, kube_version: tuple[int, int] | None = None) -> tuple[spec.MCPServer | None, list[spec.Problem]]:
    """The MCPServer as Structs and what keeps kmcp from running it on an apiserver of ``kube_version``; no server
    when it does not even decode."""
    try:
        server = spec.decode_mcpserver(obj)
        return server, spec.semantic_problems(server, kube_version)
    except spec.SpecError as exc:
        return None, exc.problems


class Reconciler:
    def __init__(self, client: kube.Kube, caches: Caches, settings: ControllerSettings, identity: str,
                 kube_version: tuple[int, int] | None = None) -> None:
        self.client = client
        self.kube_version = kube_version  # the apiserver's (major, minor): which env var names it takes
        self.caches = caches
        self.settings = settings
        self.identity = identity
        self.events = EventRecorder(client, identity, series_interval=settings.event_series_interval)
        # (plural, namespace, name) -> (applied hash, resourceVersion the apply returned)
        self._applied: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._status_written: dict[Key, str] = {}  # MCPServer -> resourceVersion its last status patch returned

    async def reconcile(self, key: Key) -> None:
        try:
            await self._reconcile(key)
        except NamespaceTerminating:
            log.debug("namespace is being deleted", extra={"kv": {"namespace": key[0], "name": key[1]}})

    async def _reconcile(self, key: Key) -> None:
        obj = self.caches.servers.get(*key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            await self._forget(key, obj)
            return
        server, problems = decode(obj, self.kube_version)
        observed = Observed(problems)
        error: ReconcileError | None = None
        if server is not None and render.render_auth_binding(server, self.settings.render) is None:
            # auth switched off (or never on): no binding may stay behind. An undecodable spec leaves the running
            # adapter, and the binding it may rely on, as they are.
            try:
                await self._release_auth_binding(key, obj)
            except ReconcileError as exc:
                error = exc
        if server is not None and not problems:
            refs = references(server, self.caches)
            observed = Observed(url=render.server_url(server, self.settings.render), refs=refs)
            if refs.resolved:
                try:
                    observed = replace(observed, deployment=await self._apply_children(server, obj, refs.digest))
                except ReconcileError as exc:
                    error = exc
                    observed = replace(observed, apply_error=exc)
        await self._report(obj, server_status(obj, observed, cond.now_rfc3339()))
        if error is not None:
            raise error

    async def _forget(self, key: Key, obj: Obj | None) -> None:
        """Gone or going: the garbage collector removes the namespaced children through their owner references;
        the auth binding is ours to delete (an orphan too, should the finalizer have been stripped)."""
        namespace, name = key
        for kind in CHILD_KINDS:  # each named after the server
            self._applied.pop((self.caches.for_kind(kind).resource.plural, namespace, name), None)
        self._status_written.pop(key, None)
        await self._release_auth_binding(key, obj)

    async def _report(self, obj: Obj, status: Obj) -> None:
        """Write the status if it changed, and sum up what changed in one Event."""
        before = obj.get("status") or {}
        if any(before.get(k) != v for k, v in status.items()):
            await self._write_status(obj, status)
        summary = cond.summarize(cond.changed(list(before.get("conditions") or []), status["conditions"]))
        if summary is not None:
            self.event(obj, summary.type, summary.reason, summary.note)

    async def _write_status(self, obj: Obj, status: Obj) -> None:
        meta = obj["metadata"]
        with failing_as("StatusUpdateFailed", "could not write status", str(meta.get("namespace"))):
            try:
                written = await self.client.patch_status(kube.MCPSERVERS, meta["name"], meta.get("namespace"),
                                                         status)
            except kube.NotFound:
                return
        self.caches.servers.put_answer(written)
        self._status_written[(str(meta.get("namespace") or ""), str(meta["name"]))] = _rv(written)

    def is_echo(self, plural: str, obj: Obj) -> bool:
        """Whether a watch event only brings back this controller's own last write of ``obj`` (the resourceVersion
        its apply or status patch returned): reconciling on it would recompute what that write came from. Skipping
        these halves the reconciles of a mass creation."""
        meta = obj.get("metadata") or {}
        rv = _rv(obj)
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if plural == kube.MCPSERVERS.plural:
            return bool(rv) and self._status_written.get(key) == rv
        applied = self._applied.get((plural, *key))
        return bool(rv) and applied is not None and applied[1] == rv

    async def _apply_children(self, server: spec.MCPServer, obj: Obj, refs_digest: str) -> Obj | None:
        """Apply each rendered child that differs from the cache; returns the Deployment as now known."""
        deployment: Obj | None = None
        if server.spec.transport_type == "stdio":  # before the pods, so they start with the key
            await self._ensure_session_key(server)
        rendered = render.render(server, self.settings.render, refs_digest)
        if any(o["kind"] == "ClusterRoleBinding" for o in rendered):
            await self._hold_finalizer(obj)  # before the binding exists, so it can never outlive the MCPServer
        for desired in rendered:
            child = with_applied_hash(desired)
            meta = child["metadata"]
            cache = self.caches.for_kind(child["kind"])
            child_ns = str(meta.get("namespace") or "")  # "" for the cluster-scoped binding
            live = cache.get(child_ns, meta["name"])
            applied_key = (cache.resource.plural, server.metadata.namespace or "", meta["name"])
            digest = meta["annotations"][APPLIED_HASH_ANNOTATION]
            live_rv = _rv(live or {})
            # List items carry no apiVersion/kind: compare the rest.
            drift = None if live is None or self._applied.get(applied_key) == (digest, live_rv) \
                else difference(live, {k: v for k, v in child.items() if k not in ("apiVersion", "kind")})
            if live is not None and drift is None:
                result = live
            else:
                if live is not None and child["kind"] == "ClusterRoleBinding" and \
                        live.get("roleRef") != child["roleRef"]:
                    await self._delete_for_new_role_ref(live, cache)
                if live is not None:
                    log.debug("child differs", extra={"kv": {"kind": child["kind"], "namespace": child_ns,
                                                             "name": meta["name"], "field": drift}})
                with failing_as("ApplyFailed", f"could not apply {child['kind']} {meta['name']}", child_ns):
                    result = await self.client.apply(child, resource=cache.resource)
                self._applied[applied_key] = (digest, _rv(result))
                cache.put_answer(result)
                log.info("applied", extra={"kv": {"kind": child["kind"], "namespace": child_ns,
                                                  "name": meta["name"]}})
            if child["kind"] == "Deployment":
                deployment = result
        await self._prune(server, {(o["kind"], o["metadata"]["name"]) for o in rendered})
        return deployment

    async def _delete_for_new_role_ref(self, live: Obj, cache: Informer) -> None:
        """A binding's roleRef cannot change (the apiserver refuses the apply): one that refers to another
        ClusterRole, e.g. after the release was renamed and so its adapter-auth role, is deleted to be created
        anew with the right one."""
        name = str(live["metadata"]["name"])
        with failing_as("ApplyFailed", f"could not replace ClusterRoleBinding {name}"), \
                contextlib.suppress(kube.NotFound):
            await self.client.delete(cache.resource, name)
        cache.discard(("", name))
        log.info("deleted for a new roleRef", extra={"kv": {"kind": "ClusterRoleBinding", "name": name,
                                                           "role": (live.get("roleRef") or {}).get("name")}})

    async def _ensure_session_key(self, server: spec.MCPServer) -> None:
        """Create the Secret holding the key the adapter replicas sign session ids with, once: a random key
        cannot be rendered (rendering is pure) and must not change under running pods, so it is created when
        absent and never applied again. Owned by the MCPServer, so it goes with it."""
        namespace, name = server.metadata.namespace, render.session_key_secret_name(server)
        if self.caches.secrets.get(namespace, name) is not None:
            return
        secret = render.render_session_key_secret(server, secrets.token_urlsafe(32))
        with failing_as("ApplyFailed", f"could not create Secret {name}", namespace):
            try:
                created = await self.client.create(kube.SECRETS, secret, namespace)
            except kube.AlreadyExists:
                return  # the cache is behind: the key exists, and it stays as it is
        self.caches.secrets.put_answer({"metadata": created["metadata"]})  # the cache is metadata-only
        log.info("created", extra={"kv": {"kind": "Secret", "namespace": namespace, "name": name}})

    async def _hold_finalizer(self, obj: Obj) -> None:
        finalizers = list((obj.get("metadata") or {}).get("finalizers") or [])
        if AUTH_BINDING_FINALIZER not in finalizers:
            await self._set_finalizers(obj, [*finalizers, AUTH_BINDING_FINALIZER])

    async def _release_auth_binding(self, key: Key, obj: Obj | None) -> None:
        """Delete the ClusterRoleBinding(s) labelled for this MCPServer, then drop its finalizer. Idempotent: with
        nothing to delete and no finalizer it makes no call at all."""
        await self._delete_auth_bindings(key, "AuthBindingDeleteFailed", "deleted auth binding")
        if obj is None:
            return
        finalizers = list((obj.get("metadata") or {}).get("finalizers") or [])
        if AUTH_BINDING_FINALIZER in finalizers:
            await self._set_finalizers(obj, [f for f in finalizers if f != AUTH_BINDING_FINALIZER])

    async def _set_finalizers(self, obj: Obj, finalizers: list[str]) -> None:
        """Merge patch conditional on the cached resourceVersion: another writer's finalizer is never lost (a stale
        cache gets 409 and the queue retries)."""
        meta = obj["metadata"]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}}
        with failing_as("FinalizerUpdateFailed", "could not update finalizers"):
            try:
                written = await self.client.patch(kube.MCPSERVERS, meta["name"], meta.get("namespace"), patch)
            except kube.NotFound:
                return
        # Cache what was written unless the watch already brought something newer (or the DELETED event).
        key = (str(meta.get("namespace") or ""), str(meta["name"]))
        if self.caches.servers.cached_version(key) == meta.get("resourceVersion"):
            self.caches.servers.put(written)

    async def _prune(self, server: spec.MCPServer, wanted: set[tuple[str, str]]) -> None:
        """Delete children this MCPServer controls that it no longer renders (e.g. its ServiceAccount once the
        spec names its own with serviceAccountName)."""
        uid = server.metadata.uid
        if not uid:
            return
        for kind in CHILD_KINDS:
            cache = self.caches.for_kind(kind)
            for obj in cache.owned_by(uid):
                meta = obj.get("metadata") or {}
                if meta.get("namespace") != server.metadata.namespace or (kind, meta.get("name")) in wanted:
                    continue
                with failing_as("PruneFailed", f"could not delete {kind} {meta['name']}"), \
                        contextlib.suppress(kube.NotFound):
                    await self.client.delete(cache.resource, str(meta["name"]), server.metadata.namespace)
                cache.discard((server.metadata.namespace, str(meta["name"])))
                log.info("pruned", extra={"kv": {"kind": kind, "namespace": server.metadata.namespace,
                                                 "name": meta["name"]}})
        # Auth bindings have no owner reference: the labels say whose they are. One under another name than the
        # rendered one (e.g. the earlier kmcp-auth-<namespace>-<name> naming) goes.
        await self._delete_auth_bindings((server.metadata.namespace or "", server.metadata.name), "PruneFailed",
                                         "pruned", keep={name for kind, name in wanted if kind == "ClusterRoleBinding"})

    async def _delete_auth_bindings(self, key: Key, reason: str, message: str, keep: Collection[str] = ()) -> None:
        """Delete the ClusterRoleBindings labelled for the MCPServer ``key``, but those named in ``keep``; log each
        with ``message``. A failure is a ReconcileError with ``reason``."""
        for binding in self.caches.bindings_of(key):
            name = str(binding["metadata"]["name"])
            if name in keep:
                continue
            with failing_as(reason, f"could not delete ClusterRoleBinding {name}"), contextlib.suppress(kube.NotFound):
                await self.client.delete(kube.CLUSTER_ROLE_BINDINGS, name)
            self.caches.auth_bindings.discard(("", name))
            self._applied.pop((kube.CLUSTER_ROLE_BINDINGS.plural, key[0], name), None)
            log.info(message, extra={"kv": {"kind": "ClusterRoleBinding", "namespace": key[0], "name": key[1],
                                            "binding": name}})

    def event(self, obj: Obj, type_: str, reason: str, note: str, action: str = "Reconcile") -> None:
        """An Event about the MCPServer; queued, aggregated and written by :class:`EventRecorder`."""
        self.events.record(obj, type_, reason, note, action)
