"""Bearer JWT verification against a JWKS, with ``cryptography`` directly.

JWS compact verification for RS256/384/512 and ES256/384 is a few dozen lines; doing it here avoids a new dependency
and keeps the accepted algorithms an explicit allow-list (``alg: none`` and HMAC never verify)."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import trio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kmcp.adapter.auth_client import FetchError, fetch

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512,
    "ES256": hashes.SHA256, "ES384": hashes.SHA384,
}
_CURVES: dict[str, tuple[ec.EllipticCurve, int, str]] = {
    "P-256": (ec.SECP256R1(), 32, "ES256"), "P-384": (ec.SECP384R1(), 48, "ES384")}
REFETCH_INTERVAL = 30.0  # an unknown kid re-fetches the JWKS at most this often


class TokenInvalid(Exception):
    """The token is not acceptable; ``reason`` is a short metric label, never the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def b64url(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise TokenInvalid("malformed") from None


def _int(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("not a base64url integer")
    return int.from_bytes(b64url(value), "big")


def jwk_to_key(jwk: dict[str, object]) -> tuple[PublicKey, str | None] | None:
    """A public key from one JWK and the alg it is pinned to (None: any of its family); None if unusable."""
    try:
        if jwk.get("kty") == "RSA":
            key: PublicKey = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
        elif jwk.get("kty") == "EC" and jwk.get("crv") in _CURVES:
            curve, _, _ = _CURVES[str(jwk["crv"])]
            key = ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve).public_key()
        else:
            return None
    except (KeyError, ValueError, TokenInvalid):
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    alg = jwk.get("alg")
    return key, alg if isinstance(alg, str) else None


def verify_signature(key: PublicKey, alg: str, signing_input: bytes, signature: bytes) -> bool:
    hash_factory = _HASHES.get(alg)
    if hash_factory is None:
        return False
    try:
        if alg.startswith("RS") and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hash_factory())
            return True
        if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
            size = next(size for _, (_, size, name) in _CURVES.items() if name == alg)
            if key.curve.key_size != size * 8 or len(signature) != 2 * size:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                       int.from_bytes(signature[size:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hash_factory()))
            return True
    except InvalidSignature:
        return False
    return False


@dataclass(frozen=True)
class Claims:
    subject: str
    claims: dict[str, object]


def check_claims(claims: dict[str, object], *, issuer: str, audiences: tuple[str, ...], now: float,
                 skew: float) -> None:
    if claims.get("iss") != issuer:
        raise TokenInvalid("wrong_issuer")
    aud = claims.get("aud")
    token_audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audiences and not any(a in audiences for a in token_audiences):
        raise TokenInvalid("wrong_audience")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise TokenInvalid("no_expiry")
    if now > exp + skew:
        raise TokenInvalid("expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and now + skew < nbf:
        raise TokenInvalid("not_yet_valid")


class JwtVerifier:
    """Verifies bearer JWTs; the JWKS is fetched lazily, cached, and re-fetched when a token names an unknown kid."""

    def __init__(self, *, issuer: str, audiences: tuple[str, ...], jwks_url: str | None, clock_skew: float = 60.0,
                 ca_file: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self.audiences = audiences
        self.jwks_url = jwks_url
        self.clock_skew = clock_skew
        self.ca_file = ca_file
        self.clock = clock
        self._keys: dict[str | None, list[tuple[PublicKey, str | None]]] = {}
        self._fetched_at: float | None = None
        self._lock = trio.Lock()

    async def verify(self, token: str) -> Claims:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("malformed")
        try:
            header = msgspec.json.decode(b64url(parts[0]))
            claims = msgspec.json.decode(b64url(parts[1]))
        except msgspec.DecodeError:
            raise TokenInvalid("malformed") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenInvalid("malformed")
        if "crit" in header:  # RFC 7515 4.1.11: extensions we do not understand make the token unacceptable
            raise TokenInvalid("unsupported_header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in _HASHES:
            raise TokenInvalid("bad_algorithm")
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else None
        candidates = await self._keys_for(kid)
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        signature = b64url(parts[2])
        if not any(verify_signature(key, alg, signing_input, signature)
                   for key, pinned in candidates if pinned in (None, alg)):
            raise TokenInvalid("bad_signature")
        check_claims(claims, issuer=self.issuer, audiences=self.audiences, now=self.clock(), skew=self.clock_skew)
        subject = claims.get("sub")
        return Claims(subject if isinstance(subject, str) else "", claims)

    async def _keys_for(self, kid: str | None) -> list[tuple[PublicKey, str | None]]:
        async with self._lock:
            if self._fetched_at is None or (
                    self._lookup(kid) is None and trio.current_time() - self._fetched_at >= REFETCH_INTERVAL):
                await self._refresh()
            found = self._lookup(kid)
        if found is None:
            raise TokenInvalid("unknown_key")
        return found

    def _lookup(self, kid: str | None) -> list[tuple[PublicKey, str | None]] | None:
        if kid is None:  # no kid: try every key
            every = [key for keys in self._keys.values() for key in keys]
            return every or None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        url = self.jwks_url or await self._discover()
        response = await fetch(url, ca_file=self.ca_file)
        if response.status != 200:
            raise FetchError(f"JWKS {url}: HTTP {response.status}")
        try:
            document = msgspec.json.decode(response.body)
        except msgspec.DecodeError:
            raise FetchError(f"JWKS {url}: not JSON") from None
        keys: dict[str | None, list[tuple[PublicKey, str | None]]] = {}
        for jwk in document.get("keys", []) if isinstance(document, dict) else []:
            if isinstance(jwk, dict) and (parsed := jwk_to_key(jwk)) is not None:
                kid = jwk.get("kid")
                keys.setdefault(kid if isinstance(kid, str) else None, []).append(parsed)
        self._keys = keys
        self._fetched_at = trio.current_time()

    async def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        response = await fetch(url, ca_file=self.ca_file)
        try:
            document = msgspec.json.decode(response.body) if response.status == 200 else None
        except msgspec.DecodeError:
            document = None
        jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks_uri, str):
            raise FetchError(f"OIDC discovery {url}: no jwks_uri")
        self.jwks_url = jwks_uri
        return jwks_uri
