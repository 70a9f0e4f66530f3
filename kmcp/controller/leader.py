"""Leader election on a coordination.k8s.io/v1 Lease, like client-go's leaderelection.

Expiry is judged by the local clock from when this instance last *saw the record change*, not by timestamps
written by another machine, so clock skew between nodes does not matter. The leader renews every retry period and
gives up when it could not renew within the renew deadline; on a clean shutdown it clears holderIdentity so a
standby takes over at once instead of waiting for the lease to expire."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from kmcp import kube

Obj = dict[str, Any]
log = logging.getLogger("kmcp.controller.leader")


class LeadershipLost(Exception):
    """The lease could not be renewed in time: stop everything that needs leadership."""


class LeaderElector:
    def __init__(self, client: kube.Kube, namespace: str, name: str, identity: str, *, lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.is_leader = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._lease: Obj | None = None

    def _spec(self, transitions: int, acquire_time: str) -> Obj:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": kube.micro_time(),
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this instance holds the lease afterwards."""
        try:
            lease = await self.client.get_lease(self.namespace, self.name)
        except kube.NotFound:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(0, kube.micro_time())}
            try:
                self._lease = await self.client.create_lease(self.namespace, body)
            except kube.Conflict:
                return False
            self._observe(self._lease)
            return True
        spec = lease.get("spec") or {}
        self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        now = trio.current_time()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # someone else holds an unexpired lease
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            new_spec = self._spec(transitions, spec.get("acquireTime") or kube.micro_time())
        else:
            new_spec = self._spec(transitions + 1, kube.micro_time())
        lease["spec"] = new_spec
        try:
            self._lease = await self.client.update_lease(self.namespace, lease)
        except kube.Conflict:
            return False
        self._observe(self._lease)
        return True

    def _observe(self, lease: Obj) -> None:
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("acquireTime"),
                  spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed = record
            self._observed_at = trio.current_time()

    async def acquire(self) -> None:
        """Block until this instance becomes the leader."""
        logged = False
        while True:
            try:
                if await self.try_acquire_or_renew():
                    self.is_leader = True
                    log.info("became leader", extra={"kv": {"lease": f"{self.namespace}/{self.name}",
                                                            "identity": self.identity}})
                    return
            except (kube.ApiError, OSError) as error:
                log.warning("lease acquire failed", extra={"kv": {"error": str(error)}})
            if not logged:
                log.info("waiting for the lease", extra={"kv": {"lease": f"{self.namespace}/{self.name}"}})
                logged = True
            await trio.sleep(self.retry_period)

    async def keep_renewing(self) -> None:
        """Renew every retry period; raise LeadershipLost when no renewal succeeded within the renew deadline."""
        last_renewed = trio.current_time()
        while True:
            await trio.sleep(self.retry_period)
            ok = False
            with trio.move_on_at(last_renewed + self.renew_deadline):
                while not ok:
                    try:
                        ok = await self.try_acquire_or_renew()
                    except (kube.ApiError, OSError) as error:
                        log.warning("lease renew failed", extra={"kv": {"error": str(error)}})
                    if not ok:
                        await trio.sleep(min(self.retry_period, 1.0))
            if not ok:
                self.is_leader = False
                raise LeadershipLost(f"could not renew lease {self.namespace}/{self.name}")
            last_renewed = trio.current_time()

    async def release(self) -> None:
        """Clear holderIdentity so a standby does not have to wait for expiry."""
        if not self.is_leader or self._lease is None:
            return
        self.is_leader = False
        lease = dict(self._lease)
        spec = dict(lease.get("spec") or {})
        spec["holderIdentity"] = None
        spec["leaseDurationSeconds"] = 1
        spec["renewTime"] = kube.micro_time()
        lease["spec"] = spec
        try:
            await self.client.update_lease(self.namespace, lease)
            log.info("released the lease", extra={"kv": {"lease": f"{self.namespace}/{self.name}"}})
        except (kube.ApiError, OSError) as error:
            log.warning("lease release failed", extra={"kv": {"error": str(error)}})

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Wait for leadership, then run ``lead()`` while renewing; releases the lease when cancelled."""
        await self.acquire()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.keep_renewing)
                await lead()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(3):
                await self.release()
