"""Who is asking: the client address (X-Forwarded-For only from trusted proxies) and thumbmark."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.errors import BadRequest

if TYPE_CHECKING:
    from app.settings import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
THUMBMARK = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# A home or mobile IPv6 client owns a whole /64: limiting single addresses would let it rotate.
IPV6_VISITOR_PREFIX = 64


@dataclass(frozen=True, slots=True)
class Visitor:
    """A visitor's hashed ids: the address always, the browser's thumbmark when sent, and the
    visitor pass's id when one came (LLMGW_PASS): each has its own per-visitor window."""

    address_id: str
    thumbmark_id: str | None
    pass_id: str | None = None
    # The address itself, for this request only (a visitor pass is bound to its network);
    # never stored, logged or shown: the ids above are what is kept.
    address: IPAddress | None = field(default=None, repr=False)

    @property
    def owner(self) -> str:
        """Who a conversation belongs to: the browser when it says, else the address."""
        return self.thumbmark_id or self.address_id

    @property
    def ids(self) -> list[str]:
        """Every id that is limited; rotating thumbmarks does not escape the address limit."""
        others = (self.thumbmark_id, self.pass_id)
        return [self.address_id, *(other for other in others if other is not None)]


class VisitorIdentifier:
    """Finds the client address behind trusted proxies and hashes ids with a keyed hash."""

    def __init__(self, trusted_proxies: tuple[Network, ...], hash_key: bytes) -> None:
        self._trusted = trusted_proxies
        self._hash_key = hash_key[:64]

    def identify(
        self, peer: str | None, forwarded_for: str | None, thumbmark: str | None
    ) -> Visitor:
        """The visitor behind this socket peer and these headers."""
        address = self.client_address(peer, forwarded_for)
        if address is not None and address.version == 6:
            network = ipaddress.IPv6Network((address, IPV6_VISITOR_PREFIX), strict=False)
            address_key = f"ip6:{network.network_address}"
        else:
            address_key = f"ip:{address or peer or 'unknown'}"
        return Visitor(self._hash(address_key), self._thumbmark_id(thumbmark), address=address)

    def client_address(self, peer: str | None, forwarded_for: str | None) -> IPAddress | None:
        """The peer, or the rightmost untrusted X-Forwarded-For hop when the peer is our proxy."""
        peer_address = _parse(peer)
        if peer_address is None or not forwarded_for or not self._is_trusted(peer_address):
            return peer_address
        hops = [_parse(hop) for hop in forwarded_for.split(",")]
        for hop in reversed(hops):
            if hop is None:
                return peer_address  # a hop our proxy did not write: trust nothing left of it
            if not self._is_trusted(hop):
                return hop
        return hops[0] or peer_address

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)

    def _thumbmark_id(self, thumbmark: str | None) -> str | None:
        if thumbmark is None:
            return None
        if not THUMBMARK.fullmatch(thumbmark):
            raise BadRequest("X-Thumbmark-Id must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        return self._hash("tm:" + thumbmark)

    def _hash(self, value: str) -> str:
        return hashlib.blake2b(value.encode(), key=self._hash_key, digest_size=16).hexdigest()


def _parse(text: str | None) -> IPAddress | None:
    if not text:
        return None
    text = text.strip().removeprefix("[").split("]")[0]
    if text.count(":") == 1:  # IPv4 with a port
        text = text.split(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
