"""Build and cache a real helm v3 from the Go module proxy, for the chart tests.

helm.sh/helm/v3 has no replace directives, so ``go install <module>/cmd/helm@<version>`` builds the real command.
The binary lands in ``~/.cache/kmcp/bin/helm-<version>/helm`` (or under $KMCP_BIN_CACHE); only the first run pays
(about a minute with a warm Go module cache). The version is pinned here and only here.

Run by hand (or from scripts/setup): ``python -m tests.tools.helm_binary --print-path``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HELM_VERSION = "v3.22.0"
HELM_MODULE = "helm.sh/helm/v3"


def default_cache_root() -> Path:
    explicit = os.environ.get("KMCP_BIN_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kmcp" / "bin"


def helm_path(root: Path | None = None) -> Path:
    return (root or default_cache_root()) / f"helm-{HELM_VERSION}" / "helm"


def ensure_helm(root: Path | None = None, log: bool = False) -> Path:
    """Return the path of the pinned helm, building it first if it is not cached. Safe to interrupt."""
    target = helm_path(root)
    if os.access(target, os.X_OK):
        return target
    if shutil.which("go") is None:
        raise RuntimeError("building helm needs Go (https://go.dev) on PATH")
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kmcp-helm-", dir=target.parent.parent) as tmp:
        env = dict(os.environ, GOBIN=tmp, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
        ldflags = f"-s -w -X {HELM_MODULE}/internal/version.version={HELM_VERSION}"
        proc = subprocess.run(
            ["go", "install", "-trimpath", "-ldflags", ldflags, f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}"],
            cwd=tmp, env=env, text=True, stdout=subprocess.PIPE,
            stderr=None if log else subprocess.STDOUT,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"go install helm {HELM_VERSION} failed:\n{proc.stdout}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(tmp) / "helm", target)  # atomic: a half-written binary is never seen as built
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="cache root (default ~/.cache/kmcp/bin)")
    parser.add_argument("--print-path", action="store_true", help="print the helm binary's path")
    args = parser.parse_args(argv)
    path = ensure_helm(args.cache, log=True)
    if args.print_path:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
