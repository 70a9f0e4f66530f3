"""Leader election logic on trio's MockClock against an in-memory Lease store with optimistic concurrency."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import trio
import trio.testing

from kmcp import kube
from kmcp.controller.leader import LeaderElector, LeadershipLost

Obj = dict[str, Any]


class FakeLeases:
    """get/create/update of Leases with resourceVersion conflicts, and a switch to make the apiserver fail."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], Obj] = {}
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise kube.ApiError(503, "ServiceUnavailable", "down")

    async def get_lease(self, namespace: str, name: str) -> Obj:
        self._check()
        if (namespace, name) not in self.leases:
            raise kube.NotFound(404, "NotFound")
        return copy.deepcopy(self.leases[(namespace, name)])

    async def create_lease(self, namespace: str, lease: Obj) -> Obj:
        self._check()
        key = (namespace, lease["metadata"]["name"])
        if key in self.leases:
            raise kube.AlreadyExists(409, "AlreadyExists")
        self.version += 1
        stored = copy.deepcopy(lease)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[key] = stored
        return copy.deepcopy(stored)

    async def update_lease(self, namespace: str, lease: Obj) -> Obj:
        self._check()
        key = (namespace, lease["metadata"]["name"])
        if self.leases[key]["metadata"]["resourceVersion"] != lease["metadata"].get("resourceVersion"):
            raise kube.Conflict(409, "Conflict")
        self.version += 1
        stored = copy.deepcopy(lease)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[key] = stored
        return copy.deepcopy(stored)

    def holder(self) -> str | None:
        return self.leases[("ns", "lease")]["spec"].get("holderIdentity")


def elector(leases: FakeLeases, identity: str) -> LeaderElector:
    return LeaderElector(leases, "ns", "lease", identity, lease_duration=15, renew_deadline=10,  # type: ignore[arg-type]
                         retry_period=2)


async def test_a_standby_takes_over_only_after_the_lease_expires(autojump_clock: trio.testing.MockClock) -> None:
    leases = FakeLeases()
    a, b = elector(leases, "a"), elector(leases, "b")
    assert await a.try_acquire_or_renew()
    assert leases.holder() == "a"
    assert not await b.try_acquire_or_renew()  # b first sees the record now: it must wait a full lease
    await trio.sleep(14)
    assert not await b.try_acquire_or_renew()
    await trio.sleep(2)
    assert await b.try_acquire_or_renew()
    assert leases.holder() == "b"
    assert leases.leases[("ns", "lease")]["spec"]["leaseTransitions"] == 1


async def test_a_renewing_leader_keeps_the_lease(autojump_clock: trio.testing.MockClock) -> None:
    leases = FakeLeases()
    a, b = elector(leases, "a"), elector(leases, "b")
    led = trio.Event()

    async def lead() -> None:
        led.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.run, lead)
        await led.wait()
        with trio.move_on_after(60):
            await b.acquire()
        assert not b.is_leader and leases.holder() == "a"
        nursery.cancel_scope.cancel()
    assert leases.holder() is None  # released on shutdown
    with trio.fail_after(3):  # so a standby takes over without waiting for expiry
        await b.acquire()


async def test_leadership_is_lost_when_renewals_fail_past_the_deadline(
        autojump_clock: trio.testing.MockClock) -> None:
    leases = FakeLeases()
    a = elector(leases, "a")
    cancelled = False

    async def lead() -> None:
        nonlocal cancelled
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled = True
            raise

    async def outage() -> None:
        await trio.sleep(5)
        leases.down = True

    start = trio.current_time()
    with pytest.RaisesGroup(LeadershipLost, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outage)
            await a.run(lead)
    assert cancelled and not a.is_leader
    assert 10 <= trio.current_time() - start <= 16
