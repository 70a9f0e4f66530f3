"""``kmcp adapter [options] -- CMD [ARGS...]``: serve a stdio MCP server over HTTP.

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when serving failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace

import trio

from kmcp.adapter.protocol.session_ids import MIN_KEY_BYTES, parse_peer_address
from kmcp.adapter.server.http import parse_listen
from kmcp.adapter.settings import AccessReview, AdapterSettings, AuthSettings, TracingSettings
from kmcp.adapter.stdio.launcher import Launcher, LocalLauncher
from kmcp.podcontract import SESSION_KEY_ENV

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Usage(message)


def build_parser() -> argparse.ArgumentParser:
    defaults = AdapterSettings()
    parser = _Parser(
        prog="kmcp adapter",
        description="Serve a stdio MCP server over Streamable HTTP (/mcp) and legacy HTTP+SSE (/sse), "
                    "one server process per MCP session.",
        epilog="example: kmcp adapter --listen 127.0.0.1:3000 -- python server.py",
    )
    parser.add_argument("--listen", default=f"{defaults.host}:{defaults.port}", metavar="HOST:PORT",
                        help="address to listen on; ':3000' means 0.0.0.0:3000 (default %(default)s)")
    parser.add_argument("--session-idle-timeout", type=float, default=defaults.session_idle_timeout, metavar="S",
                        help="end sessions idle this many seconds (default %(default)s)")
    parser.add_argument("--max-sessions", type=int, default=defaults.max_sessions, metavar="N",
                        help="refuse new sessions (503) beyond this many (default %(default)s)")
    parser.add_argument("--request-timeout", type=float, default=defaults.request_timeout, metavar="S",
                        help="fail a request with JSON-RPC error -32001 (and send the server "
                             "notifications/cancelled) when the server says nothing about it, neither answer nor "
                             "progress, for this many seconds; 0 waits forever (default %(default)s)")
    parser.add_argument("--server-era", choices=("auto", "modern", "legacy", "off"), default=defaults.server_era,
                        help="how 2026-07-28 (stateless) requests are served: auto asks the first server process "
                             "server/discover and then passes them through (modern) or bridges them onto "
                             "initialized processes (legacy); off refuses them as before (default %(default)s)")
    parser.add_argument("--stateless-pool", type=int, default=defaults.stateless_pool, metavar="N",
                        help="server processes that 2026-07-28 requests share, per client-capability set for a "
                             "bridged server; one is started at once (default %(default)s)")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="a browser Origin allowed besides localhost ones (repeatable; '*' allows any)")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes, metavar="N",
                        help="largest request body accepted (413), and largest WebSocket message (close 1009) "
                             "(default %(default)s)")
    parser.add_argument("--no-get-stream", action="store_true", help="answer GET /mcp with 405")
    parser.add_argument("--session-mode", choices=("isolated", "shared"), default="isolated",
                        help="one server process per session (isolated, the default) or one for all (shared)")
    parser.add_argument("--warm-pool", type=int, default=defaults.warm_pool, metavar="N",
                        help="server processes started ahead of demand, so new sessions skip the cold start "
                             "(default %(default)s)")
    parser.add_argument("--bridge", metavar="DIR",
                        help="start servers in the pod's mcp-server container through FIFOs in DIR")
    parser.add_argument("--peer-address", default="", metavar="IP[:PORT]",
                        help="with replicas: where the other replicas reach this adapter (the pod IP; the port "
                             f"defaults to the listen port). Together with the key in ${SESSION_KEY_ENV}, session "
                             "ids name this adapter and requests for other replicas' sessions are forwarded")
    _add_limit_arguments(parser)
    _add_auth_arguments(parser)
    parser.add_argument("--otlp-endpoint", default="", metavar="URL",
                        help="send an OpenTelemetry span per JSON-RPC request to this OTLP/HTTP collector "
                             "(URL/v1/traces; default $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or "
                             "$OTEL_EXPORTER_OTLP_ENDPOINT; needs the kmcp[tracing] extra; off when unset)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]: the stdio MCP server")
    return parser


def _add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    auth = AuthSettings()
    group = parser.add_argument_group("auth", "bearer-token auth in front of /mcp, /sse, /message and /ws "
                                              "(/health, /metrics and the RFC 9728 metadata stay open)")
    group.add_argument("--auth", choices=("none", "kubernetes", "jwt"), default="none",
                       help="none (default), kubernetes (TokenReview) or jwt (JWKS)")
    group.add_argument("--auth-audience", action="append", default=[], metavar="AUD",
                       help="an audience the token must be bound to (repeatable)")
    group.add_argument("--resource-url", default="", metavar="URL",
                       help="the public URL of this MCP resource, for the protected-resource metadata")
    group.add_argument("--authorization-server", action="append", default=[], metavar="URL",
                       help="an OAuth authorization server for this resource (repeatable)")
    group.add_argument("--auth-cache-ttl", type=float, default=auth.cache_ttl, metavar="S",
                       help="kubernetes: cache reviews this long (default %(default)s)")
    group.add_argument("--auth-sar-resource", metavar="[GROUP/]RESOURCE",
                       help="kubernetes: also require a SubjectAccessReview on this resource, e.g. "
                            "kagent.dev/mcpservers")
    group.add_argument("--auth-sar-verb", default="get", help="kubernetes: the SAR verb (default %(default)s)")
    group.add_argument("--auth-sar-name", default="", help="kubernetes: the SAR object name")
    group.add_argument("--auth-sar-namespace", default="", help="kubernetes: the SAR namespace")
    group.add_argument("--kube-api-url", default="", metavar="URL",
                       help="kubernetes: the apiserver (default from KUBERNETES_SERVICE_HOST/PORT)")
    group.add_argument("--kube-token-file", default=auth.kube_token_file, metavar="FILE",
                       help="kubernetes: the adapter's own token (default the pod's ServiceAccount token)")
    group.add_argument("--kube-ca-file", default=auth.kube_ca_file, metavar="FILE",
                       help="kubernetes: the apiserver's CA (default the pod's ServiceAccount CA)")
    group.add_argument("--jwt-issuer", default="", metavar="URL", help="jwt: the required iss claim")
    group.add_argument("--jwt-jwks-url", default="", metavar="URL",
                       help="jwt: where the signing keys are (default OIDC discovery from the issuer)")
    group.add_argument("--jwt-ca-file", default="", metavar="FILE",
                       help="jwt: CA for the JWKS/discovery fetch (default the system store)")
    group.add_argument("--jwt-clock-skew", type=float, default=auth.jwt_clock_skew, metavar="S",
                       help="jwt: leeway for exp/nbf (default %(default)s)")


def _add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    limits = AdapterSettings()
    group = parser.add_argument_group(
        "limits", "what one client can make the adapter hold. Fixed: a request head must arrive within "
                  f"{limits.header_timeout:g} s and {limits.max_header_bytes} bytes (408/431); a server message is "
                  f"at most {limits.max_line_bytes} bytes (longer ones are dropped); a stream whose session ended "
                  "has 5 s to flush before its connection is closed; a session keeps at most "
                  f"{limits.event_log_size} events for Last-Event-ID resumption")
    group.add_argument("--stream-buffer-bytes", type=int, default=limits.stream_buffer_bytes, metavar="N",
                       help="bytes queued for one stream (SSE response, GET stream, /sse, WebSocket) whose client "
                            "reads slower than the server writes; past it the stream is dropped, and a legacy "
                            "/sse or WebSocket session ends. Also the standalone messages kept while no GET "
                            "stream listens (oldest dropped). One larger message still passes into an empty "
                            "queue (default %(default)s)")
    group.add_argument("--event-log-bytes", type=int, default=limits.event_log_bytes, metavar="N",
                       help="bytes of recent events a session keeps for Last-Event-ID resumption, the newest "
                            "always (default %(default)s)")
    group.add_argument("--send-timeout", type=float, default=limits.send_timeout, metavar="S",
                       help="disconnect a client that takes no bytes of its response for this long "
                            "(default %(default)s)")
    group.add_argument("--keepalive-timeout", type=float, default=limits.keepalive_timeout, metavar="S",
                       help="close a connection idle between requests this long (default %(default)s)")
    group.add_argument("--max-idle-connections", type=int, default=limits.max_idle_connections, metavar="N",
                       help="beyond this many idle connections, close the longest idle first "
                            "(default %(default)s)")
    group.add_argument("--body-timeout", type=float, default=limits.body_timeout, metavar="S",
                       help="a request body must arrive within this, plus 1 s per --min-body-rate bytes of it "
                            "(408; default %(default)s)")
    group.add_argument("--min-body-rate", type=int, default=limits.min_body_rate, metavar="BYTES/S",
                       help="upload rate a large body is given time for beyond --body-timeout "
                            "(default %(default)s)")


def _limit_settings(args: argparse.Namespace) -> dict[str, float]:
    values = {"stream_buffer_bytes": args.stream_buffer_bytes, "event_log_bytes": args.event_log_bytes,
              "send_timeout": args.send_timeout, "keepalive_timeout": args.keepalive_timeout,
              "max_idle_connections": args.max_idle_connections, "body_timeout": args.body_timeout,
              "min_body_rate": args.min_body_rate}
    for name, value in values.items():
        if value <= 0:
            raise _Usage(f"--{name.replace('_', '-')} must be positive")
    return values


def _auth_settings(args: argparse.Namespace) -> AuthSettings:
    common = {"audiences": tuple(args.auth_audience), "resource_url": args.resource_url,
              "authorization_servers": tuple(args.authorization_server), "cache_ttl": args.auth_cache_ttl}
    if args.auth == "none":
        return AuthSettings(**common)
    if not args.auth_audience:  # a token minted for anything else (the apiserver, another service) must not pass
        raise _Usage(f"--auth {args.auth} needs at least one --auth-audience")
    if args.auth == "jwt":
        if not args.jwt_issuer:
            raise _Usage("--auth jwt needs --jwt-issuer")
        if args.jwt_clock_skew < 0:
            raise _Usage("--jwt-clock-skew must not be negative")
        return AuthSettings(mode="jwt", jwt_issuer=args.jwt_issuer, jwt_jwks_url=args.jwt_jwks_url,
                            jwt_ca_file=args.jwt_ca_file, jwt_clock_skew=args.jwt_clock_skew,
                            **common)
    api_url = args.kube_api_url
    if not api_url:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise _Usage("--auth kubernetes outside a pod needs --kube-api-url")
        api_url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    sar = None
    if args.auth_sar_resource:
        group, _, resource = args.auth_sar_resource.rpartition("/")
        sar = AccessReview(verb=args.auth_sar_verb, group=group, resource=resource, name=args.auth_sar_name,
                           namespace=args.auth_sar_namespace)
    return AuthSettings(mode="kubernetes", sar=sar, kube_api_url=api_url, kube_token_file=args.kube_token_file,
                        kube_ca_file=args.kube_ca_file, **common)


def tracing_settings(endpoint: str, environ: Mapping[str, str]) -> TracingSettings:
    """--otlp-endpoint, else the standard OTEL_EXPORTER_OTLP_* variables; off when neither is set, when
    OTEL_SDK_DISABLED=true, or (with a warning, so a pod still starts) when the tracing extra is not installed."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingSettings()
    base = endpoint or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    url = f"{base.rstrip('/')}/v1/traces" if base else ""
    if not endpoint and environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        url = environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]  # used as is, per the OTLP exporter spec
    if not url:
        return TracingSettings()
    if not url.startswith(("http://", "https://")):
        raise _Usage(f"the OTLP endpoint must be an http(s) URL: {url}")
    import importlib.util

    if importlib.util.find_spec("opentelemetry") is None or \
            importlib.util.find_spec("opentelemetry.exporter.otlp.proto.common") is None:
        print("kmcp adapter: tracing is configured but the opentelemetry packages are not installed "
              "(pip install 'kmcp[tracing]'); running without it", file=sys.stderr)
        return TracingSettings()
    raw_headers = environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or environ.get("OTEL_EXPORTER_OTLP_HEADERS", "")
    from urllib.parse import unquote

    headers = tuple((unquote(k).strip().lower(), unquote(v).strip())
                    for k, _, v in (item.partition("=") for item in raw_headers.split(",") if "=" in item))
    return TracingSettings(traces_url=url, headers=headers,
                           service_name=environ.get("OTEL_SERVICE_NAME") or TracingSettings.service_name)


