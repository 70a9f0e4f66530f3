"""Build and cache the Kubernetes binaries from the Go module proxy: the control plane (kube-apiserver,
kube-controller-manager, etcd) and, as separate sets only a real node pays for, the node (kubelet, kube-scheduler,
kube-proxy and a static ``pause`` program for the sandbox image) and its cluster DNS (CoreDNS).

k8s.io/kubernetes cannot be ``go install``-ed directly: its go.mod replaces every k8s.io staging module with a
local directory. A throw-away wrapper module that requires it and maps each staging module to the published
``v0.<minor>.<patch>`` tag builds the real commands. Versions are pinned here and only here.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
COREDNS_VERSION = "v1.15.0"
BINARIES = ("kube-apiserver", "kube-controller-manager", "etcd")
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy", "pause")
DNS_BINARIES = ("coredns",)
# Only what a cluster DNS answering from the apiserver needs, in CoreDNS's own plugin order (a subset of
# core/dnsserver/zdirectives.go): no forward plugin is even compiled in, so no name can be sent off the machine.
COREDNS_PLUGINS = ("bind", "ready", "health", "errors", "log", "cache", "kubernetes")
COREDNS_MAIN = """package main

import (
\t"github.com/coredns/coredns/core/dnsserver"
\t"github.com/coredns/coredns/coremain"
{imports}
)

func init() {{
\tdnsserver.Directives = []string{{{directives}}}
}}

func main() {{
\tcoremain.Run()
}}
"""
# The sandbox image's program: sleep until told to stop, reap whatever the kernel re-parents to it. Built with
# CGO_ENABLED=0, so it is static and the image needs nothing else.
PAUSE_SOURCE = """package main

import (
\t"os"
\t"os/signal"
\t"syscall"
)

func main() {
\tsignals := make(chan os.Signal, 16)
\tsignal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
\tfor sig := range signals {
\t\tif sig != syscall.SIGCHLD {
\t\t\tos.Exit(0)
\t\t}
\t\tfor {
\t\t\tvar status syscall.WaitStatus
\t\t\tpid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
\t\t\tif pid <= 0 || err != nil {
\t\t\t\tbreak
\t\t\t}
\t\t}
\t}
}
"""


@dataclass(frozen=True)
class Toolchain:
    """Where the built binaries live; the directory name carries the pinned versions so a bump rebuilds."""

    root: Path

    names: ClassVar[tuple[str, ...]] = BINARIES

    @property
    def directory(self) -> Path:
        return self.root / f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}"

    def path(self, name: str) -> Path:
        return self.directory / name

    def complete(self) -> bool:
        return all(os.access(self.path(name), os.X_OK) for name in self.names)


@dataclass(frozen=True)
class NodeToolchain(Toolchain):
    """The node's binaries, in their own directory: a control-plane-only machine never builds them."""

    names: ClassVar[tuple[str, ...]] = NODE_BINARIES

    @property
    def directory(self) -> Path:
        return self.root / f"k8s-{KUBERNETES_VERSION}-node"


@dataclass(frozen=True)
class DnsToolchain(Toolchain):
    """CoreDNS, in its own directory: its version moves independently of Kubernetes'."""

    names: ClassVar[tuple[str, ...]] = DNS_BINARIES

    @property
    def directory(self) -> Path:
        return self.root / f"coredns-{COREDNS_VERSION}"


def default_cache_root() -> Path:
    explicit = os.environ.get("KMCP_BIN_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kmcp" / "bin"


def _step(log: bool, text: str) -> None:
    """One line per build step, for whoever shows the build's progress (``kmcp dev up`` reads them)."""
    if log:
        print(f"{STEP_PREFIX}{text}", file=sys.stderr, flush=True)


STEP_PREFIX = "kmcp build step: "


def _go(args: list[str], cwd: Path, log: bool) -> str:
    env = dict(os.environ, GOFLAGS="-mod=mod -buildvcs=false", CGO_ENABLED="0")
    proc = subprocess.run(
        ["go", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=None if log else subprocess.PIPE,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed in {cwd}:\n{proc.stderr or ''}{proc.stdout}")
    return proc.stdout


def _staging_modules(workdir: Path) -> list[str]:
    """The k8s.io modules that k8s.io/kubernetes replaces with ./staging directories."""
    info = _go(["mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"], workdir, log=True)
    gomod_path = re.search(r'"GoMod":\s*"([^"]+)"', info)
    if not gomod_path:
        raise RuntimeError(f"cannot find go.mod of k8s.io/kubernetes {KUBERNETES_VERSION}")
    text = Path(gomod_path.group(1)).read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", text, re.M)))


def _write_module(workdir: Path, name: str, requires: dict[str, str], replaces: dict[str, str],
                  imports: list[str]) -> None:
    lines = [f"module {name}", "", "go 1.26", "", "require ("]
    lines += [f"\t{mod} {ver}" for mod, ver in requires.items()]
    lines += [")", ""]
    if replaces:
        lines += ["replace ("] + [f"\t{mod} => {mod} {ver}" for mod, ver in replaces.items()] + [")"]
    (workdir / "go.mod").write_text("\n".join(lines) + "\n")
    body = "\n".join(f'\t_ "{imp}"' for imp in imports)
    (workdir / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{body}\n)\n")


def _build_kubernetes(workdir: Path, out: Path, log: bool, names: tuple[str, ...]) -> None:
    staging_version = "v0." + KUBERNETES_VERSION.removeprefix("v1.")
    _step(log, f"downloading k8s.io/kubernetes {KUBERNETES_VERSION} (Go modules)")
    staging = _staging_modules(workdir)
    commands = [f"k8s.io/kubernetes/cmd/{name}" for name in names]
    _write_module(workdir, "kmcp.local/k8sbuild", {"k8s.io/kubernetes": KUBERNETES_VERSION},
                  {mod: staging_version for mod in staging}, commands)
    _go(["mod", "tidy"], workdir, log)
    _step(log, f"building {', '.join(names)} {KUBERNETES_VERSION}")
    major, minor = KUBERNETES_VERSION.removeprefix("v").split(".")[:2]
    ldflags = " ".join([
        "-s", "-w",
        f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
        f"-X k8s.io/component-base/version.gitMajor={major}",
        f"-X k8s.io/component-base/version.gitMinor={minor}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
    ])
    _go(["build", "-trimpath", "-ldflags", ldflags, "-o", str(out) + "/", *commands], workdir, log)


def _build_etcd(workdir: Path, out: Path, log: bool) -> None:
    _write_module(workdir, "kmcp.local/etcdbuild", {"go.etcd.io/etcd/server/v3": ETCD_VERSION}, {},
                  ["go.etcd.io/etcd/server/v3"])
    _step(log, f"downloading etcd {ETCD_VERSION} (Go modules)")
    _go(["mod", "tidy"], workdir, log)
    _step(log, f"building etcd {ETCD_VERSION}")
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3"],
        workdir, log)


def _build_pause(workdir: Path, out: Path, log: bool) -> None:
    (workdir / "go.mod").write_text("module kmcp.local/pause\n\ngo 1.26\n")
    (workdir / "main.go").write_text(PAUSE_SOURCE)
    _step(log, "building pause")
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "pause"), "."], workdir, log)


