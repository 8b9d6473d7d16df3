"""X-Forwarded-For behind trusted proxies: whatever a visitor writes to the left of the chain,
the limit applies to the rightmost address no trusted proxy vouches for."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import httpx
import pytest
from gateway_server import GatewayHandle, running_gateway
from sim_process import SimHandle, running_sim

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

VISITOR_LIMIT = 3
VISITOR = "203.0.113.7"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with running_sim("--decode-rate", "2000") as handle:
        yield handle


def gateway_behind(
    sim: SimHandle, redis_url: str, trusted: str
) -> AbstractContextManager[GatewayHandle]:
    return running_gateway(
        upstream_url=sim.url,
        redis_url=redis_url,
        trusted_proxies=trusted,
        visitor_limit=VISITOR_LIMIT,
        global_limit=1000,
        max_inflight=100,
    )


def spoofed_prefix(rng: random.Random) -> str:
    """What a visitor may send as its own X-Forwarded-For: random addresses, some looking like
    our proxies, some not addresses at all."""
    hops = [
        f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        for _ in range(rng.randint(1, 4))
    ]
    hops.insert(rng.randint(0, len(hops)), rng.choice(["10.0.0.1", "127.0.0.1", "unknown", "::1"]))
    return ", ".join(hops)


def statuses(gateway_url: str, chains: list[str]) -> list[int]:
    with httpx.Client(timeout=15) as client:
        return [
            client.post(
                f"{gateway_url}/api/chat", json={"input": "hi"}, headers={"X-Forwarded-For": chain}
            ).status_code
            for chain in chains
        ]


@pytest.mark.parametrize(
    ("trusted", "suffix"),
    [("127.0.0.1/32", ""), ("127.0.0.1/32,10.0.0.0/8", ", 10.1.2.3, 10.9.8.7")],
    ids=["one-proxy", "proxy-chain"],
)
def test_spoofed_left_part_still_limits_the_rightmost_untrusted_hop(
    sim: SimHandle, redis_url: str, trusted: str, suffix: str
) -> None:
    """The peer is a trusted proxy: a new spoofed left part on every request does not escape
    the visitor limit of the rightmost untrusted hop, written by our proxy (behind a chain of
    trusted proxies, too)."""
    rng = random.Random(7)
    chains = [f"{spoofed_prefix(rng)}, {VISITOR}{suffix}" for _ in range(VISITOR_LIMIT + 3)]
    with gateway_behind(sim, redis_url, trusted) as gateway:
        got = statuses(gateway.url, chains)
    assert got == [200] * VISITOR_LIMIT + [429] * 3


def test_rightmost_untrusted_hops_are_separate_visitors(sim: SimHandle, redis_url: str) -> None:
    """The same spoofed left part with different real clients: each is its own visitor (the
    limit follows the rightmost hop, not the peer or the left part)."""
    chains = [f"198.51.100.1, 203.0.113.{n}" for n in range(1, VISITOR_LIMIT + 4)]
    with gateway_behind(sim, redis_url, "127.0.0.1/32") as gateway:
        got = statuses(gateway.url, chains)
    assert got == [200] * len(chains)


def test_rotating_inside_one_ipv6_slash_64_does_not_escape(sim: SimHandle, redis_url: str) -> None:
    """A client owns its whole IPv6 /64: new addresses inside it are the same visitor."""
    chains = [f"2001:db8:1:2::{n:x}" for n in range(1, VISITOR_LIMIT + 4)]
    with gateway_behind(sim, redis_url, "127.0.0.1/32") as gateway:
        got = statuses(gateway.url, chains)
    assert got == [200] * VISITOR_LIMIT + [429] * 3
