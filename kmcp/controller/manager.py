"""Wires the machinery together: probes and metrics servers always run; informers, the work queue and workers run
only while this instance leads (or always, without leader election)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Any

import trio

from kmcp import kube
from kmcp.controller.informer import Informer, Key, controller_uid
from kmcp.controller.leader import LeaderElector
from kmcp.controller.metrics import ControllerMetrics
from kmcp.controller.metrics_server import serve_metrics
from kmcp.controller.probes import serve_probes
from kmcp.controller.queue import WorkQueue
from kmcp.controller.reconcile import SERVER_NAMESPACE_LABEL, Caches, ReconcileError, Reconciler, binding_owner
from kmcp.controller.settings import ControllerSettings
from kmcp.render import MANAGED_BY

Obj = dict[str, Any]
CHILD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
REFS_INDEX = "refs"  # MCPServers by the Secrets and ConfigMaps they reference
log = logging.getLogger("kmcp.controller")


class Manager:
    def __init__(self, settings: ControllerSettings, client: kube.Kube) -> None:
        self.settings = settings
        self.client = client
        self.identity = settings.identity or "kmcp"
        self.queue: WorkQueue[Key] = WorkQueue(backoff_base=settings.backoff_base, backoff_max=settings.backoff_max)
        self.metrics = ControllerMetrics(api_requests=lambda: dict(client.counter.counts))
        self.metrics.queue_depth.sampler = lambda: float(self.queue.depth)
        self.metrics.leader.set(0.0 if settings.leader_elect else 1.0)
        self.standby = settings.leader_elect
        self.synced = False
        self.caches: Caches | None = None
        self.reconciler: Reconciler | None = None
        self._during: dict[Key, list[tuple[str, Obj]]] = {}  # events that came while the key was reconciled

    def ready(self) -> bool:
        return self.standby or self.synced

    # -- wiring
    def _informer(self, resource: kube.Resource, *, label_selector: str | None = None,
                  metadata_only: bool = False, owner_of: Callable[[Obj], Hashable | None] = controller_uid,
                  indexes: Mapping[str, Callable[[Obj], Collection[Hashable]]] | None = None) -> Informer:
        def restarted(cause: str) -> None:
            self.metrics.watch_restarts.inc(resource=resource.plural, cause=cause)

        return Informer(self.client, resource, namespace=self.settings.namespace, label_selector=label_selector,
                        metadata_only=metadata_only, watch_timeout_seconds=self.settings.watch_timeout_seconds,
                        on_restart=restarted, owner_of=owner_of, indexes=indexes)

    def _build(self) -> Caches:
        caches = Caches(
            servers=self._informer(kube.MCPSERVERS, indexes={REFS_INDEX: referenced}),
            deployments=self._informer(kube.DEPLOYMENTS, label_selector=CHILD_SELECTOR),
            services=self._informer(kube.SERVICES, label_selector=CHILD_SELECTOR),
            service_accounts=self._informer(kube.SERVICE_ACCOUNTS, label_selector=CHILD_SELECTOR),
            secrets=self._informer(kube.SECRETS, metadata_only=True),
            config_maps=self._informer(kube.CONFIG_MAPS),
            auth_bindings=self._informer(kube.CLUSTER_ROLE_BINDINGS, label_selector=self._binding_selector(),
                                         owner_of=binding_owner),
        )
        caches.servers.add_handler(self._on_server)
        for child in (caches.deployments, caches.services, caches.service_accounts):
            child.add_handler(self._on_child_of(child.resource.plural))
        caches.auth_bindings.add_handler(self._on_auth_binding)
        caches.secrets.add_handler(self._on_secret)
        caches.config_maps.add_handler(lambda _kind, obj: self._on_ref("configmap", obj))
        return caches

    def _changed(self, key: Key, kind: str, plural: str, obj: Obj) -> None:
        """A watch event about ``obj`` (of ``plural``) concerns the MCPServer ``key``: queue it, unless the event only
        brings back this controller's own last write. The echo of a write can arrive before the write's answer has
        told the reconciler its resourceVersion: an event for a key being reconciled is therefore judged when that
        reconcile ends (the worker calls :meth:`_settle`); judged at once, most new MCPServers reconciled twice."""
        if kind != "DELETED" and self.reconciler is not None:
            if self.reconciler.is_echo(plural, obj):
                return
            if self.queue.processing(key):
                self._during.setdefault(key, []).append((plural, obj))
                return
        self.queue.add(key)

    def _settle(self, key: Key) -> None:
        """The reconcile of ``key`` ended: queue it again if an event that came meanwhile was not its own write."""
        during = self._during.pop(key, ())
        if self.reconciler is not None and any(not self.reconciler.is_echo(p, o) for p, o in during):
            self.queue.add(key)

    def _on_server(self, kind: str, obj: Obj) -> None:
        self._changed(_key(obj), kind, kube.MCPSERVERS.plural, obj)

    def _on_child_of(self, plural: str) -> Callable[[str, Obj], None]:
        def on_child(kind: str, obj: Obj) -> None:
            self._on_child(kind, plural, obj)
        return on_child

    def _on_child(self, kind: str, plural: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "MCPServer" and str(ref.get("apiVersion", "")).startswith("kagent.dev/") \
                    and ref.get("controller"):
                self._changed((str(meta.get("namespace") or ""), str(ref.get("name"))), kind, plural, obj)

    def _binding_selector(self) -> str:
        """Auth ClusterRoleBindings are cluster-scoped: a controller limited to one namespace selects only the
        ones made for MCPServers in it, so it never touches (or sweeps) another controller's."""
        scope = f"={self.settings.namespace}" if self.settings.namespace else ""
        return f"{CHILD_SELECTOR},{SERVER_NAMESPACE_LABEL}{scope}"

    def _on_auth_binding(self, _kind: str, obj: Obj) -> None:
        # Its MCPServer reconciles: that re-applies a changed or deleted binding, and deletes one whose MCPServer
        # is gone (at start-up every existing binding arrives here, so orphans left while down are swept too).
        owner = binding_owner(obj)
        if owner is not None:
            self.queue.add(owner)

    def _on_secret(self, kind: str, obj: Obj) -> None:
        self._on_ref("secret", obj)
        if kind == "DELETED":  # e.g. the session-key Secret an MCPServer owns: its owner creates it again now
            self._on_child(kind, kube.SECRETS.plural, obj)

    def _on_ref(self, which: str, obj: Obj) -> None:
        """A Secret/ConfigMap changed: every MCPServer in its namespace that references it reconciles again. Found
        through an index, not by scanning every MCPServer: each MCPServer's own session-key Secret is an event
        too, and a scan made a mass creation O(N^2) (15% of the CPU at N=2,000)."""
        if self.caches is None:
            return
        namespace, name = _key(obj)
        for server in self.caches.servers.by_index(REFS_INDEX, (which, namespace, name)):
            self.queue.add(_key(server))

    # -- running
    async def _worker(self, key: Key) -> None:
        assert self.reconciler is not None
        start = time.perf_counter()
        try:
            await self.reconciler.reconcile(key)
        except Exception as exc:
            reason = exc.reason if isinstance(exc, ReconcileError) else "ReconcileError"
            delay = self.queue.retry(key)
            self.metrics.reconcile_total.inc(controller="mcpserver", result="error")
            self.metrics.reconcile_errors.inc(controller="mcpserver")
            log.error("reconcile failed", exc_info=not isinstance(exc, ReconcileError | kube.ApiError),
                      extra={"kv": {"namespace": key[0], "name": key[1], "reason": reason, "error": str(exc),
                                    "retry_in": delay}})
            obj = self.caches.servers.get(*key) if self.caches else None
            if obj is not None:
                self.reconciler.event(obj, "Warning", reason, str(exc))
        else:
            self.queue.forget(key)
            self.metrics.reconcile_total.inc(controller="mcpserver", result="success")
            log.debug("reconciled", extra={"kv": {"namespace": key[0], "name": key[1]}})
        finally:
            self._settle(key)
            self.metrics.reconcile_time.observe(time.perf_counter() - start, controller="mcpserver")

    async def _resync(self) -> None:
        while True:
            await trio.sleep(self.settings.resync_period)
            assert self.caches is not None
            log.debug("resync", extra={"kv": {"servers": len(self.caches.servers)}})
            for key in self.caches.servers.cached_keys():
                self.queue.add(key)

    async def lead(self) -> None:
        """Run informers, workers and the periodic resync until cancelled."""
        self.standby = False
        self.metrics.leader.set(1.0)
        self.caches = caches = self._build()
        self.reconciler = reconciler = Reconciler(self.client, caches, self.settings, self.identity,
                                                  await self._kube_version())
        self.metrics.events_dropped.sampler = lambda: float(reconciler.events.dropped)
        async with trio.open_nursery() as nursery:
            await nursery.start(reconciler.events.run)
            for informer in caches.all():
                nursery.start_soon(informer.run)
            for informer in caches.all():
                await informer.synced.wait()
            self.synced = True
            log.info("caches synced", extra={"kv": {"servers": len(caches.servers),
                                                    "namespace": self.settings.namespace or "(all)"}})
            await nursery.start(self.queue.run_workers, self._worker, self.settings.max_concurrent_reconciles)
            nursery.start_soon(self._resync)

    async def _kube_version(self) -> tuple[int, int] | None:
        """The apiserver's version, read once: a rule that changed between versions (env var names) follows the
        apiserver that will validate the Deployment. Unknown, the oldest rule is kept (every version accepts it)."""
        try:
            version = await self.client.server_version()
        except (kube.ApiError, ValueError) as error:
            log.warning("could not read the apiserver version, checking env var names by the pre-1.32 rule",
                        extra={"kv": {"error": str(error)}})
            return (1, 0)
        log.info("apiserver version", extra={"kv": {"major": version[0], "minor": version[1]}})
        return version

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        s = self.settings
        async with trio.open_nursery() as nursery:
            if s.health_probe_address is not None:
                port = await nursery.start(serve_probes, self.ready, *s.health_probe_address)
                log.info("serving probes", extra={"kv": {"port": port}})
            if s.metrics_address is not None:
                host, wanted = s.metrics_address
                port = await nursery.start(lambda task_status: serve_metrics(
                    self.metrics.render, host, wanted, secure=s.metrics_secure, client=self.client,
                    task_status=task_status))
                log.info("serving metrics", extra={"kv": {"port": port, "secure": s.metrics_secure}})
            task_status.started()
            if s.leader_elect:
                elector = LeaderElector(self.client, s.leader_election_namespace, s.lease_name, self.identity,
                                        lease_duration=s.lease_duration, renew_deadline=s.renew_deadline,
                                        retry_period=s.retry_period)
                try:
                    await elector.run(self.lead)
                finally:
                    self.metrics.leader.set(0.0)
            else:
                await self.lead()
            nursery.cancel_scope.cancel()


def referenced(server: Obj) -> list[tuple[str, str, str]]:
    """("secret" | "configmap", namespace, name) of each object an MCPServer's spec references."""
    namespace = str((server.get("metadata") or {}).get("namespace") or "")
    deployment = (server.get("spec") or {}).get("deployment")
    if not isinstance(deployment, dict):
        return []
    out = []
    for which, field in (("secret", "secretRefs"), ("configmap", "configMapRefs")):
        refs = deployment.get(field)
        for ref in refs if isinstance(refs, list) else ():
            if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                out.append((which, namespace, ref["name"]))
    return out


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
