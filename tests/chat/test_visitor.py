"""Visitor identity: which address counts, and that only hashes are kept."""

from __future__ import annotations

import ipaddress

import pytest

from app.chat.visitor import VisitorIdentifier
from app.errors import BadRequest

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


@pytest.fixture
def identifier() -> VisitorIdentifier:
    return VisitorIdentifier(PROXIES, b"k" * 32)


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        # An untrusted peer's X-Forwarded-For is the peer's own claim: ignored.
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        # Rightmost untrusted hop: what a visitor prepends cannot move it.
        ("10.0.0.2", "1.2.3.4, 198.51.100.1, 10.0.0.7", "198.51.100.1"),
        ("127.0.0.1", "spoofed, 198.51.100.1", "198.51.100.1"),
        # A garbage hop where our proxy writes: trust nothing behind it, use the proxy.
        ("10.0.0.2", "198.51.100.1, nonsense", "10.0.0.2"),
        ("10.0.0.2", "10.0.0.5, 10.0.0.6", "10.0.0.5"),
        ("10.0.0.2", "198.51.100.1:4431", "198.51.100.1"),
        ("10.0.0.2", "[2001:db8::1]", "2001:db8::1"),
    ],
)
def test_client_address(
    identifier: VisitorIdentifier, peer: str, forwarded_for: str | None, expected: str
) -> None:
    """X-Forwarded-For counts only from a trusted peer, and then its rightmost untrusted hop."""
    assert str(identifier.client_address(peer, forwarded_for)) == expected


def test_ids_are_keyed_hashes_not_addresses(identifier: VisitorIdentifier) -> None:
    """No raw address or thumbmark is ever part of a stored id."""
    visitor = identifier.identify("203.0.113.9", None, "thumb-123")
    assert all("203.0.113.9" not in vid and "thumb" not in vid for vid in visitor.ids)
    assert len(visitor.ids) == 2
    other_key = VisitorIdentifier(PROXIES, b"x" * 32).identify("203.0.113.9", None, None)
    assert other_key.ids[0] != visitor.ids[0]


def test_thumbmark_does_not_replace_the_address_limit(identifier: VisitorIdentifier) -> None:
    """Rotating thumbmarks changes one id but the address id stays the same."""
    first = identifier.identify("203.0.113.9", None, "aaa")
    second = identifier.identify("203.0.113.9", None, "bbb")
    assert first.ids[0] == second.ids[0]
    assert first.ids[1] != second.ids[1]


def test_ipv6_visitors_are_counted_per_64(identifier: VisitorIdentifier) -> None:
    """Addresses in one /64 are one visitor; another /64 is another."""
    one = identifier.identify("2001:db8:1:2::1", None, None)
    same = identifier.identify("2001:db8:1:2:ffff::9", None, None)
    other = identifier.identify("2001:db8:1:3::1", None, None)
    assert one.ids == same.ids != other.ids


@pytest.mark.parametrize("thumbmark", ["", "a" * 129, "has space", "semi;colon", "é"])
def test_odd_thumbmarks_are_refused(identifier: VisitorIdentifier, thumbmark: str) -> None:
    """A thumbmark outside the allowed shape is a 400, not a free new identity."""
    with pytest.raises(BadRequest):
        identifier.identify("203.0.113.9", None, thumbmark)
