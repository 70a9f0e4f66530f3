"""metav1.Condition bookkeeping, pure: lastTransitionTime moves only when a condition's status changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kmcp.spec import CONDITION_TYPES

Obj = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def set_conditions(current: list[Obj], updates: list[Condition], generation: int, now: str) -> list[Obj]:
    """``current`` with ``updates`` merged in, in the canonical type order; untouched conditions are kept as they are.

    A condition whose status is unchanged keeps its lastTransitionTime; reason, message and observedGeneration are
    always refreshed."""
    by_type = {c.get("type"): dict(c) for c in current if isinstance(c, dict)}
    for update in updates:
        old = by_type.get(update.type)
        transition = old.get("lastTransitionTime") if old and old.get("status") == update.status else None
        by_type[update.type] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": transition or now,
            "observedGeneration": generation,
        }
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(by_type.values(), key=lambda c: (order.get(str(c.get("type")), len(order)), str(c.get("type"))))


def changed(before: list[Obj], after: list[Obj]) -> list[Obj]:
    """Conditions in ``after`` whose (status, reason) differ from ``before``: each is worth an Event."""
    old = {c.get("type"): (c.get("status"), c.get("reason")) for c in before}
    return [c for c in after if old.get(c.get("type")) != (c.get("status"), c.get("reason"))]


# Not-yet-true states every healthy MCPServer passes through: worth telling, not worth a Warning.
PROGRESS_REASONS = frozenset({"DeploymentProgressing", "DeploymentNotFound"})
# What kmcp.controller.reconcile.server_conditions says of a condition held back by an earlier one that did not
# pass: it follows from that one, so an Event does not repeat it.
HELD_BACK_REASONS = frozenset({"NotAccepted", "RefsNotResolved", "NotProgrammed"})


@dataclass(frozen=True)
class EventSummary:
    type: str  # "Normal" | "Warning"
    reason: str
    note: str


def summarize(changes: list[Obj]) -> EventSummary | None:
    """One Event for the conditions one reconcile changed (a new MCPServer changes four at once), saying what
    changed and nothing that follows from it.

    The conditions are a chain: a True one implies every earlier one, and one that did not pass holds back the
    later ones (HELD_BACK_REASONS). So a Warning names what went wrong; a Normal Event names the furthest condition
    that became True and what is still pending after it. A Warning takes the reason of the first condition that
    went wrong, a Normal one that of the furthest True one."""
    if not changes:
        return None
    news = [c for c in changes if c.get("reason") not in HELD_BACK_REASONS] or changes
    bad = [c for c in news if c.get("status") != "True" and c.get("reason") not in PROGRESS_REASONS]
    good = [c for c in news if c.get("status") == "True"]
    lead = bad[0] if bad else (good[-1] if good else news[-1])
    shown = [c for c in news if c is lead or c.get("status") != "True"]
    note = "; ".join(f"{c.get('type')}={c.get('status')} ({c.get('reason')})"
                     + (f": {c.get('message')}" if c.get("message") else "") for c in shown)
    return EventSummary("Warning" if bad else "Normal", str(lead.get("reason")), note)


def find(conditions: list[Obj], type_: str) -> Obj | None:
    return next((c for c in conditions if c.get("type") == type_), None)
