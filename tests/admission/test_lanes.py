"""Lanes in the admission script on a real redis-server: the owner's held-back places, a key's
streams at once, keyed lanes outside the public's windows, and exact caps across replicas."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import TYPE_CHECKING

from app.access.keys import Lane
from app.admission.decision import Limit, Limits, Scope
from app.admission.redis_admitter import RedisAdmitter
from app.protection.governor import GovernorConfig, PressureGovernor
from app.server.services import redis_client

if TYPE_CHECKING:
    import redis

    from app.admission.decision import Decision

INFLIGHT_KEY = "{llmgw}:inflight"
GLOBAL_KEY = "{llmgw}:window:global"
# The defaults: 4 places, 1 held back for the owner; the governor relaxed (factor 1).
GOVERNOR = PressureGovernor(
    Limits(global_limit=1000, visitor_limit=1000, inflight_cap=4),
    GovernorConfig(stale_factor=1.0),
    owner_reserved=1,
)
PUBLIC, MEMBER, OWNER = (GOVERNOR.limits(lane) for lane in (Lane.PUBLIC, Lane.MEMBER, Lane.OWNER))


def make_admitter(url: str) -> RedisAdmitter:
    return RedisAdmitter(redis_client(url), prefix="llmgw", window_seconds=30, lease_seconds=30)


def key_scope(name: str, requests: int = 0) -> Scope:
    return Scope(f"key:{name}", Limit.KEY, requests)


async def keyed(
    admitter: RedisAdmitter, lane: Lane, name: str, streams: int = 0, requests: int = 0
) -> Decision:
    """One keyed admission, as the /v1 routes make it."""
    return await admitter.admit(
        (),
        GOVERNOR.limits(lane),
        scopes=(key_scope(name, requests),),
        lane=lane,
        concurrency=(name, streams),
    )


def test_the_public_cannot_take_the_owners_place_and_the_owner_gets_it(redis_url: str) -> None:
    """Visitors fill 3 of the 4 places and are shed; the owner then takes the 4th."""

    async def scenario() -> tuple[list[Decision], Decision, Decision]:
        admitter = make_admitter(redis_url)
        public = [await admitter.admit([f"v{n}"], PUBLIC) for n in range(5)]
        owner = await keyed(admitter, Lane.OWNER, "laptop")
        member = await keyed(admitter, Lane.MEMBER, "webui")
        return public, owner, member

    public, owner, member = asyncio.run(scenario())
    assert [d.admitted for d in public] == [True, True, True, False, False]
    assert public[-1].limit is Limit.INFLIGHT
    assert (owner.admitted, owner.lane) == (True, Lane.OWNER)
    assert (member.admitted, member.limit, member.lane) == (False, Limit.INFLIGHT, Lane.MEMBER)


def test_members_cannot_take_the_owners_place_either(redis_url: str) -> None:
    """Members' streams count with the public's: together they fill at most C - R places."""

    async def scenario() -> list[bool]:
        admitter = make_admitter(redis_url)
        first = [(await admitter.admit(["v"], PUBLIC)).admitted]
        members = [(await keyed(admitter, Lane.MEMBER, f"m{n}")).admitted for n in range(3)]
        return first + members + [(await keyed(admitter, Lane.OWNER, "laptop")).admitted]

    assert asyncio.run(scenario()) == [True, True, True, False, True]


def test_a_keys_concurrency_refuses_its_next_stream_only_and_frees_on_release(
    redis_url: str,
) -> None:
    """With 2 streams at once, the key's 3rd is refused (concurrency, quota 2); another key of
    the same lane is admitted; once one stream ends the key is admitted again."""

    async def scenario() -> list[Decision]:
        admitter = make_admitter(redis_url)
        first = await keyed(admitter, Lane.OWNER, "ab", streams=2)
        second = await keyed(admitter, Lane.OWNER, "ab", streams=2)
        third = await keyed(admitter, Lane.OWNER, "ab", streams=2)
        # A key named as the end of the other's name is still another key.
        other = await keyed(admitter, Lane.OWNER, "b", streams=1)
        assert first.lease is not None
        await admitter.release(first.lease)
        again = await keyed(admitter, Lane.OWNER, "ab", streams=2)
        return [first, second, third, other, again]

    first, second, third, other, again = asyncio.run(scenario())
    assert [first.admitted, second.admitted, other.admitted, again.admitted] == [True] * 4
    assert (third.admitted, third.limit, third.quota, third.lane) == (
        False,
        Limit.CONCURRENCY,
        2,
        Lane.OWNER,
    )


def test_keyed_lanes_count_in_their_own_windows_not_the_publics(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """An owner's or member's request spends its key's window, never everyone's or a visitor's;
    a full key window refuses with the key's limit."""
    tight = Limits(global_limit=1, visitor_limit=1, inflight_cap=100)

    async def scenario() -> list[Decision]:
        admitter = make_admitter(redis_url)
        decisions = [
            await admitter.admit(["v"], tight, scopes=(key_scope("laptop", 2),), lane=Lane.OWNER)
            for _ in range(3)
        ]
        return [*decisions, await admitter.admit(["v"], tight)]

    first, second, third, visitor = asyncio.run(scenario())
    assert [first.admitted, second.admitted] == [True, True]
    assert (first.limit, first.quota, first.remaining) == (Limit.KEY, 2, 1)
    assert (third.admitted, third.limit, third.quota) == (False, Limit.KEY, 2)
    assert visitor.admitted  # the owner spent nothing of the public's windows
    assert int(redis_client.get(GLOBAL_KEY) or 0) == 1
    assert int(redis_client.get("{llmgw}:window:key:laptop") or 0) == 2


