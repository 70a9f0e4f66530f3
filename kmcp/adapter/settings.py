"""Every knob of ``kmcp adapter``, with its default. Filled from argv in ``cli.py`` and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field

SUPPORTED_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
# What a Streamable HTTP request without an MCP-Protocol-Version header is taken to speak (the spec's fallback).
DEFAULT_STREAMABLE_VERSION = "2025-03-26"


@dataclass(frozen=True)
class AccessReview:
    """The SubjectAccessReview a caller must pass (kubernetes auth), e.g. get mcpservers/NAME in NAMESPACE."""

    verb: str = "get"
    group: str = "kagent.dev"
    resource: str = "mcpservers"
    name: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class AuthSettings:
    """Bearer-token auth in front of the MCP endpoints. ``mode`` none leaves the adapter open (the default)."""

    mode: str = "none"  # none | kubernetes | jwt
    audiences: tuple[str, ...] = ()
    resource_url: str = ""  # the public URL of this MCP resource (RFC 9728); empty: derived from Host
    authorization_servers: tuple[str, ...] = ()
    cache_ttl: float = 30.0  # kubernetes: reviews cached this long, keyed by SHA-256 of the token
    # kubernetes
    sar: AccessReview | None = None
    kube_api_url: str = ""
    kube_token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    kube_ca_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    # jwt
    jwt_issuer: str = ""
    jwt_jwks_url: str = ""  # empty: OIDC discovery from the issuer
    jwt_ca_file: str = ""  # empty: the system trust store
    jwt_clock_skew: float = 60.0


@dataclass(frozen=True)
class TracingSettings:
    """OpenTelemetry spans, one per JSON-RPC request, sent as OTLP/HTTP protobuf. With no ``traces_url`` tracing
    is off and the opentelemetry packages (an optional extra) are never imported."""

    traces_url: str = ""  # e.g. http://collector:4318/v1/traces
    service_name: str = "kmcp-adapter"
    headers: tuple[tuple[str, str], ...] = ()
    export_interval: float = 2.0  # a batch is sent at most this long after its first span
    max_batch: int = 512
    max_queue: int = 4096  # spans waiting for export; more are dropped (and counted), never block a request


@dataclass(frozen=True)
class AdapterSettings:
    """How the adapter listens, limits and times out."""

    host: str = "0.0.0.0"
    port: int = 3000
    # Sessions
    session_idle_timeout: float = 600.0
    max_sessions: int = 100
    warm_pool: int = 0  # server processes started ahead of demand
    # A request the server says nothing about (no answer, no progress) this long fails with -32001 and the server
    # gets notifications/cancelled; 0: wait forever.
    request_timeout: float = 300.0
    # Stateless (2026-07-28) requests: the server's era (auto: ask server/discover of the first process), the
    # processes per era / capability set they share, whether one is started at once, and the ttlMs of the caching
    # hints the bridge adds to a handshake-era server's lists and reads.
    server_era: str = "auto"  # auto | modern | legacy
    stateless_pool: int = 1
    stateless_warm: bool = True
    stateless_ttl_ms: int = 0
    input_ttl: float = 300.0  # how long a bridged call waits in an input_required round for the client's answers
    # HTTP hygiene
    max_body_bytes: int = 4 * 1024 * 1024
    header_timeout: float = 10.0  # from the first byte of a request to the end of its headers
    body_timeout: float = 10.0  # to read a request body, plus a second per min_body_rate bytes of it
    min_body_rate: int = 64 * 1024  # bytes/s a client sending a large body is allowed beyond body_timeout
    keepalive_timeout: float = 75.0  # an idle keep-alive connection is closed after this
    max_idle_connections: int = 256  # beyond this many idle connections, the longest idle ones are closed
    send_timeout: float = 30.0  # a client that takes no bytes of its response for this long is disconnected
    max_header_bytes: int = 64 * 1024
    drain_timeout: float = 10.0  # on SIGTERM, in-flight requests get this long to finish
    # SSE
    sse_keepalive_interval: float = 15.0
    event_log_size: int = 1000  # SSE events kept per session for Last-Event-ID resumption
    event_log_bytes: int = 2 * 1024 * 1024  # ... and at most this many bytes of them (the newest always kept)
    # Bytes queued for one stream (an SSE response, a WebSocket) whose client reads slower than the server
    # writes; past it the stream is dropped (a legacy /sse or WebSocket session ends). Also bounds the
    # standalone messages kept for a Streamable HTTP session while no GET stream listens (oldest dropped).
    stream_buffer_bytes: int = 4 * 1024 * 1024
    # Server processes
    kill_grace: float = 2.0  # after closing stdin, then again after SIGTERM, before SIGKILL
    max_line_bytes: int = 64 * 1024 * 1024  # one JSON-RPC message from the server
    # Transports and origins
    enable_get_stream: bool = True
    enable_legacy_sse: bool = True
    enable_websocket: bool = True
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    allow_localhost_origins: bool = True
    # When a client accepts both, answer with plain JSON if the server's response is the first thing it sends.
    prefer_json_response: bool = True
    auth: AuthSettings = field(default_factory=AuthSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    # Replicas: with both set, session ids name this adapter and requests for other replicas' sessions are
    # forwarded to them (session_ids.py, forwarding.py). Unset: one adapter, plain ids.
    peer_address: tuple[str, int] | None = None  # where the other replicas reach this adapter (pod IP, port)
    session_key: bytes = field(default=b"", repr=False)  # HMAC key shared by the replicas of one MCPServer
    forward_connect_timeout: float = 5.0
