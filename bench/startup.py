"""Start-up time of the zipapp: `dist/kmcp --version`, median of N runs, beside a bare interpreter start.

Usage: python build.py && python bench/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, check=True, capture_output=True)  # first run unpacks; not what users see afterwards
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--zipapp", type=Path, default=ROOT / "dist" / "kmcp")
    args = parser.parse_args()
    bare = median_seconds([sys.executable, "-c", "pass"], args.runs)
    direct = median_seconds([sys.executable, str(args.zipapp), "--version"], args.runs)
    via_shebang = median_seconds([str(args.zipapp), "--version"], args.runs)
    print(f"zipapp size: {args.zipapp.stat().st_size / 1e6:.1f} MB")
    print(f"bare `python -c pass`: {bare * 1e3:.0f} ms median of {args.runs}")
    print(f"`python dist/kmcp --version`: {direct * 1e3:.0f} ms median of {args.runs}")
    print(f"`dist/kmcp --version` (shebang /usr/bin/env python3, whatever python3 is on PATH): "
          f"{via_shebang * 1e3:.0f} ms median of {args.runs}")


if __name__ == "__main__":
    main()
