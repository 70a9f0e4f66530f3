"""`kmcp controller [flags]`: argv -> ControllerSettings -> run until SIGTERM/SIGINT.

Flags follow the guide's controller Deployment (controller-runtime names). Exit codes: 0 after a graceful shutdown,
1 when the controller failed (e.g. lost its lease), 2 for bad flags or configuration."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Mapping

import trio

from kmcp import kube
from kmcp.controller import logs
from kmcp.controller.leader import LeadershipLost
from kmcp.controller.settings import DEFAULT_NAMESPACE, LEASE_NAME, ControllerSettings
from kmcp.render import ADAPTER_AUTH_CLUSTER_ROLE, DEFAULT_ADAPTER_IMAGE, RenderSettings

log = logging.getLogger("kmcp.controller")


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "t", "true", "yes", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def parse_address(value: str) -> tuple[str, int] | None:
    """``:8081``, ``127.0.0.1:8081`` or ``8081``; ``0`` disables the server."""
    if value.strip() in ("0", ""):
        return None
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address: {value!r} (want [host]:port)") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value!r}")
    return host.strip("[]"), number


def parse_duration(value: str) -> float:
    """``600``, ``10m``, ``15s``, ``1h``, ``500ms``."""
    text = value.strip().lower()
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    try:
        for suffix, factor in units:
            if text.endswith(suffix) and not (suffix == "s" and text.endswith("ms")):
                seconds = float(text[: -len(suffix)]) * factor
                break
        else:
            seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return seconds


def parse_http_url(value: str) -> str:
    """An http(s) URL, as the adapter's --otlp-endpoint takes it: refused here rather than in every adapter pod."""
    text = value.strip()
    if text and not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kmcp controller",
                                description="Reconcile MCPServers into Deployments, Services and ServiceAccounts.")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--namespace", default=None, help="watch only this namespace (default: all)")
    p.add_argument("--adapter-image", default=None,
                   help="image of the stdio adapter sidecar (default: $KMCP_ADAPTER_IMAGE or the kmcp image)")
    p.add_argument("--adapter-auth-cluster-role", default=None, metavar="NAME",
                   help="the ClusterRole bound for `auth: kubernetes`: this install's own (default: "
                        "$KMCP_ADAPTER_AUTH_CLUSTER_ROLE or kmcp-adapter-auth)")
    p.add_argument("--adapter-otlp-endpoint", type=parse_http_url, default="", metavar="URL",
                   help="OTLP/HTTP collector the stdio adapters send their spans to, as --otlp-endpoint, each "
                        "named after its MCPServer (OTEL_SERVICE_NAME); default: no tracing")
    p.add_argument("--leader-elect", nargs="?", const=True, default=False, type=parse_bool, metavar="BOOL",
                   help="elect a leader on a Lease so only one replica reconciles")
    p.add_argument("--leader-election-namespace", default=None,
                   help="namespace of the Lease (default: the pod's namespace, else kmcp-system)")
    p.add_argument("--leader-election-id", default=LEASE_NAME, help="name of the Lease")
    p.add_argument("--leader-elect-lease-duration", type=parse_duration, default=15.0, metavar="DURATION",
                   help="how long a standby waits after the last renewal before taking over (default 15s)")
    p.add_argument("--leader-elect-renew-deadline", type=parse_duration, default=10.0, metavar="DURATION",
                   help="the leader gives up when it could not renew for this long (default 10s)")
    p.add_argument("--leader-elect-retry-period", type=parse_duration, default=2.0, metavar="DURATION",
                   help="how often to renew or try to acquire the lease (default 2s)")
    p.add_argument("--health-probe-bind-address", type=parse_address, default=("", 8081),
                   help="address of /healthz and /readyz (default :8081; 0 disables)")
    p.add_argument("--metrics-bind-address", type=parse_address, default=("", 8443),
                   help="address of /metrics (default :8443; 0 disables)")
    p.add_argument("--metrics-secure", nargs="?", const=True, default=True, type=parse_bool, metavar="BOOL",
                   help="serve metrics over HTTPS with TokenReview/SubjectAccessReview (default true)")
    p.add_argument("--no-metrics-secure", dest="metrics_secure", action="store_false",
                   help="serve metrics over plain HTTP without authentication")
    p.add_argument("--resync-period", type=parse_duration, default=600.0,
                   help="reconcile every MCPServer this often even without changes (default 10m)")
    p.add_argument("--max-concurrent-reconciles", type=int, default=4)
    p.add_argument("--watch-timeout", type=parse_duration, default=300.0,
                   help="end and resume each watch this often (default 5m); short values are for tests")
    p.add_argument("--event-series-interval", type=parse_duration, default=30.0, metavar="DURATION",
                   help="a repeated Event is one object; patch its series count at most this often (default 30s)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def settings_from(args: argparse.Namespace, config: kube.KubeConfig, environ: Mapping[str, str]) -> ControllerSettings:
    namespace = args.leader_election_namespace or environ.get("POD_NAMESPACE") or (
        config.namespace if config.in_cluster else DEFAULT_NAMESPACE)
    image = args.adapter_image or environ.get("KMCP_ADAPTER_IMAGE") or DEFAULT_ADAPTER_IMAGE
    auth_role = args.adapter_auth_cluster_role or environ.get("KMCP_ADAPTER_AUTH_CLUSTER_ROLE") or \
        ADAPTER_AUTH_CLUSTER_ROLE
    if args.leader_elect and not (args.leader_elect_retry_period < args.leader_elect_renew_deadline
                                  < args.leader_elect_lease_duration):
        raise ValueError("leader election needs retry period < renew deadline < lease duration")
    return ControllerSettings(
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        render=RenderSettings(adapter_image=image, adapter_auth_cluster_role=auth_role,
                              adapter_otlp_endpoint=args.adapter_otlp_endpoint),
        resync_period=args.resync_period,
        max_concurrent_reconciles=max(1, args.max_concurrent_reconciles),
        watch_timeout_seconds=max(1, round(args.watch_timeout)),
        event_series_interval=max(0.1, args.event_series_interval),
        leader_elect=bool(args.leader_elect),
        leader_election_namespace=namespace,
        lease_name=args.leader_election_id,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:12]}",
        health_probe_address=args.health_probe_bind_address,
        metrics_address=args.metrics_bind_address,
        metrics_secure=bool(args.metrics_secure),
        log_level=args.log_level,
    )


