"""List + watch into a local cache, like client-go's reflector + store.

The cache is the controller's view of the world: reconcile reads it, never the triggering event. A watch resumes
from the last resourceVersion it saw (bookmarks keep that fresh); 410 Gone means the version was compacted away, so
the informer relists and reports what changed while it was not looking. Other failures back off and retry."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Hashable, Mapping
from contextlib import aclosing
from typing import Any, NamedTuple

import msgspec
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
    the larger part of an applied object; controller-runtime's caches strip them too)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _load(data: bytes) -> Obj:
    obj: Obj = _decode(data)
    return obj


class _Entry(NamedTuple):
    """One cached object, kept as its JSON: a Deployment's dicts and strings take several times the memory of its
    JSON (RSS goal < 256 MiB at 10,000 MCPServers with four cached objects each). ``get`` decodes a fresh copy,
    so no caller can change the cache by changing what it was given. The resourceVersion and index values are
    kept decoded: echo checks, relist diffs and unindexing need no decode."""

    data: bytes
    resource_version: str
    owner: Hashable | None
    indexed: tuple[tuple[str, tuple[Hashable, ...]], ...]


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
        self.store: dict[Key, _Entry] = {}  # write through put()/discard(), which keep the indexes
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
        entry = self.store.get((namespace, name))
        return None if entry is None else _load(entry.data)

    def cached_version(self, key: Key) -> str | None:
        """The cached object's resourceVersion, without decoding it; None when not cached."""
        entry = self.store.get(key)
        return None if entry is None else entry.resource_version

    def __len__(self) -> int:
        return len(self.store)

    def cached_keys(self) -> list[Key]:
        return list(self.store)

    def items(self) -> list[Obj]:
        return [_load(entry.data) for entry in self.store.values()]

    def owned_by(self, owner: Hashable) -> list[Obj]:
        """The cached objects ``owner_of`` attributes to ``owner``: O(children), not O(cache)."""
        return [_load(self.store[k].data) for k in self._owned.get(owner, ()) if k in self.store]

    def by_index(self, index: str, value: Hashable) -> list[Obj]:
        """The cached objects the ``index`` function files under ``value``: O(matches), not O(cache)."""
        return [_load(self.store[k].data) for k in self._indexed[index].get(value, ()) if k in self.store]

    def put(self, obj: Obj) -> Obj:
        """Cache ``obj`` (trimmed), e.g. what an apply returned, ahead of its watch event."""
        key = key_of(obj)
        self._unindex(key)
        return self._add(self.store, self._owned, self._indexed, key, obj)

    def put_answer(self, obj: Obj) -> None:
        """Cache what a write of this controller returned, unless the watch has already brought a newer version: the
        watch event of someone else's later change can arrive before the answer to our write, and caching the
        answer over it would keep the older object until the next event or relist (seen: a spec change applied
        right after a status patch went unreconciled). resourceVersions are compared as the integers etcd makes
        them; one that is not an integer is taken as newer."""
        cached = self.cached_version(key_of(obj))
        answer = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if cached is not None and cached.isdigit() and answer.isdigit() and int(cached) > int(answer):
            return
        self.put(obj)

    def _add(self, store: dict[Key, _Entry], owned: dict[Hashable, set[Key]],
             indexed: dict[str, dict[Hashable, set[Key]]], key: Key, obj: Obj) -> Obj:
        obj = trimmed(obj)
        owner = self.owner_of(obj)
        if owner is not None:
            owned.setdefault(owner, set()).add(key)
        values = tuple((name, tuple(index_of(obj))) for name, index_of in self._index_of.items())
        for name, found in values:
            for value in found:
                indexed[name].setdefault(value, set()).add(key)
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        store[key] = _Entry(_encode(obj), rv, owner, values)
        return obj

    def discard(self, key: Key) -> None:
        self._unindex(key)
        self.store.pop(key, None)

    def _unindex(self, key: Key) -> None:
        old = self.store.get(key)
        if old is None:
            return
        if old.owner is not None:
            _drop(self._owned, old.owner, key)
        for name, found in old.indexed:
            for value in found:
                _drop(self._indexed[name], value, key)

    def _emit(self, kind: str, obj: Obj) -> None:
        for handler in self._handlers:
            handler(kind, obj)

    async def relist(self) -> None:
        """Replace the cache with a fresh list; emit ADDED/MODIFIED/DELETED for the differences."""
        fresh: dict[Key, _Entry] = {}
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
        for key, entry in old.items():
            if key not in fresh:
                self._emit("DELETED", _load(entry.data))
        for key, entry in fresh.items():
            before = old.get(key)
            if before is None:
                self._emit("ADDED", _load(entry.data))
            elif before.resource_version != entry.resource_version:
                self._emit("MODIFIED", _load(entry.data))

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
                if not rv or self.cached_version(key) != rv:
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