def test_a_key_without_windows_is_held_by_the_caps_only(redis_url: str) -> None:
    """No window of its own: admitted while the cap has room, naming the key with quota 0."""

    async def scenario() -> Decision:
        admitter = make_admitter(redis_url)
        return await admitter.admit((), OWNER, lane=Lane.OWNER)

    decision = asyncio.run(scenario())
    assert (decision.admitted, decision.limit, decision.quota) == (True, Limit.KEY, 0)


def test_a_keyed_admission_with_concurrency_is_one_round_trip(
    lone_redis_url: str, lone_redis_client: redis.Redis
) -> None:
    """A key's streams at once cost no second command: one EVALSHA, its ZRANGE inside."""

    async def scenario() -> None:
        admitter = make_admitter(lone_redis_url)
        await admitter.load()
        lone_redis_client.config_resetstat()
        for _ in range(3):
            await keyed(admitter, Lane.OWNER, "laptop", streams=10, requests=100)

    asyncio.run(scenario())
    stats = lone_redis_client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): data["calls"] for name, data in stats.items()}
    assert calls["evalsha"] == 3
    assert calls["zrange"] == 3
    assert set(calls) <= {
        "config|resetstat", "evalsha", "mget", "time", "zremrangebyscore", "zrange", "zcard",
        "zadd", "incr", "pexpire", "pttl",
    }  # fmt: skip


REPLICAS = 4
ROUNDS = 30


class Holders:
    """Streams held now, as counted by the admitters' callers: a lower bound of the set."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def take(self, *groups: str) -> None:
        for group in groups:
            self.now[group] += 1
            self.most[group] = max(self.most[group], self.now[group])

    def give(self, *groups: str) -> None:
        for group in groups:
            self.now[group] -= 1


def test_replicas_hammering_never_exceed_a_lane_cap_or_a_keys_concurrency(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Four admitters (each its own connection, as four replicas) admit and release visitors,
    members and two owner keys at once: never more than the public's 3 places, 4 in all, or a
    key's 1 stream at once; and every lane gets its turn."""
    holders = Holders()
    admitted: Counter[str] = Counter()
    admitters = [make_admitter(redis_url) for _ in range(REPLICAS)]

    async def client(admitter: RedisAdmitter, lane: Lane, name: str) -> None:
        for _ in range(ROUNDS):
            if lane is Lane.PUBLIC:
                decision = await admitter.admit([name], PUBLIC)
            else:
                decision = await keyed(admitter, lane, name, streams=1)
            if decision.admitted and decision.lease is not None:
                groups = ("all", str(lane), name) if lane is Lane.OWNER else ("all", str(lane))
                holders.take(*groups)
                admitted[str(lane)] += 1
                await asyncio.sleep(random.uniform(0, 0.003))
                holders.give(*groups)
                await admitter.release(decision.lease)
            await asyncio.sleep(random.uniform(0, 0.002))

    async def scenario() -> None:
        clients = [(Lane.PUBLIC, f"v{n}") for n in range(12)]
        clients += [(Lane.MEMBER, f"m{n}") for n in range(4)]
        clients += [(Lane.OWNER, name) for name in ("laptop", "laptop", "editor", "editor")]
        await asyncio.gather(
            *(client(admitters[n % REPLICAS], lane, name) for n, (lane, name) in enumerate(clients))
        )

    asyncio.run(scenario())
    assert holders.most["all"] <= OWNER.inflight_cap == 4
    assert holders.most["public"] <= PUBLIC.inflight_cap == 3
    assert holders.most["laptop"] == holders.most["editor"] == 1
    assert set(admitted) == {"public", "member", "owner"}
    assert redis_client.zcard(INFLIGHT_KEY) == 0


def test_replicas_at_once_fill_exactly_the_caps(redis_url: str, redis_client: redis.Redis) -> None:
    """200 visitors and 200 owner requests at once over four replicas, nothing released:
    exactly 4 places taken, at most 3 by visitors, so at least one by the owner."""
    admitters = [make_admitter(redis_url) for _ in range(REPLICAS)]

    async def scenario() -> list[Decision]:
        calls = [
            admitters[n % REPLICAS].admit([f"v{n}"], PUBLIC)
            if n % 2
            else keyed(admitters[n % REPLICAS], Lane.OWNER, f"k{n}")
            for n in range(400)
        ]
        return list(await asyncio.gather(*calls))

    decisions = asyncio.run(scenario())
    lanes = Counter(str(d.lane) for d in decisions if d.admitted)
    assert lanes["public"] <= 3
    assert lanes["public"] + lanes["owner"] == 4
    assert lanes["owner"] >= 1
    assert redis_client.zcard(INFLIGHT_KEY) == 4
