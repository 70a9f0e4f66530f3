"""Session ids that name the adapter owning the session, so replicas behind one Service can hand requests over.

With several adapter pods behind one ClusterIP Service and no sticky sessions, a session's later requests land on
any pod. The pod that creates a session therefore writes its own address (pod IP and port) into the session id,
and a pod that receives a request for a session it does not hold forwards it there (see ``forwarding.py``).

An id is ``base64url(nonce | address | mac)`` without padding: a 16-byte random nonce, the owner's address (4 or
16 address bytes, then a 2-byte port, big-endian) and the first 16 bytes of HMAC-SHA256 over a version label, the
nonce and the address. 51 characters for an IPv4 owner, 67 for IPv6; only ``A-Z a-z 0-9 - _``, so the id is safe
in a header and in the legacy transport's query string. The MAC makes the address tamper-evident: a pod forwards
only to an address inside an id it can verify (constant-time compare), so a client cannot steer it at arbitrary
hosts (no SSRF), and a forged or edited id is simply unknown (404). The address is not secret: clients may see the
pod IP in their session id.

The key is shared by all replicas of one MCPServer and by nothing else. It cannot be derived from anything the
pods share that clients or other workloads cannot read (the MCPServer's name and UID are public), and the renderer
is a pure function, so it cannot invent a random key. The controller therefore creates a Secret per MCPServer
(``<name>-session-key``, owned by the MCPServer, a random key generated once, created only when absent so replicas
and restarts keep agreeing) and the renderer hands it to the adapter as an environment variable. Changing the key
only ends the open sessions: their ids stop verifying and clients re-initialize, as MCP prescribes for a 404.

Without a key or an address (``kmcp run``, ``kmcp adapter -- cmd``) ids are plain random tokens, as before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets

_LABEL = b"kmcp-session-v1\x00"
_NONCE = 16
_MAC = 16
_V4 = _NONCE + 4 + 2 + _MAC
_V6 = _NONCE + 16 + 2 + _MAC
MIN_KEY_BYTES = 16


def parse_peer_address(value: str, default_port: int) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address -> (ip, port). Raises ValueError.

    Only IP literals: the address is packed into the id, and a pod IP is what the downward API gives."""
    host, port = value, default_port
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"peer address {value!r}: expected IP, IP:PORT or [IPv6]:PORT")
        if rest:
            port = _port(rest[1:], value)
    elif value.count(":") == 1:
        host, _, raw_port = value.partition(":")
        port = _port(raw_port, value)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"peer address {value!r}: {host!r} is not an IP address") from None
    if not 0 < port <= 65535:
        raise ValueError(f"peer address {value!r}: port {port} out of range")
    return str(ip), port


def _port(raw: str, value: str) -> int:
    if not raw.isdigit():
        raise ValueError(f"peer address {value!r}: bad port {raw!r}")
    return int(raw)


class SessionIds:
    """Mints session ids and tells which other adapter owns one. Pure: no I/O."""

    def __init__(self, key: bytes = b"", address: tuple[str, int] | None = None) -> None:
        if key and len(key) < MIN_KEY_BYTES:
            raise ValueError(f"session key shorter than {MIN_KEY_BYTES} bytes")
        self.forwarding = bool(key) and address is not None
        self._key = key
        self._address = _pack(*address) if address is not None else b""

    def mint(self) -> str:
        """A fresh id; it names this adapter when forwarding is configured."""
        if not self.forwarding:
            return secrets.token_hex(16)
        payload = secrets.token_bytes(_NONCE) + self._address
        return base64.urlsafe_b64encode(payload + self._mac(payload)).rstrip(b"=").decode("ascii")

    def owner(self, session_id: str) -> tuple[str, int] | None:
        """The (ip, port) of the other adapter that minted ``session_id``; None when the id is not a valid id of
        this MCPServer's adapters (unknown, forged, tampered with) or names this adapter itself."""
        if not self.forwarding or len(session_id) not in (_encoded(_V4), _encoded(_V6)):
            return None
        try:
            raw = base64.urlsafe_b64decode(session_id + "=" * (-len(session_id) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) not in (_V4, _V6) or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != session_id:
            return None  # only the canonical spelling: the last character's spare bits must be zero
        payload, mac = raw[:-_MAC], raw[-_MAC:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        address = payload[_NONCE:]
        if address == self._address:
            return None
        ip = ipaddress.ip_address(address[:-2])
        return str(ip), int.from_bytes(address[-2:], "big")

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _LABEL + payload, hashlib.sha256).digest()[:_MAC]


def _pack(host: str, port: int) -> bytes:
    return ipaddress.ip_address(host).packed + port.to_bytes(2, "big")


def _encoded(size: int) -> int:
    return (size * 4 + 2) // 3