def parse_settings(argv: list[str]) -> tuple[AdapterSettings, argparse.Namespace]:
    args = build_parser().parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    try:
        host, port = parse_listen(args.listen)
    except ValueError as error:
        raise _Usage(str(error)) from None
    if args.session_idle_timeout <= 0:
        raise _Usage("--session-idle-timeout must be positive")
    if args.max_sessions < 1:
        raise _Usage("--max-sessions must be at least 1")
    if args.stateless_pool < 1:
        raise _Usage("--stateless-pool must be at least 1")
    if args.request_timeout < 0:
        raise _Usage("--request-timeout must not be negative (0 waits forever)")
    if args.warm_pool < 0:
        raise _Usage("--warm-pool must not be negative")
    if not args.command and not args.bridge:
        raise _Usage("no server command: use `kmcp adapter [options] -- CMD [ARGS...]` or --bridge DIR")
    settings = replace(AdapterSettings(), host=host, port=port, session_idle_timeout=args.session_idle_timeout,
                       max_sessions=args.max_sessions, request_timeout=args.request_timeout,
                       # Shared mode: the one process is handshake-era for its sessions, so modern requests are
                       # bridged onto it rather than probed (a probe would fix a modern SDK server's era).
                       server_era="legacy" if args.session_mode == "shared" and args.server_era == "auto"
                       else args.server_era, stateless_pool=args.stateless_pool,
                       # One process serves every session in shared mode: nothing to start ahead of demand.
                       warm_pool=0 if args.session_mode == "shared" else args.warm_pool,
                       allowed_origins=tuple(args.allow_origin),
                       max_body_bytes=args.max_body_bytes, enable_get_stream=not args.no_get_stream,
                       auth=_auth_settings(args), tracing=tracing_settings(args.otlp_endpoint, os.environ))
    settings = replace(settings, **_limit_settings(args))  # type: ignore[arg-type]
    peer_address, key = _peer_settings(args.peer_address, port)
    if peer_address is not None:
        settings = replace(settings, peer_address=peer_address, session_key=key)
    return settings, args


