"""Prometheus metrics of the controller, rendered as text exposition format 0.0.4. No client library: a few
counters, gauges and one histogram are all a controller needs."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)
    kind: str = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.values.items())]
        return lines


@dataclass
class Gauge(Counter):
    kind: str = "gauge"
    sampler: Callable[[], float] | None = None

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def render(self) -> list[str]:
        if self.sampler is not None:
            self.values[()] = self.sampler()
        return super().render()


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = DURATION_BUCKETS
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: dict[Labels, float] = field(default_factory=dict)

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[key] = self.sums.get(key, 0.0) + value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, counts in sorted(self.counts.items()):
            cumulative = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                cumulative += count
                lines.append(f"{self.name}_bucket{_labels(key, (('le', _number(bound)),))} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(key)} {_number(self.sums[key])}")
            lines.append(f"{self.name}_count{_labels(key)} {cumulative}")
        return lines


class ControllerMetrics:
    """The controller's metric families (names follow controller-runtime where one exists)."""

    def __init__(self, api_requests: Callable[[], dict[tuple[str, str, int], int]] | None = None) -> None:
        self._api_request_source = api_requests
        self.reconcile_total = Counter("controller_runtime_reconcile_total",
                                       "Total number of reconciliations per controller and result.")
        self.reconcile_errors = Counter("controller_runtime_reconcile_errors_total",
                                        "Total number of reconciliation errors per controller.")
        self.reconcile_time = Histogram("controller_runtime_reconcile_time_seconds",
                                        "Length of time per reconciliation per controller.")
        self.queue_depth = Gauge("workqueue_depth", "Current depth of the work queue.")
        self.events_dropped = Gauge("kmcp_events_dropped_total",
                                    "Events dropped because the recorder's buffer was full.", kind="counter")
        self.watch_restarts = Counter("kmcp_watch_restarts_total",
                                      "Watches restarted, by resource and cause (timeout, gone, error).")
        self.leader = Gauge("leader_election_master_status",
                            "1 while this instance is the leader (or leader election is off), else 0.")
        self.api_requests = Counter("kmcp_kube_api_requests_total",
                                    "Requests to the Kubernetes API by verb, resource and status code.")
        self.families: list[Counter | Histogram] = [
            self.reconcile_total, self.reconcile_errors, self.reconcile_time, self.queue_depth,
            self.watch_restarts, self.events_dropped, self.leader, self.api_requests,
        ]

    def render(self) -> str:
        if self._api_request_source is not None:
            for (verb, resource, code), count in self._api_request_source().items():
                self.api_requests.values[(("code", str(code)), ("resource", resource), ("verb", verb))] = count
        lines: list[str] = []
        for family in self.families:
            lines += family.render()
        return "\n".join(lines) + "\n"
