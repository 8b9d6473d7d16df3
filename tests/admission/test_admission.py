"""The admission script on a real redis-server: exact, atomic, and fair to other visitors."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from app.admission import redis_admitter
from app.admission.decision import Conversation, Limit, Limits
from app.admission.redis_admitter import RedisAdmitter
from app.server.services import redis_client

if TYPE_CHECKING:
    import pytest
    import redis

    from app.admission.decision import Decision

GLOBAL_KEY = "{llmgw}:window:global"
INFLIGHT_KEY = "{llmgw}:inflight"
ROOMY = Limits(global_limit=5, visitor_limit=2, inflight_cap=1000)


def make_admitter(url: str, lease_seconds: float = 30) -> RedisAdmitter:
    return RedisAdmitter(
        redis_client(url), prefix="llmgw", window_seconds=30, lease_seconds=lease_seconds
    )


def run_admissions(url: str, calls: list[tuple[list[str], Limits]]) -> list[Decision]:
    """Admit each (visitor ids, limits) in order with one admitter."""

    async def scenario() -> list[Decision]:
        admitter = make_admitter(url)
        return [await admitter.admit(ids, limits) for ids, limits in calls]

    return asyncio.run(scenario())


def test_visitor_refusals_spend_no_global_budget(redis_url: str, redis_client: redis.Redis) -> None:
    """One visitor hammering the endpoint cannot lock everyone else out."""
    calls = [(["abuser"], ROOMY)] * 50 + [([f"visitor-{n}"], ROOMY) for n in range(3)]
    admitted = [d.admitted for d in run_admissions(redis_url, calls)]
    assert admitted[:50].count(True) == 2
    assert admitted[50:] == [True, True, True]
    assert int(redis_client.get(GLOBAL_KEY) or 0) == 5


def test_refusal_says_whose_limit(redis_url: str) -> None:
    """The visitor's own limit is named before the global one, and the global one otherwise."""
    limits = Limits(global_limit=3, visitor_limit=2, inflight_cap=100)
    calls = [(["a"], limits)] * 3 + [(["b"], limits), (["c"], limits)]
    assert [(d.admitted, d.limit) for d in run_admissions(redis_url, calls)] == [
        (True, Limit.VISITOR),
        (True, Limit.VISITOR),
        (False, Limit.VISITOR),
        (True, Limit.GLOBAL),
        (False, Limit.GLOBAL),
    ]


def test_thumbmark_and_address_are_both_limited(redis_url: str) -> None:
    """A new thumbmark from the same address is still held by the address window."""
    limits = Limits(global_limit=100, visitor_limit=2, inflight_cap=100)
    calls = [(["addr", f"thumb-{n}"], limits) for n in range(4)]
    assert [d.admitted for d in run_admissions(redis_url, calls)] == [True, True, False, False]


def test_exact_under_concurrency(redis_url: str, redis_client: redis.Redis) -> None:
    """500 concurrent admissions against a limit of 50 admit exactly 50."""
    limits = Limits(global_limit=50, visitor_limit=10_000, inflight_cap=10_000)

    async def scenario() -> int:
        admitter = make_admitter(redis_url)
        decisions = await asyncio.gather(
            *(admitter.admit([f"v{n % 7}"], limits) for n in range(500))
        )
        return sum(d.admitted for d in decisions)

    assert asyncio.run(scenario()) == 50
    assert int(redis_client.get(GLOBAL_KEY) or 0) == 50