async def run(settings: ControllerSettings, config: kube.KubeConfig) -> int:
    from kmcp.controller.manager import Manager

    async with kube.Kube(config, user_agent="kmcp-controller") as client:
        manager = Manager(settings, client)
        code = 0
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                async def wait_for_signal() -> None:
                    async for signum in signals:
                        log.info("shutting down", extra={"kv": {"signal": signal.Signals(signum).name}})
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(wait_for_signal)
                try:
                    await manager.run()
                except* LeadershipLost as group:
                    log.error("leadership lost, exiting", extra={"kv": {"error": str(group.exceptions[0])}})
                    code = 1
                nursery.cancel_scope.cancel()
    log.info("stopped", extra={"kv": {"exit_code": code}})
    return code


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level)
    try:
        config = kube.load_config(args.kubeconfig)
        settings = settings_from(args, config, os.environ)
    except Exception as error:  # the loader raises many kinds; report one line, not a traceback
        print(f"kmcp controller: {error}", file=sys.stderr)
        return 2
    log.info("starting", extra={"kv": {"server": config.server, "namespace": settings.namespace or "(all)",
                                       "leader_elect": settings.leader_elect, "identity": settings.identity}})
    try:
        return trio.run(run, settings, config)
    except KeyboardInterrupt:
        return 0
