"""The admission script on a real redis-server: exact, atomic, and fair to other visitors."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from app.admission import Admitter, Limit
from app.services import redis_client

if TYPE_CHECKING:
    import redis

GLOBAL_KEY = "{llmgw}:window:global"


def make_admitter(url: str, global_limit: int = 5, visitor_limit: int = 2) -> Admitter:
    return Admitter(
        redis_client(url),
        prefix="llmgw",
        global_limit=global_limit,
        visitor_limit=visitor_limit,
        window_seconds=30,
    )


def test_visitor_refusals_spend_no_global_budget(redis_url: str, redis_client: redis.Redis) -> None:
    """One visitor hammering the endpoint cannot lock everyone else out."""

    async def scenario() -> list[bool]:
        admitter = make_admitter(redis_url)
        hammer = [await admitter.admit(["abuser"]) for _ in range(50)]
        others = [await admitter.admit([f"visitor-{n}"]) for n in range(3)]
        return [d.admitted for d in hammer] + [d.admitted for d in others]

    results = asyncio.run(scenario())
    assert results[:50].count(True) == 2
    assert results[50:] == [True, True, True]
    assert int(redis_client.get(GLOBAL_KEY) or 0) == 5


def test_refusal_says_whose_limit(redis_url: str) -> None:
    """The visitor's own limit is named before the global one, and the global one otherwise."""

    async def scenario() -> list[tuple[bool, Limit]]:
        admitter = make_admitter(redis_url, global_limit=3, visitor_limit=2)
        decisions = [await admitter.admit(["a"]) for _ in range(3)]
        decisions += [await admitter.admit(["b"]), await admitter.admit(["c"])]
        return [(d.admitted, d.limit) for d in decisions]

    assert asyncio.run(scenario()) == [
        (True, Limit.VISITOR),
        (True, Limit.VISITOR),
        (False, Limit.VISITOR),
        (True, Limit.GLOBAL),
        (False, Limit.GLOBAL),
    ]


def test_thumbmark_and_address_are_both_limited(redis_url: str) -> None:
    """A new thumbmark from the same address is still held by the address window."""

    async def scenario() -> list[bool]:
        admitter = make_admitter(redis_url, global_limit=100, visitor_limit=2)
        return [(await admitter.admit(["addr", f"thumb-{n}"])).admitted for n in range(4)]

    assert asyncio.run(scenario()) == [True, True, False, False]


def test_exact_under_concurrency(redis_url: str, redis_client: redis.Redis) -> None:
    """500 concurrent admissions against a limit of 50 admit exactly 50."""

    async def scenario() -> int:
        admitter = make_admitter(redis_url, global_limit=50, visitor_limit=10_000)
        decisions = await asyncio.gather(*(admitter.admit([f"v{n % 7}"]) for n in range(500)))
        return sum(d.admitted for d in decisions)

    assert asyncio.run(scenario()) == 50
    assert int(redis_client.get(GLOBAL_KEY) or 0) == 50


def test_reset_comes_from_redis_ttl(redis_url: str, redis_client: redis.Redis) -> None:
    """Retry-After is the window's remaining time as Redis counts it."""

    async def scenario() -> int:
        admitter = make_admitter(redis_url, global_limit=1)
        await admitter.admit(["a"])
        redis_client.pexpire(GLOBAL_KEY, 12_345)
        return (await admitter.admit(["b"])).retry_after

    assert asyncio.run(scenario()) == 13


def test_a_key_without_expiry_heals(redis_url: str, redis_client: redis.Redis) -> None:
    """A window that somehow lost its TTL gets one back instead of blocking forever."""
    redis_client.set(GLOBAL_KEY, 99)

    async def scenario() -> bool:
        return (await make_admitter(redis_url).admit(["a"])).admitted

    assert asyncio.run(scenario()) is False
    assert 0 < redis_client.pttl(GLOBAL_KEY) <= 30_000


def test_one_round_trip_per_admission(redis_url: str, redis_client: redis.Redis) -> None:
    """Each admission is a single EVALSHA: no second command for the visitor or the global check."""

    async def scenario() -> None:
        admitter = make_admitter(redis_url, global_limit=1000, visitor_limit=1000)
        await admitter.load()
        redis_client.config_resetstat()
        for n in range(20):
            await admitter.admit([f"v{n}", f"t{n}"])

    asyncio.run(scenario())
    stats = redis_client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): data["calls"] for name, data in stats.items()}
    calls.pop("config|resetstat", None)
    # Commands run inside the script are counted too: exactly what the script does, no more.
    assert calls == {"evalsha": 20, "mget": 20, "incr": 60, "pexpire": 60, "pttl": 20}


@pytest.mark.parametrize("limit", [Limit.GLOBAL])
def test_a_full_global_window_is_remembered_locally(
    redis_url: str, redis_client: redis.Redis, limit: Limit
) -> None:
    """Once Redis says the global window is full, refusals skip Redis until it resets."""

    async def scenario() -> list[Limit]:
        admitter = make_admitter(redis_url, global_limit=1)
        await admitter.admit(["a"])
        await admitter.admit(["b"])
        redis_client.config_resetstat()
        return [(await admitter.admit([f"x{n}"])).limit for n in range(10)]

    assert asyncio.run(scenario()) == [limit] * 10
    assert "cmdstat_evalsha" not in redis_client.info("commandstats")