def test_inflight_cap_is_exact_and_sheds_without_spending(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Over the in-flight cap a request is shed, and a shed request spends no window."""
    limits = Limits(global_limit=100, visitor_limit=100, inflight_cap=3)

    async def scenario() -> list[Decision]:
        admitter = make_admitter(redis_url)
        return list(await asyncio.gather(*(admitter.admit([f"v{n}"], limits) for n in range(20))))

    decisions = asyncio.run(scenario())
    assert sum(d.admitted for d in decisions) == 3
    assert {d.limit for d in decisions if not d.admitted} == {Limit.INFLIGHT}
    assert int(redis_client.get(GLOBAL_KEY) or 0) == 3
    assert redis_client.zcard(INFLIGHT_KEY) == 3


def test_released_lease_frees_its_place(redis_url: str) -> None:
    """At the end of a stream its place goes back to the cap at once."""
    limits = Limits(global_limit=100, visitor_limit=100, inflight_cap=1)

    async def scenario() -> list[bool]:
        admitter = make_admitter(redis_url)
        first = await admitter.admit(["a"], limits)
        blocked = await admitter.admit(["b"], limits)
        assert first.lease is not None
        await admitter.release(first.lease)
        again = await admitter.admit(["b"], limits)
        return [first.admitted, blocked.admitted, again.admitted]

    assert asyncio.run(scenario()) == [True, False, True]


def test_end_of_stream_is_one_round_trip(redis_url: str, redis_client: redis.Redis) -> None:
    """Releasing the lease and binding the answered response to its visitor is one EVALSHA,
    after which the place is free and only that visitor can continue the conversation."""
    limits = Limits(global_limit=100, visitor_limit=100, inflight_cap=1)

    async def scenario() -> list[tuple[bool, Limit]]:
        admitter = make_admitter(redis_url)
        await admitter.load()
        first = await admitter.admit(["a"], limits)
        assert first.lease is not None
        redis_client.config_resetstat()
        await admitter.release(first.lease, Conversation("resp_end", "owner-a"))
        calls = {k: v["calls"] for k, v in redis_client.info("commandstats").items()}
        calls.pop("cmdstat_config|resetstat", None)
        assert calls == {"cmdstat_evalsha": 1, "cmdstat_zrem": 1, "cmdstat_set": 1}
        decisions = [
            await admitter.admit(["b"], limits, continues="resp_end", owner="owner-b"),
            await admitter.admit(["a"], limits, continues="resp_end", owner="owner-a"),
        ]
        return [(d.admitted, d.limit) for d in decisions]

    refused, continued = asyncio.run(scenario())
    assert refused == (False, Limit.CONVERSATION)
    assert continued[0] is True
    assert 0 < redis_client.ttl("{llmgw}:conversation:resp_end") <= 24 * 3600


def test_lease_of_a_crashed_gateway_expires(redis_url: str) -> None:
    """A lease nobody renews or releases stops counting after its expiry: nothing leaks."""
    limits = Limits(global_limit=100, visitor_limit=100, inflight_cap=1)

    async def scenario() -> list[bool]:
        crashed = RedisAdmitter(
            redis_client(redis_url), prefix="llmgw", window_seconds=30, lease_seconds=0.5
        )
        survivor = make_admitter(redis_url)
        taken = await crashed.admit(["a"], limits)
        blocked = await survivor.admit(["b"], limits)
        await asyncio.sleep(0.7)
        freed = await survivor.admit(["b"], limits)
        return [taken.admitted, blocked.admitted, freed.admitted]

    assert asyncio.run(scenario()) == [True, False, True]


def test_renewed_leases_outlive_their_first_expiry(redis_url: str) -> None:
    """A live stream's renewed lease keeps holding its place."""
    limits = Limits(global_limit=100, visitor_limit=100, inflight_cap=1)

    async def scenario() -> bool:
        admitter = RedisAdmitter(
            redis_client(redis_url), prefix="llmgw", window_seconds=30, lease_seconds=0.6
        )
        taken = await admitter.admit(["a"], limits)
        for _ in range(3):
            await asyncio.sleep(0.3)
            await admitter.renew([taken.lease or ""])
        return (await admitter.admit(["b"], limits)).admitted

    assert asyncio.run(scenario()) is False


def test_reset_comes_from_redis_ttl(redis_url: str, redis_client: redis.Redis) -> None:
    """Retry-After is the window's remaining time as Redis counts it."""
    limits = Limits(global_limit=1, visitor_limit=10, inflight_cap=10)

    async def scenario() -> int:
        admitter = make_admitter(redis_url)
        await admitter.admit(["a"], limits)
        redis_client.pexpire(GLOBAL_KEY, 12_345)
        return (await admitter.admit(["b"], limits)).retry_after

    assert asyncio.run(scenario()) == 13


def test_a_key_without_expiry_heals(redis_url: str, redis_client: redis.Redis) -> None:
    """A window that somehow lost its TTL gets one back instead of blocking forever."""
    redis_client.set(GLOBAL_KEY, 99)
    assert run_admissions(redis_url, [(["a"], ROOMY)])[0].admitted is False
    assert 0 < redis_client.pttl(GLOBAL_KEY) <= 30_000


def test_one_round_trip_per_admission(lone_redis_url: str, lone_redis_client: redis.Redis) -> None:
    """Each admission is a single EVALSHA: no second command for visitors, global or cap."""
    limits = Limits(global_limit=1000, visitor_limit=1000, inflight_cap=1000)

    async def scenario() -> None:
        admitter = make_admitter(lone_redis_url)
        await admitter.load()
        lone_redis_client.config_resetstat()
        for n in range(20):
            await admitter.admit([f"v{n}", f"t{n}"], limits)

    asyncio.run(scenario())
    stats = lone_redis_client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): data["calls"] for name, data in stats.items()}
    calls.pop("config|resetstat", None)
    # Commands run inside the script are counted too: exactly what the script does, no more.
    assert calls == {
        "evalsha": 20,
        "mget": 20,
        "time": 20,
        "zremrangebyscore": 20,
        "zcard": 20,
        "zadd": 20,
        "incr": 60,
        "pexpire": 80,
        "pttl": 20,
    }


