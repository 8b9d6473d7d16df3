"""Token windows in the admission script on a real redis-server: what is reserved, refused,
refunded and charged, exactly, in one round trip each way."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from app.admission.decision import Conversation, Limit, Limits, Scope
from app.admission.redis_admitter import RedisAdmitter
from app.server.services import redis_client

if TYPE_CHECKING:
    import redis

    from app.admission.decision import Decision

GLOBAL_TOKENS = "{llmgw}:tokens:global"
ROOMY = 10_000


def make_admitter(url: str, window_seconds: int = 30) -> RedisAdmitter:
    return RedisAdmitter(
        redis_client(url), prefix="llmgw", window_seconds=window_seconds, lease_seconds=30
    )


def tokens(global_tokens: int = 0, visitor_tokens: int = 0) -> Limits:
    """Roomy request limits, with these token windows."""
    return Limits(ROOMY, ROOMY, ROOMY, global_tokens=global_tokens, visitor_tokens=visitor_tokens)


def held(client: redis.Redis, key: str) -> int:
    return int(client.get(key) or 0)


def test_admission_reserves_the_estimate_in_every_token_window(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The estimate goes into the global window and into each of the visitor's (address and
    thumbmark), and the decision says how much and in which windows."""

    async def scenario() -> Decision:
        return await make_admitter(redis_url).admit(
            ["addr", "thumb"], tokens(5_000, 2_000), tokens=1_234
        )

    decision = asyncio.run(scenario())
    assert decision.admitted
    assert decision.reservation is not None
    assert decision.reservation.tokens == 1_234
    names = [name for name, _ in decision.reservation.windows]
    assert names == ["global", "visitor:addr", "visitor:thumb"]
    for key in (GLOBAL_TOKENS, "{llmgw}:tokens:visitor:addr", "{llmgw}:tokens:visitor:thumb"):
        assert held(redis_client, key) == 1_234
        assert 0 < redis_client.pttl(key) <= 30_000


