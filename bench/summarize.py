"""Median table and per-run ratios from several `bench/gateways.py --json` runs.

Usage: python bench/summarize.py run1.json run2.json run3.json
The machine is shared, so one run is noisy: the table gives the median of each row (calls/s of every run in
brackets), then the ratios at 32 sessions per run, and each run's total CPU per call (gateway + servers + load
generator), which is what bounds throughput on a CPU-bound machine.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

Row = dict[str, object]
CPU_FIELDS = ("cpu_ms_per_call", "server_cpu_ms_per_call", "loadgen_cpu_ms_per_call")
Key = tuple[str, str, int]


def key(row: Row) -> Key:
    return str(row["gateway"]), str(row["transport"]), int(str(row["sessions"]))


def num(row: Row, field: str) -> float:
    return float(str(row[field]))


def main() -> None:
    runs: list[list[Row]] = [json.loads(Path(name).read_text()) for name in sys.argv[1:]]
    rows: dict[Key, list[Row]] = {}
    for run in runs:
        for row in run:
            rows.setdefault(key(row), []).append(row)
    print(f"median of {len(runs)} runs")
    print("| gateway | transport | sessions | calls/s median (runs) | p50 ms | p99 ms | open p50 ms "
          "| gateway CPU ms/call | server CPU ms/call | loadgen CPU ms/call | other load (cores) | gateway RSS MiB "
          "| errors | cross-talk |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in sorted(rows, key=lambda k: k[2]):
        group = rows[k]

        def med(field: str, group: list[Row] = group) -> float:
            return statistics.median(num(r, field) for r in group)

        rates = [round(num(r, "calls_per_second")) for r in group]
        print(f"| {k[0]} | {k[1]} | {k[2]} | {statistics.median(rates):.0f} ({', '.join(map(str, rates))}) "
              f"| {med('p50_ms'):.2f} | {med('p99_ms'):.1f} | {med('session_open_p50_ms'):.0f} "
              f"| {med('cpu_ms_per_call'):.3f} | {med('server_cpu_ms_per_call'):.3f} "
              f"| {med('loadgen_cpu_ms_per_call'):.3f} "
              f"| {med('other_cores'):.2f} | {med('rss_mib'):.0f} | {sum(int(str(r['errors'])) for r in group)} "
              f"| {sum(int(str(r['cross_talk'])) for r in group)} |")
    print()
    for index, run in enumerate(runs, 1):
        by = {key(r): r for r in run if key(r)[2] == 32}

        def rate(name: str, transport: str = "streamable", by: dict[Key, Row] = by) -> float:
            return num(by[(name, transport, 32)], "calls_per_second") or float("nan")

        def total(name: str, by: dict[Key, Row] = by) -> str:
            row = by.get((name, "streamable", 32))
            if row is None:
                return "-"
            return f"{sum(num(row, f) for f in CPU_FIELDS):.3f}"

        try:
            print(f"run {index} at 32 sessions: kmcp/supergateway {rate('kmcp') / rate('supergateway'):.1f}x, "
                  f"SSE {rate('kmcp', 'sse') / rate('supergateway', 'sse'):.1f}x, "
                  f"kmcp/mcp-proxy {rate('kmcp') / rate('mcp-proxy'):.1f}x, "
                  f"kmcp-shared/mcp-proxy {rate('kmcp-shared') / rate('mcp-proxy'):.1f}x; total CPU ms/call: "
                  + ", ".join(f"{name} {total(name)}" for name in ("kmcp", "kmcp-shared", "bare", "supergateway",
                                                                 "mcp-proxy")))
        except KeyError as missing:
            print(f"run {index}: no row {missing} at 32 sessions")
    against_baseline(runs)


def against_baseline(runs: list[list[Row]]) -> None:
    """kmcp rows beside the same rows of ``--baseline``'s older checkout (``name@base``), per run: the throughput
    ratio and the adapter CPU per call of each (new / base)."""
    for index, run in enumerate(runs, 1):
        by = {key(r): r for r in run}
        cells = []
        for (name, transport, sessions), row in sorted(by.items(), key=lambda item: (item[0][2], item[0][0])):
            base = by.get((f"{name}@base", transport, sessions))
            if base is None or name.endswith("@base"):
                continue
            speed = num(row, "calls_per_second") / (num(base, "calls_per_second") or float("nan"))
            cells.append(f"{name} {transport} {sessions}: {speed:.2f}x calls/s, adapter "
                         f"{num(row, 'cpu_ms_per_call'):.3f} / {num(base, 'cpu_ms_per_call'):.3f} ms/call")
        if cells:
            print(f"run {index} against the baseline: " + "; ".join(cells))


if __name__ == "__main__":
    main()
