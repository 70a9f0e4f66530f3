"""Bearer-JWT auth in front of the adapter: keys made here, a JWKS served on 127.0.0.1, tokens signed here."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import h11
import msgspec
import pytest
import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from kmcp.adapter.auth_jwt import JwtVerifier, TokenInvalid
from kmcp.adapter.settings import AuthSettings
from tests.adapter.rawhttp import FASTMCP_SERVER, request, running_adapter

ISSUER = "https://issuer.example"
AUDIENCE = "https://mcp.example/mcp"
RESOURCE = "https://mcp.example/mcp"
METADATA = 'Bearer resource_metadata="https://mcp.example/.well-known/oauth-protected-resource"'
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int) -> str:
    return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": _int(numbers.n), "e": _int(numbers.e)}
    point = key.public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(point.x.to_bytes(32, "big")),
            "y": b64(point.y.to_bytes(32, "big"))}


def sign(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str | None = "rsa1", **claims: object) -> str:
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    header: dict[str, object] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300, **claims}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}".encode()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode()}.{b64(signature)}"


class JwksServer:
    """Serves one JSON document per path on 127.0.0.1 and counts the fetches."""

    def __init__(self, documents: dict[str, object]) -> None:
        self.documents = documents
        self.fetches = 0
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Request):
                    target = event.target.decode()
                elif isinstance(event, h11.EndOfMessage):
                    break
            self.fetches += 1
            document = self.documents.get(target)
            status, body = (200, msgspec.json.encode(document)) if document is not None else (404, b"{}")
            await stream.send_all(connection.send(h11.Response(status_code=status, headers=[
                ("content-type", "application/json"), ("content-length", str(len(body)))])) +
                connection.send(h11.Data(data=body)) + connection.send(h11.EndOfMessage()))


@asynccontextmanager
async def jwks_server(keys: list[dict[str, str]]) -> AsyncIterator[JwksServer]:
    server = JwksServer({"/jwks": {"keys": keys}})
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        server.documents["/.well-known/openid-configuration"] = {
            "issuer": ISSUER, "jwks_uri": f"http://127.0.0.1:{server.port}/jwks"}
        yield server
        nursery.cancel_scope.cancel()


def jwt_auth(server: JwksServer, **overrides: object) -> AuthSettings:
    settings = {"mode": "jwt", "audiences": (AUDIENCE,), "resource_url": RESOURCE, "jwt_issuer": ISSUER,
                "jwt_jwks_url": f"http://127.0.0.1:{server.port}/jwks",
                "authorization_servers": (ISSUER,), **overrides}
    return AuthSettings(**settings)  # type: ignore[arg-type]


# --- the verifier alone ------------------------------------------------------------------------------------------

async def test_verifier_accepts_rs256_and_es256_and_rejects_the_rest() -> None:
    async with jwks_server([jwk(RSA_KEY, "rsa1"), jwk(EC_KEY, "ec1")]) as server:
        verifier = JwtVerifier(issuer=ISSUER, audiences=(AUDIENCE,), jwks_url=f"http://127.0.0.1:{server.port}/jwks",
                               clock_skew=5)
        assert (await verifier.verify(sign(RSA_KEY))).subject == "alice"
        assert (await verifier.verify(sign(EC_KEY, kid="ec1"))).subject == "alice"
        assert (await verifier.verify(sign(EC_KEY, kid=None))).subject == "alice"  # no kid: any key
        cases = {
            "wrong_audience": sign(RSA_KEY, aud="https://other.example"),
            "wrong_issuer": sign(RSA_KEY, iss="https://evil.example"),
            "expired": sign(RSA_KEY, exp=int(time.time()) - 60),
            "not_yet_valid": sign(RSA_KEY, nbf=int(time.time()) + 60),
            "bad_signature": sign(OTHER_RSA_KEY, kid="rsa1"),
            "malformed": "not.a.jwt",
        }
        for reason, token in cases.items():
            with pytest.raises(TokenInvalid) as caught:
                await verifier.verify(token)
            assert caught.value.reason == reason
        # alg none / HS256 never verify, whatever the key set
        header = b64(b'{"alg":"none","kid":"rsa1"}')
        unsigned = f"{header}.{sign(RSA_KEY).split('.')[1]}."
        with pytest.raises(TokenInvalid, match="bad_algorithm"):
            await verifier.verify(unsigned)
        crit_header = b64(json.dumps({"alg": "RS256", "kid": "rsa1", "crit": ["x"]}).encode())
        crit = f"{crit_header}.{sign(RSA_KEY).split('.', 1)[1]}"
        with pytest.raises(TokenInvalid, match="unsupported_header"):
            await verifier.verify(crit)
        # an EC signature under an RSA-pinned kid is refused
        ec_as_rsa = sign(EC_KEY, kid="rsa1")
        with pytest.raises(TokenInvalid, match="bad_signature"):
            await verifier.verify(ec_as_rsa)


async def test_clock_skew_allows_a_just_expired_token() -> None:
    async with jwks_server([jwk(RSA_KEY, "rsa1")]) as server:
        verifier = JwtVerifier(issuer=ISSUER, audiences=(AUDIENCE,), jwks_url=f"http://127.0.0.1:{server.port}/jwks",
                               clock_skew=30)
        await verifier.verify(sign(RSA_KEY, exp=int(time.time()) - 10))


async def test_unknown_kid_refetches_the_jwks_at_most_once_per_interval() -> None:
    async with jwks_server([jwk(RSA_KEY, "rsa1")]) as server:
        verifier = JwtVerifier(issuer=ISSUER, audiences=(AUDIENCE,), jwks_url=f"http://127.0.0.1:{server.port}/jwks")
        await verifier.verify(sign(RSA_KEY))
        assert server.fetches == 1
        with pytest.raises(TokenInvalid, match="unknown_key"):
            await verifier.verify(sign(EC_KEY, kid="ec1"))
        assert server.fetches == 1  # fetched moments ago: not again
        server.documents["/jwks"] = {"keys": [jwk(RSA_KEY, "rsa1"), jwk(EC_KEY, "ec1")]}  # key rotation
        verifier._fetched_at = trio.current_time() - 60  # the refetch interval has passed
        await verifier.verify(sign(EC_KEY, kid="ec1"))
        assert server.fetches == 2


async def test_oidc_discovery_finds_the_jwks() -> None:
    async with jwks_server([jwk(RSA_KEY, "rsa1")]) as server:
        issuer = f"http://127.0.0.1:{server.port}"
        verifier = JwtVerifier(issuer=issuer, audiences=(AUDIENCE,), jwks_url=None)
        assert (await verifier.verify(sign(RSA_KEY, iss=issuer))).subject == "alice"


# --- through the adapter -----------------------------------------------------------------------------------------

async def initialize(port: int, token: str | None) -> tuple[int, dict[str, str]]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    body = msgspec.json.encode({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    response = await request(port, "POST", "/mcp", body, headers)
    return response.status, response.headers


@pytest.mark.slow
async def test_adapter_admits_good_tokens_and_challenges_the_rest() -> None:
    async with jwks_server([jwk(RSA_KEY, "rsa1"), jwk(EC_KEY, "ec1")]) as server, \
            running_adapter(auth=jwt_auth(server)) as adapter:
        status, _ = await initialize(adapter.port, sign(RSA_KEY))
        assert status == 200
        status, _ = await initialize(adapter.port, sign(EC_KEY, kid="ec1"))
        assert status == 200
        status, headers = await initialize(adapter.port, None)
        assert status == 401
        assert headers["www-authenticate"] == METADATA  # no token: no error code
        for token in (sign(RSA_KEY, aud="https://other.example"), sign(RSA_KEY, exp=int(time.time()) - 3600),
                      sign(OTHER_RSA_KEY, kid="rsa1"), sign(OTHER_RSA_KEY, kid="nobody"), "garbage"):
            status, headers = await initialize(adapter.port, token)
            assert status == 401, token
            assert headers["www-authenticate"] == f'{METADATA}, error="invalid_token"'
        for path in ("/sse", "/ws"):
            assert (await adapter.request("GET", path)).status == 401
        assert (await adapter.request("GET", "/mcp", headers={"authorization": "Basic Zm9vOmJhcg=="})).status == 401
        assert (await adapter.request("GET", "/health")).status == 200
        metrics = (await adapter.request("GET", "/metrics")).body.decode()
        assert 'kmcp_adapter_auth_failures_total{reason="missing_token"}' in metrics
        assert 'kmcp_adapter_auth_failures_total{reason="wrong_audience"}' in metrics
        assert 'kmcp_adapter_auth_failures_total{reason="expired"}' in metrics
        assert 'kmcp_adapter_auth_failures_total{reason="bad_signature"}' in metrics
        assert 'kmcp_adapter_auth_failures_total{reason="unknown_key"}' in metrics
        assert sign(RSA_KEY).split(".")[2] not in metrics


@pytest.mark.slow
async def test_protected_resource_metadata_is_served_unauthenticated() -> None:
    async with jwks_server([jwk(RSA_KEY, "rsa1")]) as server, running_adapter(auth=jwt_auth(server)) as adapter:
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
            response = await adapter.request("GET", path)
            assert response.status == 200
            assert response.json() == {"resource": RESOURCE, "authorization_servers": [ISSUER],
                                       "bearer_methods_supported": ["header"]}


@pytest.mark.slow
async def test_auth_off_by_default() -> None:
    async with running_adapter() as adapter:
        assert (await adapter.request("GET", "/.well-known/oauth-protected-resource")).status == 404
        status, _ = await initialize(adapter.port, None)
        assert status == 200


def test_auth_stays_lazy_when_off() -> None:
    import subprocess

    code = ("import sys; from kmcp.adapter.cli import parse_settings; "
            "parse_settings(['--', 'true']); from kmcp.adapter import app; "
            "print([m for m in sys.modules if m.startswith('kmcp.adapter.auth')])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_cli_builds_auth_settings() -> None:
    from kmcp.adapter.cli import main, parse_settings

    settings, _ = parse_settings(["--auth", "jwt", "--jwt-issuer", ISSUER, "--auth-audience", AUDIENCE,
                                  "--resource-url", RESOURCE, "--authorization-server", ISSUER, "--", "true"])
    assert settings.auth.mode == "jwt" and settings.auth.audiences == (AUDIENCE,)
    settings, _ = parse_settings(["--auth", "kubernetes", "--auth-audience", "a", "--kube-api-url", "https://k:6443",
                                  "--auth-sar-resource", "kagent.dev/mcpservers", "--auth-sar-name", "x",
                                  "--auth-sar-namespace", "ns", "--", "true"])
    assert settings.auth.sar is not None
    assert (settings.auth.sar.group, settings.auth.sar.resource, settings.auth.sar.verb) == (
        "kagent.dev", "mcpservers", "get")
    assert main(["--auth", "jwt", "--auth-audience", "a", "--", "true"]) == 2  # no issuer
    assert main(["--auth", "jwt", "--jwt-issuer", ISSUER, "--", "true"]) == 2  # no audience


CLIENT = Path(__file__).with_name("sdk_client.py")


@pytest.mark.slow
async def test_official_sdk_client_with_a_bearer_token() -> None:
    async with jwks_server([jwk(RSA_KEY, "rsa1")]) as server, \
            running_adapter(FASTMCP_SERVER, auth=jwt_auth(server)) as adapter:
        url = f"http://127.0.0.1:{adapter.port}/mcp"
        with trio.fail_after(60):
            done = await trio.run_process([sys.executable, str(CLIENT), url, "streamable", sign(RSA_KEY)],
                                          capture_stdout=True, capture_stderr=True, check=False)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
        assert seen["echo"] == "hello"
        with trio.fail_after(60):
            refused = await trio.run_process([sys.executable, str(CLIENT), url, "streamable"],
                                             capture_stdout=True, capture_stderr=True, check=False)
        assert refused.returncode != 0
