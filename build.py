"""Build dist/kmcp: one executable shiv zipapp holding kmcp and every runtime dependency.

It needs only a Python >= 3.11 interpreter to run. shiv unpacks the dependencies once into ~/.shiv (or
$SHIV_ROOT) and reuses them on later starts, so a start costs an import, not an unzip. The container image
pre-unpacks it at build time so a read-only root filesystem works.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def build(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    # pip builds the project in-tree, and setuptools' build/lib keeps modules that were since moved or deleted:
    # they would ship in the zipapp beside their new selves.
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    subprocess.run(
        [
            sys.executable, "-m", "shiv",
            "--output-file", str(output),
            "--entry-point", "kmcp.__main__:main",
            "--python", "/usr/bin/env python3",
            "--compile-pyc",
            "--reproducible",
            "--disable-pip-version-check",
            "--quiet",
            # The tracing extra too: `kmcp adapter --otlp-endpoint` works in the image. It costs only size: the
            # adapter imports opentelemetry when a traces URL is configured, never otherwise.
            f"{ROOT}[tracing]",
        ],
        check=True,
        cwd=ROOT,
    )
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "dist" / "kmcp")
    args = parser.parse_args()
    out = build(args.output)
    print(f"built {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