def _peer_settings(peer_address: str, listen_port: int) -> tuple[tuple[str, int] | None, bytes]:
    """Forwarding between replicas needs both this adapter's address and the shared key; with only one of them
    the adapter runs alone (plain ids), and says so."""
    key = os.environ.get(SESSION_KEY_ENV, "").encode()
    if not peer_address:
        return None, b""
    try:
        address = parse_peer_address(peer_address, listen_port)
    except ValueError as error:
        raise _Usage(f"--peer-address: {error}") from None
    if not key:
        print(f"kmcp adapter: --peer-address without ${SESSION_KEY_ENV}: session forwarding is off",
              file=sys.stderr)
        return None, b""
    if len(key) < MIN_KEY_BYTES:
        raise _Usage(f"${SESSION_KEY_ENV} must be at least {MIN_KEY_BYTES} bytes")
    return address, key


@asynccontextmanager
async def open_launcher(settings: AdapterSettings, args: argparse.Namespace) -> AsyncIterator[Launcher]:
    """The launcher sessions use: local children or the pod's bridge, shared by every session if asked."""
    async with _open_process_launcher(settings, args) as launcher:
        if args.session_mode != "shared":
            yield launcher
            return
        from kmcp.adapter.sessions.shared import SharedLauncher

        shared = SharedLauncher(launcher, max_line_bytes=settings.max_line_bytes)
        async with trio.open_nursery() as nursery:
            await nursery.start(shared.run)
            yield shared
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def _open_process_launcher(settings: AdapterSettings, args: argparse.Namespace) -> AsyncIterator[Launcher]:
    if args.bridge:
        try:
            from kmcp.adapter.stdio.fifo_launcher import open_fifo_launcher  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise _Usage(f"--bridge {args.bridge}: the FIFO launcher is not available in this build") from None
        async with open_fifo_launcher(args.bridge, settings) as launcher:
            yield launcher
        return
    yield LocalLauncher(args.command, kill_grace=settings.kill_grace)