def test_a_follow_up_reserves_the_conversation_on_record_too(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Continuing a conversation reserves its size on record besides the new input and cap."""

    async def scenario() -> Decision:
        admitter = make_admitter(redis_url)
        await admitter.remember_conversation(Conversation("resp_1", "owner-a", tokens=700))
        return await admitter.admit(
            ["a"], tokens(5_000), continues="resp_1", owner="owner-a", tokens=300
        )

    decision = asyncio.run(scenario())
    assert decision.reservation is not None
    assert decision.reservation.tokens == 1_000
    assert held(redis_client, GLOBAL_TOKENS) == 1_000


def test_a_reservation_that_does_not_fit_is_refused_and_spends_nothing(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Past the window's room a request is refused by tokens, with the window's own reset, and
    neither its request windows nor its token windows move; a smaller one still fits."""

    async def scenario() -> list[Decision]:
        admitter = make_admitter(redis_url)
        return [
            await admitter.admit(["a"], tokens(1_000), tokens=600),
            await admitter.admit(["b"], tokens(1_000), tokens=600),
            await admitter.admit(["c"], tokens(1_000), tokens=400),
        ]

    first, refused, small = asyncio.run(scenario())
    assert first.admitted
    assert small.admitted
    assert (refused.admitted, refused.limit, refused.whose) == (False, Limit.TOKENS, Limit.GLOBAL)
    assert refused.quota == 1_000
    assert 0 < refused.reset_seconds <= 30
    assert not refused.never_fits
    assert held(redis_client, GLOBAL_TOKENS) == 1_000
    assert redis_client.get("{llmgw}:window:visitor:b") is None


def test_the_visitors_own_token_window_is_named_first(redis_url: str) -> None:
    """A visitor over their own token budget is told it is theirs, even when everyone's is
    spent too; other visitors are refused by everyone's."""

    async def scenario() -> list[Decision]:
        admitter = make_admitter(redis_url)
        limits = tokens(global_tokens=1_500, visitor_tokens=1_000)
        return [
            await admitter.admit(["heavy"], limits, tokens=900),
            await admitter.admit(["light"], limits, tokens=500),
            await admitter.admit(["heavy"], limits, tokens=200),
            await admitter.admit(["other"], limits, tokens=200),
        ]

    heavy, light, heavy_again, other = asyncio.run(scenario())
    assert heavy.admitted
    assert light.admitted
    assert (heavy_again.limit, heavy_again.whose) == (Limit.TOKENS, Limit.VISITOR)
    assert (other.limit, other.whose) == (Limit.TOKENS, Limit.GLOBAL)


def test_a_chat_bigger_than_the_window_never_fits(redis_url: str) -> None:
    """A reservation larger than the whole window is refused as one that waiting won't help."""

    async def scenario() -> Decision:
        return await make_admitter(redis_url).admit(["a"], tokens(0, 500), tokens=501)

    decision = asyncio.run(scenario())
    assert (decision.limit, decision.whose, decision.quota) == (Limit.TOKENS, Limit.VISITOR, 500)
    assert decision.never_fits


def test_the_stream_end_refunds_what_was_not_used(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Settled with its real usage, each window holds exactly that usage; an answer that used
    more than its reservation is charged the difference."""

    async def scenario() -> None:
        admitter = make_admitter(redis_url)
        limits = tokens(10_000, 10_000)
        under = await admitter.admit(["a"], limits, tokens=1_000)
        over = await admitter.admit(["a"], limits, tokens=100)
        assert under.lease is not None
        assert over.lease is not None
        await admitter.release(under.lease, None, under.reservation, spent=321)
        await admitter.release(over.lease, None, over.reservation, spent=150)

    asyncio.run(scenario())
    assert held(redis_client, GLOBAL_TOKENS) == 321 + 150
    assert held(redis_client, "{llmgw}:tokens:visitor:a") == 321 + 150


def test_a_window_that_rolled_over_gets_nothing_back(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A reservation made in one window is not refunded into the next: that window never held
    it."""

    async def scenario() -> None:
        admitter = make_admitter(redis_url, window_seconds=1)
        old = await admitter.admit(["a"], tokens(10_000), tokens=800)
        await asyncio.sleep(1.1)
        await admitter.admit(["b"], tokens(10_000), tokens=300)
        assert old.lease is not None
        await admitter.release(old.lease, None, old.reservation, spent=0)

    asyncio.run(scenario())
    assert held(redis_client, GLOBAL_TOKENS) == 300


def test_token_windows_cost_no_extra_round_trip(
    lone_redis_url: str, lone_redis_client: redis.Redis
) -> None:
    """With token windows on, an admission is still one EVALSHA, and so is its settlement."""

    async def scenario() -> None:
        admitter = make_admitter(lone_redis_url)
        await admitter.load()
        lone_redis_client.config_resetstat()
        for n in range(10):
            decision = await admitter.admit([f"v{n}", f"t{n}"], tokens(10**6, 10**6), tokens=50)
            assert decision.lease is not None
            await admitter.release(decision.lease, None, decision.reservation, spent=20)

    asyncio.run(scenario())
    stats = lone_redis_client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): data["calls"] for name, data in stats.items()}
    assert calls["evalsha"] == 20
    assert calls["incrby"] == 60  # the three windows reserved in, then settled: 30 + 30
    assert set(calls) - {"config|resetstat"} <= {
        "evalsha", "mget", "time", "zremrangebyscore", "zcard", "zadd", "zrem", "incr",
        "incrby", "pexpire", "pexpiretime", "pttl",
    }  # fmt: skip


def test_further_scopes_have_token_windows_of_their_own(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A scope passed besides the visitor's (a key's, a lane's) reserves and refuses by its own
    token window, with or without a request window, and is refunded like the others."""
    key = Scope("key:laptop", Limit.VISITOR, requests=0, tokens=1_000)

    async def scenario() -> list[Decision]:
        admitter = make_admitter(redis_url)
        first = await admitter.admit(["a"], tokens(), tokens=700, scopes=[key])
        refused = await admitter.admit(["b"], tokens(), tokens=700, scopes=[key])
        assert first.lease is not None
        await admitter.release(first.lease, None, first.reservation, spent=100)
        again = await admitter.admit(["b"], tokens(), tokens=700, scopes=[key])
        return [first, refused, again]

    first, refused, again = asyncio.run(scenario())
    assert first.reservation is not None
    assert [name for name, _ in first.reservation.windows] == ["key:laptop"]
    assert (refused.admitted, refused.limit) == (False, Limit.TOKENS)
    assert again.admitted
    assert held(redis_client, "{llmgw}:tokens:key:laptop") == 800
    assert redis_client.get("{llmgw}:window:key:laptop") is None
