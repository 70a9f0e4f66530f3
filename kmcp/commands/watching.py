"""Waiting on objects with a watch instead of a poll: what the CLI's waits (deploy, install, uninstall)
share.

:class:`Watched` lists the objects of one resource (one object by name, or all of them), then follows a watch from
the list's resourceVersion in a background task: a command learns of a change as soon as the apiserver reports it
and makes no request while nothing changes (a 0.5 s poll made two a second, and saw a change up to 0.5 s late).
A watch that ends (timeoutSeconds) resumes from the last resourceVersion, 410 Gone relists, and a watch the
apiserver refuses or breaks is replaced by polling, so how the wait is informed never makes it fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import trio

from kmcp import kube

Obj = dict[str, Any]
Key = tuple[str, str]
POLL_FALLBACK = 1.0  # seconds between polls when the apiserver will not watch for this client
WATCH_TIMEOUT = 240  # seconds one watch request lasts before it is resumed


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Watched:
    """The objects of ``resource`` in ``namespace`` (all namespaces: None), only the one called ``name`` when
    given, as the apiserver last reported them. Run :meth:`run` in a nursery (:func:`watching` does)."""

    def __init__(self, client: kube.Kube, resource: kube.Resource, namespace: str | None = None,
                 name: str | None = None, labels: str | None = None) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace if resource.namespaced else None
        self.name = name
        self.labels = labels  # a label selector: only the objects it selects
        self.items: dict[Key, Obj] = {}
        self._changed = trio.Event()
        self._get_only = False  # may get the object but not list it: polled by name
        self._poll = False  # may not watch: polled

    @property
    def selector(self) -> str | None:
        return f"metadata.name={self.name}" if self.name else None

    def get(self) -> Obj | None:
        """The one object being watched (by name), or None when it does not exist (any more)."""
        return next(iter(self.items.values()), None)

    async def changed(self, within: float) -> None:
        """Return at the next change, or after ``within`` seconds without one (so a caller can also show time
        passing)."""
        with trio.move_on_after(within):
            await self._changed.wait()
        self._changed = trio.Event()

    def _set(self, items: dict[Key, Obj]) -> None:
        if items != self.items:
            self.items = items
            self._changed.set()

    async def _list(self) -> str:
        """Read the objects anew; the resourceVersion to watch from ("" after a get, which has none)."""
        if not self._get_only:
            try:
                page = await self.client.list(self.resource, self.namespace, field_selector=self.selector,
                                              label_selector=self.labels)
            except kube.NotFound:  # the resource itself is gone (e.g. the CRD was deleted): so are its objects
                self._set({})
                return ""
            except kube.Forbidden:
                if self.name is None:
                    raise
                self._get_only = self._poll = True
            else:
                self._set({_key(o): o for o in page.get("items") or []})
                return str((page.get("metadata") or {}).get("resourceVersion") or "")
        assert self.name is not None
        try:
            obj = await self.client.get(self.resource, self.name, self.namespace)
        except kube.NotFound:
            self._set({})
        else:
            self._set({_key(obj): obj})
        return ""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """List, report started, then keep the items current until cancelled."""
        version = await self._list()
        task_status.started()
        while True:
            if self._poll or not version:  # no watch for us, or nothing to watch from (a get, a gone resource)
                await trio.sleep(POLL_FALLBACK)
                version = await self._list()
                continue
            try:
                version = await self._follow(version)
            except kube.Gone:  # compacted away: what changed meanwhile comes with a fresh list
                version = await self._list()
            except kube.Forbidden:  # may get or list, not watch
                self._poll = True
            except kube.ApiError:  # the watch broke: a pause, then a fresh list and a new watch
                await trio.sleep(POLL_FALLBACK)
                version = await self._list()

    async def _follow(self, version: str) -> str:
        """One watch from ``version``; returns the last resourceVersion it saw."""
        async with contextlib.aclosing(self.client.watch(
                self.resource, self.namespace, resource_version=version, field_selector=self.selector,
                label_selector=self.labels, timeout_seconds=WATCH_TIMEOUT)) as events:
            async for event in events:
                version = str((event.object.get("metadata") or {}).get("resourceVersion") or version)
                if event.type == "BOOKMARK":
                    continue
                items = dict(self.items)
                if event.type == "DELETED":
                    items.pop(_key(event.object), None)
                else:
                    items[_key(event.object)] = event.object
                self._set(items)
        return version


@contextlib.asynccontextmanager
async def watching(client: kube.Kube, resource: kube.Resource, namespace: str | None = None,
                   name: str | None = None, labels: str | None = None) -> AsyncIterator[Watched]:
    """A :class:`Watched` kept current while the block runs (its first list done before the block starts). An
    error of the block leaves it as itself, not wrapped in the nursery's exception group."""
    watched = Watched(client, resource, namespace, name, labels)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(watched.run)
            yield watched
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def any_changed(watched: list[Watched], within: float) -> None:
    """Return at the next change of any of ``watched``, or after ``within`` seconds without one."""
    async with trio.open_nursery() as nursery:
        async def one(w: Watched) -> None:
            await w.changed(within)
            nursery.cancel_scope.cancel()

        for w in watched:
            nursery.start_soon(one, w)
