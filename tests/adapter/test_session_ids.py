"""Session ids that name their owning replica: minted, verified, and refused when forged or edited."""

from __future__ import annotations

import re

import pytest

from kmcp import render
from kmcp.adapter import cli as adapter_cli
from kmcp.adapter.protocol.session_ids import SessionIds, parse_peer_address

KEY = b"k" * 32
A = ("10.0.0.1", 3000)
B = ("10.0.0.2", 3000)


def test_an_id_names_the_replica_that_minted_it() -> None:
    a, b = SessionIds(KEY, A), SessionIds(KEY, B)
    session_id = a.mint()
    assert b.owner(session_id) == A
    assert a.owner(session_id) is None  # its own: looked up locally, never forwarded
    assert re.fullmatch(r"[A-Za-z0-9_-]{51}", session_id)  # header and query-string safe, short
    assert len({a.mint() for _ in range(100)}) == 100


def test_ipv6_owner_and_port_round_trip() -> None:
    owner = ("fd00::1:2", 8443)
    session_id = SessionIds(KEY, owner).mint()
    assert len(session_id) == 67
    assert SessionIds(KEY, A).owner(session_id) == owner


def test_every_single_character_edit_is_refused() -> None:
    session_id = SessionIds(KEY, A).mint()
    b = SessionIds(KEY, B)
    for index, char in enumerate(session_id):
        for replacement in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
            if replacement != char:
                edited = session_id[:index] + replacement + session_id[index + 1:]
                assert b.owner(edited) is None, (index, replacement)


def test_an_id_minted_with_another_key_is_refused() -> None:
    other = SessionIds(b"x" * 32, A).mint()
    assert SessionIds(KEY, B).owner(other) is None


def test_garbage_ids_are_refused() -> None:
    b = SessionIds(KEY, B)
    for value in ["", "abc", "=" * 51, "é" * 51, "A" * 51, "A" * 67, "%%%" * 17, "a" * 32]:
        assert b.owner(value) is None


def test_without_key_or_address_ids_are_plain_tokens_and_never_forwarded() -> None:
    for ids in (SessionIds(), SessionIds(KEY, None), SessionIds(b"", A)):
        assert not ids.forwarding
        assert re.fullmatch(r"[0-9a-f]{32}", ids.mint())
    assert SessionIds().owner(SessionIds(KEY, A).mint()) is None


def test_short_keys_are_rejected() -> None:
    with pytest.raises(ValueError):
        SessionIds(b"short", A)


@pytest.mark.parametrize(("value", "expected"), [
    ("10.1.2.3", ("10.1.2.3", 3000)), ("10.1.2.3:8080", ("10.1.2.3", 8080)), ("fd00::5", ("fd00::5", 3000)),
    ("[fd00::5]:81", ("fd00::5", 81)), ("[fd00::5]", ("fd00::5", 3000))])
def test_peer_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_peer_address(value, 3000) == expected


@pytest.mark.parametrize("value", ["pod.example", "10.1.2.3:x", "10.1.2.3:0", "[fd00::5", "", "$(POD_IP)"])
def test_bad_peer_addresses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_peer_address(value, 3000)


def test_the_adapter_reads_the_key_variable_the_renderer_sets() -> None:
    assert render.SESSION_KEY_ENV == adapter_cli.SESSION_KEY_ENV