def test_a_full_global_window_is_remembered_locally(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Once Redis says the global window is full, refusals skip Redis until it resets."""
    limits = Limits(global_limit=1, visitor_limit=10, inflight_cap=10)

    async def scenario() -> list[tuple[Limit, str]]:
        admitter = make_admitter(redis_url)
        await admitter.admit(["a"], limits)
        await admitter.admit(["b"], limits)
        redis_client.config_resetstat()
        return [
            (d.limit, d.path) for d in [await admitter.admit([f"x{n}"], limits) for n in range(10)]
        ]

    assert asyncio.run(scenario()) == [(Limit.GLOBAL, "local")] * 10
    assert "cmdstat_evalsha" not in redis_client.info("commandstats")


def test_a_spent_visitor_window_is_remembered_locally(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Once Redis says a visitor's window is spent, that visitor's refusals skip Redis until it
    resets; other visitors, and a raised visitor limit, are still decided by Redis."""
    one = Limits(global_limit=100, visitor_limit=1, inflight_cap=100)
    two = Limits(global_limit=100, visitor_limit=2, inflight_cap=100)

    async def scenario() -> tuple[list[tuple[Limit, str]], list[Decision], int]:
        admitter = make_admitter(redis_url)
        await admitter.admit(["a", "t"], one)
        first = await admitter.admit(["a", "t"], one)
        assert (first.limit, first.path) == (Limit.VISITOR, "redis")
        redis_client.config_resetstat()
        again = [await admitter.admit(["a", "t"], one) for _ in range(10)]
        assert all(0 < d.reset_seconds <= first.reset_seconds for d in again)
        evalsha = _calls(redis_client, "evalsha")
        others = [await admitter.admit(["b", "t2"], one), await admitter.admit(["a", "t"], two)]
        return [(d.limit, d.path) for d in again], others, evalsha

    again, others, evalsha = asyncio.run(scenario())
    assert again == [(Limit.VISITOR, "local")] * 10
    assert evalsha == 0
    assert [(d.admitted, d.path) for d in others] == [(True, "redis"), (True, "redis")]


def test_a_remembered_visitor_is_admitted_when_the_window_resets(redis_url: str) -> None:
    limits = Limits(global_limit=100, visitor_limit=1, inflight_cap=100)

    async def scenario() -> list[bool]:
        admitter = RedisAdmitter(
            redis_client(redis_url), prefix="short", window_seconds=1, lease_seconds=30
        )
        admitted = [(await admitter.admit(["a"], limits)).admitted for _ in range(3)]
        await asyncio.sleep(1.1)
        return [*admitted, (await admitter.admit(["a"], limits)).admitted]

    assert asyncio.run(scenario()) == [True, False, False, True]


def test_remembered_visitors_are_bounded(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound the longest remembered visitors are forgotten: still refused, by Redis."""
    monkeypatch.setattr(redis_admitter, "MAX_REMEMBERED_VISITORS", 3)
    limits = Limits(global_limit=100, visitor_limit=1, inflight_cap=100)

    async def scenario() -> list[str]:
        admitter = make_admitter(redis_url)
        for name in "abcde":
            await admitter.admit([name], limits)
            await admitter.admit([name], limits)
        return [(await admitter.admit([name], limits)).path for name in "edcba"]

    assert asyncio.run(scenario()) == ["local", "local", "local", "redis", "redis"]


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_raised_limit_is_not_refused_from_memory(redis_url: str) -> None:
    """When the governor raises the global limit, the remembered full window no longer binds."""
    tight = Limits(global_limit=1, visitor_limit=10, inflight_cap=10)
    relaxed = Limits(global_limit=2, visitor_limit=10, inflight_cap=10)
    calls = [(["a"], tight), (["b"], tight), (["c"], relaxed)]
    assert [d.admitted for d in run_admissions(redis_url, calls)] == [True, False, True]


def test_a_conversation_continues_only_for_its_owner(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Another visitor presenting a response id is refused, and spends nothing doing so."""

    async def scenario() -> list[tuple[bool, Limit]]:
        admitter = make_admitter(redis_url)
        await admitter.remember_conversation(Conversation("resp_abc", "owner-a"))
        decisions = [
            await admitter.admit(["b"], ROOMY, continues="resp_abc", owner="owner-b"),
            await admitter.admit(["c"], ROOMY, continues="resp_unknown", owner="owner-c"),
            await admitter.admit(["a"], ROOMY, continues="resp_abc", owner="owner-a"),
        ]
        return [(d.admitted, d.limit) for d in decisions]

    results = asyncio.run(scenario())
    assert results[0] == (False, Limit.CONVERSATION)
    assert results[1] == (False, Limit.CONVERSATION)
    assert results[2][0] is True
    assert int(redis_client.get(GLOBAL_KEY) or 0) == 1


def test_scripts_flushed_from_redis_are_loaded_again(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """After Redis forgets its scripts (a restart, SCRIPT FLUSH), admission goes on."""

    async def scenario() -> list[bool]:
        admitter = make_admitter(redis_url)
        await admitter.load()
        first = await admitter.admit(["a"], ROOMY)
        redis_client.script_flush()
        second = await admitter.admit(["a"], ROOMY)
        assert second.lease is not None
        redis_client.script_flush()
        await admitter.release(second.lease)
        return [first.admitted, second.admitted]

    assert asyncio.run(scenario()) == [True, True]
    assert redis_client.zcard(INFLIGHT_KEY) == 1
