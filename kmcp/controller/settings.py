"""Every knob of the controller, with its default. Filled from argv in ``cli.py``; nothing reads os.environ later."""

from __future__ import annotations

from dataclasses import dataclass, field

from kmcp.render import DEFAULT_ADAPTER_IMAGE, RenderSettings

LEASE_NAME = "kmcp-controller-manager-leader"
DEFAULT_NAMESPACE = "kmcp-system"


@dataclass(frozen=True)
class ControllerSettings:
    kubeconfig: str | None = None
    namespace: str | None = None  # watch only this namespace; None: all
    render: RenderSettings = field(default_factory=lambda: RenderSettings(adapter_image=DEFAULT_ADAPTER_IMAGE))
    resync_period: float = 600.0
    max_concurrent_reconciles: int = 4
    # leader election
    leader_elect: bool = False
    leader_election_namespace: str = DEFAULT_NAMESPACE
    lease_name: str = LEASE_NAME
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = ""
    # servers: (host, port) or None when disabled
    health_probe_address: tuple[str, int] | None = ("", 8081)
    metrics_address: tuple[str, int] | None = ("", 8443)
    metrics_secure: bool = True
    # retries
    backoff_base: float = 0.5
    backoff_max: float = 300.0
    watch_timeout_seconds: int = 300
    # a repeated Event is one object whose series count is patched at most this often
    event_series_interval: float = 30.0
    log_level: str = "info"