def coredns_main() -> str:
    imports = "\n".join(f'\t_ "github.com/coredns/coredns/plugin/{name}"' for name in COREDNS_PLUGINS)
    return COREDNS_MAIN.format(imports=imports, directives=", ".join(f'"{name}"' for name in COREDNS_PLUGINS))


def _build_coredns(tmp: Path, out: Path, log: bool) -> None:
    """CoreDNS's own main with a chosen plugin list: upstream's documented way to build a smaller CoreDNS."""
    (tmp / "go.mod").write_text(f"module kmcp.local/corednsbuild\n\ngo 1.26\n\n"
                                f"require github.com/coredns/coredns {COREDNS_VERSION}\n")
    (tmp / "main.go").write_text(coredns_main())
    _go(["mod", "tidy"], tmp, log)
    ldflags = f"-s -w -X github.com/coredns/coredns/coremain.GitCommit={COREDNS_VERSION}"
    _go(["build", "-trimpath", "-ldflags", ldflags, "-o", str(out / "coredns"), "."], tmp, log)


def _build_control_plane(tmp: Path, out: Path, log: bool) -> None:
    (tmp / "etcd").mkdir()
    (tmp / "k8s").mkdir()
    _build_etcd(tmp / "etcd", out, log)
    _build_kubernetes(tmp / "k8s", out, log, ("kube-apiserver", "kube-controller-manager"))


def _build_node(tmp: Path, out: Path, log: bool) -> None:
    (tmp / "pause").mkdir()
    (tmp / "k8s").mkdir()
    _build_pause(tmp / "pause", out, log)
    _build_kubernetes(tmp / "k8s", out, log, ("kubelet", "kube-scheduler", "kube-proxy"))


def _ensure(chain: Toolchain, build: Callable[[Path, Path, bool], None], log: bool) -> None:
    if chain.complete():
        return
    if shutil.which("go") is None:
        raise RuntimeError(f"building {chain.names[0]} needs Go (https://go.dev) on PATH")
    chain.root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kmcp-build-", dir=chain.root) as tmp:
        staging_out = Path(tmp) / "out"
        staging_out.mkdir()
        build(Path(tmp), staging_out, log)
        if chain.directory.exists():
            shutil.rmtree(chain.directory)
        staging_out.rename(chain.directory)  # atomic: a half-built set is never seen as complete
    if log:
        print(f"built {', '.join(chain.names)} in {time.monotonic() - started:.0f}s into {chain.directory}",
              file=sys.stderr)


def ensure_binaries(root: Path | None = None, log: bool = True) -> Toolchain:
    """Return the control plane's toolchain, building whatever is missing. Idempotent and safe to interrupt."""
    chain = Toolchain(root or default_cache_root())
    _ensure(chain, _build_control_plane, log)
    return chain


def ensure_node_binaries(root: Path | None = None, log: bool = True) -> NodeToolchain:
    """Return the node's toolchain (kubelet, kube-scheduler, kube-proxy, pause), building what is missing."""
    chain = NodeToolchain(root or default_cache_root())
    _ensure(chain, _build_node, log)
    return chain


def ensure_dns_binaries(root: Path | None = None, log: bool = True) -> DnsToolchain:
    """Return CoreDNS's toolchain, building it when missing."""
    chain = DnsToolchain(root or default_cache_root())
    _ensure(chain, _build_coredns, log)
    return chain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=None, help="cache root (default ~/.cache/kmcp/bin)")
    parser.add_argument("--print-dir", action="store_true", help="print the binaries' directory")
    parser.add_argument("--node", action="store_true",
                        help="also build the node's binaries (kubelet, kube-scheduler, kube-proxy, pause, coredns)")
    args = parser.parse_args(argv)
    chain = ensure_binaries(args.cache)
    if args.print_dir:
        print(chain.directory)
    if args.node:
        for node_chain in (ensure_node_binaries(args.cache), ensure_dns_binaries(args.cache)):
            if args.print_dir:
                print(node_chain.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
