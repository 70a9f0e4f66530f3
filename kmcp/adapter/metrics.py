"""Adapter metrics in the Prometheus text exposition format; counters are plain ints, no client library."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
                break


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class Metrics:
    active_sessions: int = 0
    sessions_total: int = 0
    sessions_rejected: int = 0
    child_starts: int = 0
    child_exits: int = 0
    requests_timed_out: int = 0
    requests: Counter[str] = field(default_factory=Counter)  # JSON-RPC method -> count
    http_requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (path kind, status) -> count
    latency: dict[str, Histogram] = field(default_factory=dict)  # JSON-RPC method -> seconds to response
    auth_failures: Counter[str] = field(default_factory=Counter)  # reason -> requests refused by auth
    forwarded: Counter[str] = field(default_factory=Counter)  # result -> requests another replica holds
    spans_dropped: int = 0  # tracing: spans not exported (queue full or the collector failing)
    # Tracing's hook (tracing.py), called with what the latency histogram gets; None (the default) costs one test.
    on_response: Callable[[str, float], None] | None = None

    def observe_latency(self, method: str, seconds: float) -> None:
        histogram = self.latency.get(method)
        if histogram is None:
            histogram = self.latency[method] = Histogram()
        histogram.observe(seconds)
        if self.on_response is not None:
            self.on_response(method, seconds)

    def render(self) -> bytes:
        lines = [
            "# HELP kmcp_adapter_active_sessions MCP sessions currently open.",
            "# TYPE kmcp_adapter_active_sessions gauge",
            f"kmcp_adapter_active_sessions {self.active_sessions}",
            "# HELP kmcp_adapter_sessions_total MCP sessions created.",
            "# TYPE kmcp_adapter_sessions_total counter",
            f"kmcp_adapter_sessions_total {self.sessions_total}",
            "# HELP kmcp_adapter_sessions_rejected_total Sessions refused because --max-sessions was reached.",
            "# TYPE kmcp_adapter_sessions_rejected_total counter",
            f"kmcp_adapter_sessions_rejected_total {self.sessions_rejected}",
            "# HELP kmcp_adapter_child_starts_total Server processes started.",
            "# TYPE kmcp_adapter_child_starts_total counter",
            f"kmcp_adapter_child_starts_total {self.child_starts}",
            "# HELP kmcp_adapter_child_exits_total Server processes that exited.",
            "# TYPE kmcp_adapter_child_exits_total counter",
            f"kmcp_adapter_child_exits_total {self.child_exits}",
            "# HELP kmcp_adapter_requests_timed_out_total Requests failed because the server did not answer in "
            "--request-timeout.",
            "# TYPE kmcp_adapter_requests_timed_out_total counter",
            f"kmcp_adapter_requests_timed_out_total {self.requests_timed_out}",
            "# HELP kmcp_adapter_requests_total JSON-RPC requests from clients, by method.",
            "# TYPE kmcp_adapter_requests_total counter",
        ]
        lines += [f'kmcp_adapter_requests_total{{method="{_label(m)}"}} {n}' for m, n in sorted(self.requests.items())]
        lines += [
            "# HELP kmcp_adapter_http_responses_total HTTP responses, by endpoint and status.",
            "# TYPE kmcp_adapter_http_responses_total counter",
        ]
        lines += [f'kmcp_adapter_http_responses_total{{endpoint="{_label(e)}",status="{s}"}} {n}'
                  for (e, s), n in sorted(self.http_requests.items())]
        if self.auth_failures:
            lines += [
                "# HELP kmcp_adapter_auth_failures_total Requests refused by bearer-token auth, by reason.",
                "# TYPE kmcp_adapter_auth_failures_total counter",
            ]
            lines += [f'kmcp_adapter_auth_failures_total{{reason="{_label(r)}"}} {n}'
                      for r, n in sorted(self.auth_failures.items())]
        if self.forwarded:
            lines += [
                "# HELP kmcp_adapter_forwarded_requests_total Requests for another replica's session or suspended "
                "call, by result.",
                "# TYPE kmcp_adapter_forwarded_requests_total counter",
            ]
            lines += [f'kmcp_adapter_forwarded_requests_total{{result="{_label(r)}"}} {n}'
                      for r, n in sorted(self.forwarded.items())]
        if self.spans_dropped:
            lines += [
                "# HELP kmcp_adapter_spans_dropped_total Trace spans not exported.",
                "# TYPE kmcp_adapter_spans_dropped_total counter",
                f"kmcp_adapter_spans_dropped_total {self.spans_dropped}",
            ]
        lines += [
            "# HELP kmcp_adapter_request_duration_seconds Time from a JSON-RPC request to its response, by method.",
            "# TYPE kmcp_adapter_request_duration_seconds histogram",
        ]
        for method, histogram in sorted(self.latency.items()):
            label = _label(method)
            cumulative = 0
            for bound, count in zip(histogram.buckets, histogram.counts, strict=True):
                cumulative += count
                lines.append(f'kmcp_adapter_request_duration_seconds_bucket{{method="{label}",le="{bound}"}} '
                             f"{cumulative}")
            lines.append(f'kmcp_adapter_request_duration_seconds_bucket{{method="{label}",le="+Inf"}} '
                         f"{histogram.count}")
            lines.append(f'kmcp_adapter_request_duration_seconds_sum{{method="{label}"}} {histogram.total}')
            lines.append(f'kmcp_adapter_request_duration_seconds_count{{method="{label}"}} {histogram.count}')
        return ("\n".join(lines) + "\n").encode()
