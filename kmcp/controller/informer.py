"""List + watch into a local cache, like client-go's reflector + store.

The cache is the controller's view of the world: reconcile reads it, never the triggering event. A watch resumes
from the last resourceVersion it saw (bookmarks keep that fresh); 410 Gone means the version was compacted away, so
the informer relists and reports what changed while it was not looking. Other failures back off and retry."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable, Collection, Hashable, Mapping
from contextlib import aclosing
from typing import Any

import trio

from kmcp import kube

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
Handler = Callable[[str, Obj], None]  # ("ADDED" | "MODIFIED" | "DELETED", object)

log = logging.getLogger("kmcp.controller.informer")


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def controller_uid(obj: Obj) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def trimmed(obj: Obj) -> Obj:
    """``obj`` as the cache keeps it: without ``metadata.managedFields`` (nothing here reads them, and they are often
    the larger part of an applied object; controller-runtime's caches strip them too), and with its keys and short
    strings interned. Each watch event is decoded on its own, so without interning a thousand Deployments hold a
    thousand copies of every key and label; interned, the cache takes half the memory (RSS goal < 100 MiB at
    N=1000)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    out: Obj = _interned(obj)
    return out


def _interned(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= 64 else value
    if isinstance(value, dict):
        return {sys.intern(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    return value


def _drop(index: dict[Hashable, set[Key]], value: Hashable, key: Key) -> None:
    keys = index.get(value)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[value]


class Informer:
    def __init__(self, client: kube.Kube, resource: kube.Resource, *, namespace: str | None = None,
                 label_selector: str | None = None, metadata_only: bool = False,
                 watch_timeout_seconds: int = 300, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 on_restart: Callable[[str], None] | None = None,
                 owner_of: Callable[[Obj], Hashable | None] = controller_uid,
                 indexes: Mapping[str, Callable[[Obj], Collection[Hashable]]] | None = None) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.metadata_only = metadata_only
        self.watch_timeout_seconds = watch_timeout_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.on_restart = on_restart
        self.store: dict[Key, Obj] = {}  # write through put()/discard(), which keep the owner index
        # owner -> keys (client-go's Indexer, one index): by default the controller owner reference's uid; objects
        # that cannot carry an owner reference (cluster-scoped ones) say who owns them another way, e.g. labels.
        self.owner_of = owner_of
        self._owned: dict[Hashable, set[Key]] = {}
        # More indexes by name (client-go's Indexers): each function gives the values an object is found under.
        self._index_of = dict(indexes or {})
        self._indexed: dict[str, dict[Hashable, set[Key]]] = {name: {} for name in self._index_of}
        self.synced = trio.Event()
        self.resource_version = ""
        self.relists = 0
        self._handlers: list[Handler] = []

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, namespace: str, name: str) -> Obj | None:
        return self.store.get((namespace, name))

    def items(self) -> list[Obj]:
        return list(self.store.values())

    def owned_by(self, owner: Hashable) -> list[Obj]:
        """The cached objects ``owner_of`` attributes to ``owner``: O(children), not O(cache)."""
        return [self.store[k] for k in self._owned.get(owner, ()) if k in self.store]

    def by_index(self, index: str, value: Hashable) -> list[Obj]:
        """The cached objects the ``index`` function files under ``value``: O(matches), not O(cache)."""
        return [self.store[k] for k in self._indexed[index].get(value, ()) if k in self.store]

    def put(self, obj: Obj) -> Obj:
        """Cache ``obj`` (trimmed), e.g. what an apply returned, ahead of its watch event."""
        key = key_of(obj)
        self._unindex(key)
        return self._add(self.store, self._owned, self._indexed, key, obj)

    def _add(self, store: dict[Key, Obj], owned: dict[Hashable, set[Key]],
             indexed: dict[str, dict[Hashable, set[Key]]], key: Key, obj: Obj) -> Obj:
        store[key] = obj = trimmed(obj)
        owner = self.owner_of(obj)
        if owner is not None:
            owned.setdefault(owner, set()).add(key)
        for name, index_of in self._index_of.items():
            for value in index_of(obj):
                indexed[name].setdefault(value, set()).add(key)
        return obj

    def discard(self, key: Key) -> None:
        self._unindex(key)
        self.store.pop(key, None)

    def _unindex(self, key: Key) -> None:
        old = self.store.get(key)
        if old is None:
            return
        owner = self.owner_of(old)
        if owner is not None:
            _drop(self._owned, owner, key)
        for name, index_of in self._index_of.items():
            for value in index_of(old):
                _drop(self._indexed[name], value, key)

    def _emit(self, kind: str, obj: Obj) -> None:
        for handler in self._handlers:
            handler(kind, obj)

    async def relist(self) -> None:
        """Replace the cache with a fresh list; emit ADDED/MODIFIED/DELETED for the differences."""
        fresh: dict[Key, Obj] = {}
        owned: dict[Hashable, set[Key]] = {}
        indexed: dict[str, dict[Hashable, set[Key]]] = {name: {} for name in self._index_of}
        resource_version = ""
        # Page by page, each trimmed as it comes (held at once, the raw pages of 10,000 applied Deployments, with
        # their managedFields, are several times the trimmed cache), into a new cache that replaces the old one at
        # the end: a reconcile meanwhile sees the old cache whole, never half of the new one.
        async with aclosing(self.client.list_pages(self.resource, self.namespace, label_selector=self.label_selector,
                                                   metadata_only=self.metadata_only)) as pages:
            async for page in pages:
                for item in page.get("items") or []:
                    self._add(fresh, owned, indexed, key_of(item), item)
                resource_version = str((page.get("metadata") or {}).get("resourceVersion") or "")
        old = self.store
        self.store, self._owned, self._indexed = fresh, owned, indexed
        self.resource_version = resource_version
        self.relists += 1
        for key, obj in old.items():
            if key not in fresh:
                self._emit("DELETED", obj)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._emit("ADDED", obj)
            elif (before.get("metadata") or {}).get("resourceVersion") != (obj.get("metadata") or {}).get(
                    "resourceVersion"):
                self._emit("MODIFIED", obj)

    async def watch_once(self) -> None:
        """One watch call from the current resourceVersion, applied to the cache until the server ends it."""
        events = self.client.watch(self.resource, self.namespace, resource_version=self.resource_version,
                                   label_selector=self.label_selector, timeout_seconds=self.watch_timeout_seconds,
                                   metadata_only=self.metadata_only)
        async with aclosing(events):
            await self._consume(events)

    async def _consume(self, events: AsyncIterator[kube.WatchEvent]) -> None:
        async for event in events:
            rv = str((event.object.get("metadata") or {}).get("resourceVersion") or "")
            if event.type == "BOOKMARK":
                self.resource_version = rv or self.resource_version
                continue
            key = key_of(event.object)
            if event.type == "DELETED":
                self.discard(key)
            elif event.type in ("ADDED", "MODIFIED"):
                cached = self.store.get(key)
                if cached is None or not rv or cached["metadata"].get("resourceVersion") != rv:
                    self.put(event.object)  # else: the cache has it already (the controller put its own write)
            else:
                continue
            if rv:
                self.resource_version = rv
            self._emit(event.type, event.object)

    def _restarted(self, cause: str) -> None:
        if self.on_restart is not None:
            self.on_restart(cause)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """List, then watch forever; ``task_status.started()`` after the first successful list (cache synced)."""
        failures = 0
        need_list = True
        started = False
        while True:
            try:
                if need_list:
                    await self.relist()
                    need_list = False
                    if not started:
                        self.synced.set()
                        task_status.started()
                        started = True
                await self.watch_once()
                failures = 0
                self._restarted("timeout")
            except kube.Gone:
                log.info("watch expired, relisting", extra={"kv": {"resource": self.resource.plural}})
                need_list = True
                self._restarted("gone")
            except (kube.ApiError, OSError, ValueError) as error:
                failures += 1
                delay = min(self.backoff_max, self.backoff_base * 2 ** min(failures - 1, 10))
                log.warning("list/watch failed, retrying", extra={"kv": {
                    "resource": self.resource.plural, "error": str(error) or type(error).__name__,
                    "retry_in": delay}})
                self._restarted("error")
                # A watch that failed mid-stream may have lost events: relist to be sure.
                need_list = True
                await trio.sleep(delay)