async def _signals(shutdown: trio.Event, nursery: trio.Nursery) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
        async for signum in received:
            if shutdown.is_set():  # a second signal: stop now
                print(f"kmcp adapter: {signal.Signals(signum).name} again, stopping now", file=sys.stderr)
                nursery.cancel_scope.cancel()
                return
            print(f"kmcp adapter: {signal.Signals(signum).name}, draining", file=sys.stderr)
            shutdown.set()


async def run(settings: AdapterSettings, args: argparse.Namespace) -> None:
    from kmcp.adapter.app import serve_adapter

    shutdown = trio.Event()
    async with open_launcher(settings, args) as launcher, trio.open_nursery() as nursery:
        nursery.start_soon(_signals, shutdown, nursery)
        async with trio.open_nursery() as serving:
            port = await serving.start(serve_adapter, settings, launcher, shutdown)
            what = " ".join(args.command) if args.command else f"bridge {args.bridge}"
            print(f"kmcp adapter: serving {what} on http://{settings.host}:{port} (/mcp, /sse)", file=sys.stderr,
                  flush=True)
        nursery.cancel_scope.cancel()  # drained: stop watching for signals


def main(argv: list[str]) -> int:
    try:
        settings, args = parse_settings(argv)
    except _Usage as error:
        print(f"kmcp adapter: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    from kmcp.adapter.app import ListenError

    try:
        try:
            trio.run(run, settings, args)
        except BaseExceptionGroup as group:  # raised inside a nursery: the one error it carries
            raise _single(group) from None
    except _Usage as error:
        print(f"kmcp adapter: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ListenError as error:
        print(f"kmcp adapter: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(f"kmcp adapter: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _single(group: BaseExceptionGroup) -> BaseException:
    """The only leaf of nested single-exception groups, else the group itself (a real multi-error stays whole)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
