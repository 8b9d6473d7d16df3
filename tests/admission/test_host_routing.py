"""The admission script picks the host, on a real redis-server: the most free places times the
weight, never more streams on a host than its cap (across replicas), follow-ups on their own
host, a move when that host is out, one request to wake a model asleep, and the hosted
fallback only when no home host is up, within its day's tokens."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

from app.admission.decision import Conversation, HostSlot, Limit, Limits
from app.admission.redis_admitter import RedisAdmitter
from app.server.services import redis_client

if TYPE_CHECKING:
    import redis

    from app.admission.decision import Decision

ROOMY = Limits(global_limit=100_000, visitor_limit=100_000, inflight_cap=1000)
MAC, LINUX = HostSlot("mac1", 4), HostSlot("linux1", 2)


def make_admitter(url: str) -> RedisAdmitter:
    return RedisAdmitter(redis_client(url), prefix="llmgw", window_seconds=30, lease_seconds=30)


def admit_all(url: str, count: int, hosts: tuple[HostSlot, ...], **extra: object) -> list[Decision]:
    """`count` new conversations from distinct visitors, all in flight at once."""

    async def scenario() -> list[Decision]:
        admitter = make_admitter(url)
        return [
            await admitter.admit([f"v{n}"], ROOMY, hosts=hosts, **extra)  # type: ignore[arg-type]
            for n in range(count)
        ]

    return asyncio.run(scenario())


def test_new_conversations_fill_the_host_with_most_free_places_and_never_pass_a_cap(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Hosts of 4 and 2 slots: 6 admitted (4 and 2), the 7th shed; each host's lease set
    holds no more than its cap."""
    decisions = admit_all(redis_url, 7, (MAC, LINUX))
    admitted = [d.host for d in decisions if d.admitted]
    assert Counter(admitted) == {"mac1": 4, "linux1": 2}
    assert (decisions[-1].admitted, decisions[-1].limit) == (False, Limit.INFLIGHT)
    assert redis_client.zcard("{llmgw}:inflight:mac1") == 4
    assert redis_client.zcard("{llmgw}:inflight:linux1") == 2
    # Most free places first: 4 free against 2, then 3 against 2, then 2 and 2 (the first).
    assert [d.host for d in decisions[:3]] == ["mac1", "mac1", "mac1"]


def test_weight_and_pressure_scale_the_free_places(redis_url: str) -> None:
    """A host whose factor (or weight) is low gets fewer new conversations."""
    pressed = HostSlot("mac1", 4, weight=0.2)  # 4 free x 0.2 = 0.8: less than linux1's 1 or 2
    decisions = admit_all(redis_url, 2, (pressed, LINUX))
    assert [d.host for d in decisions] == ["linux1", "linux1"]


def test_two_replicas_racing_never_put_more_than_a_cap_on_a_host(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Two admitters (two gateways) admitting 40 at once: exactly 6 in, 4 and 2."""

    async def scenario() -> list[Decision]:
        first, second = make_admitter(redis_url), make_admitter(redis_url)
        calls = [
            (first if n % 2 else second).admit([f"v{n}"], ROOMY, hosts=(MAC, LINUX))
            for n in range(40)
        ]
        return list(await asyncio.gather(*calls))

    admitted = [d.host for d in asyncio.run(scenario()) if d.admitted]
    assert Counter(admitted) == {"mac1": 4, "linux1": 2}
    assert redis_client.zcard("{llmgw}:inflight:mac1") == 4


def test_a_follow_up_goes_to_its_host_and_moves_when_that_host_is_out(redis_url: str) -> None:
    """A conversation answered by linux1 continues there while it is up, even when mac1 has
    more free places; out (no permit), it moves to mac1, told so."""

    async def scenario() -> tuple[Decision, Decision, Decision]:
        admitter = make_admitter(redis_url)
        await admitter.remember_conversation(Conversation("resp_1", "alice", 50, "linux1"))
        follow = await admitter.admit(["alice"], ROOMY, "resp_1", "alice", hosts=(MAC, LINUX))
        gone = HostSlot("linux1", 2, up=False)
        moved = await admitter.admit(["alice"], ROOMY, "resp_1", "alice", hosts=(MAC, gone))
        full = await admitter.admit(
            ["alice"], ROOMY, "resp_1", "alice", hosts=(MAC, HostSlot("linux1", 1))
        )
        return follow, moved, full

    follow, moved, full = asyncio.run(scenario())
    assert (follow.host, follow.moved, follow.conversation_tokens) == ("linux1", False, 50)
    assert (moved.host, moved.moved) == ("mac1", True)
    # Its own host up but full (the follow-up above holds its one place): wait for it there.
    assert (full.admitted, full.limit) == (False, Limit.INFLIGHT)


def test_one_request_wakes_a_model_asleep_while_others_go_to_awake_hosts(
    redis_url: str,
) -> None:
    """linux1's model asleep: new conversations go to mac1 while it has places; once mac1 is
    full, exactly one request goes to linux1 to wake it, and the rest wait."""
    asleep = HostSlot("linux1", 2, asleep=True)
    decisions = admit_all(redis_url, 7, (MAC, asleep), wake_seconds=30)
    assert [d.host for d in decisions[:4]] == ["mac1"] * 4
    woken = [d for d in decisions if d.admitted and d.host == "linux1"]
    assert len(woken) == 1
    assert woken[0].waker
    assert [d.limit for d in decisions[5:]] == [Limit.WAKING, Limit.WAKING]


def test_no_host_up_without_a_fallback_is_no_host(redis_url: str) -> None:
    """Every home host out and no fallback: refused as unavailable, nothing spent."""
    down = (HostSlot("mac1", 4, up=False), HostSlot("linux1", 2, up=False))
    decision = admit_all(redis_url, 1, down)[0]
    assert (decision.admitted, decision.limit) == (False, Limit.NO_HOST)


def test_the_fallback_answers_only_when_no_home_host_is_up_within_its_budget(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Home up: the fallback is never chosen. Home out: the fallback answers, its day's budget
    reserved; past the budget, refused."""
    fallback = HostSlot("fallback", 4, budget=2_500)
    home_up = admit_all(redis_url, 1, (MAC, fallback), tokens=1_000)[0]
    assert home_up.host == "mac1"
    down = HostSlot("mac1", 4, up=False)
    decisions = admit_all(redis_url, 3, (down, fallback), tokens=1_000)
    assert [d.host for d in decisions[:2]] == ["fallback", "fallback"]
    assert decisions[0].reservation is not None
    assert decisions[0].reservation.windows[-1][0].startswith("fallback:")
    assert (decisions[2].admitted, decisions[2].limit) == (False, Limit.FALLBACK_BUDGET)
    spent = asyncio.run(make_admitter(redis_url).fallback_spent())
    assert spent == 2_000


def test_the_fallback_takes_full_home_hosts_only_when_allowed(redis_url: str) -> None:
    """Every home host full: shed, unless the caller allows the fallback for that (after the
    waiting room, with LLMGW_FALLBACK_ON_SHED)."""
    fallback = HostSlot("fallback", 4, budget=100_000)
    one = HostSlot("mac1", 1)
    decisions = admit_all(redis_url, 2, (one, fallback))
    assert (decisions[0].host, decisions[0].admitted) == ("mac1", True)
    assert decisions[1].limit is Limit.INFLIGHT

    async def allowed() -> Decision:
        return await make_admitter(redis_url).admit(
            ["late"], ROOMY, hosts=(one, fallback), fallback_on_full=True
        )

    assert asyncio.run(allowed()).host == "fallback"


def test_the_stream_end_settles_the_fallback_budget(redis_url: str) -> None:
    """A fallback answer reserved its cap; the stream's end puts back what it did not use."""

    async def scenario() -> int:
        admitter = make_admitter(redis_url)
        fallback = HostSlot("fallback", 4, budget=10_000)
        down = HostSlot("mac1", 4, up=False)
        decision = await admitter.admit(["v"], ROOMY, hosts=(down, fallback), tokens=1_000)
        assert decision.lease is not None
        await admitter.release(
            decision.lease, reservation=decision.reservation, spent=300, host=decision.host
        )
        return await admitter.fallback_spent()

    assert asyncio.run(scenario()) == 300


def test_the_conversation_record_names_its_host(redis_url: str, redis_client: redis.Redis) -> None:
    """The stream's end binds the response to its visitor and its host."""

    async def scenario() -> None:
        admitter = make_admitter(redis_url)
        decision = await admitter.admit(["bob"], ROOMY, hosts=(MAC, LINUX))
        assert decision.lease is not None
        conversation = Conversation("resp_9", "bob", 120, decision.host)
        await admitter.release(decision.lease, conversation, host=decision.host)

    asyncio.run(scenario())
    assert redis_client.get("{llmgw}:conversation:resp_9") == b"bob 120 mac1"
    assert redis_client.zcard("{llmgw}:inflight:mac1") == 0


def test_one_visitor_spends_only_their_share_of_the_fallback(redis_url: str) -> None:
    """A share of 2,500 tokens of a 10,000 budget: one visitor's third answer no longer fits
    their share, while another visitor's still fits the budget; the stream's end settles the
    share with the budget."""
    fallback = HostSlot("fallback", 8, budget=10_000, share=2_500)
    down = HostSlot("mac1", 4, up=False)

    async def scenario() -> tuple[list[Decision], Decision, int]:
        admitter = make_admitter(redis_url)
        mine = [
            await admitter.admit(["alice"], ROOMY, hosts=(down, fallback), tokens=1_000)
            for _ in range(3)
        ]
        other = await admitter.admit(["bob"], ROOMY, hosts=(down, fallback), tokens=1_000)
        first = mine[0]
        assert first.lease is not None
        await admitter.release(
            first.lease, reservation=first.reservation, spent=100, host=first.host
        )
        again = await admitter.admit(["alice"], ROOMY, hosts=(down, fallback), tokens=1_000)
        return [*mine, again], other, await admitter.fallback_spent()

    alice, bob, spent = asyncio.run(scenario())
    assert [d.admitted for d in alice] == [True, True, False, True]  # refunded: fits again
    assert alice[2].limit is Limit.FALLBACK_BUDGET
    assert bob.admitted
    assert spent == 100 + 1_000 + 1_000 + 1_000  # settled, reserved, bob's, alice's again


def test_a_follow_up_to_its_host_asleep_is_the_one_that_wakes_it(redis_url: str) -> None:
    """The conversation's host has its model asleep: the follow-up wakes it (alone), and
    the next request, new or follow-up, waits for the wake instead of loading it again."""

    async def scenario() -> tuple[Decision, Decision, Decision]:
        admitter = make_admitter(redis_url)
        await admitter.remember_conversation(Conversation("resp_z", "zoe", 10, "mac1"))
        asleep = (HostSlot("mac1", 4, asleep=True),)
        first = await admitter.admit(["zoe"], ROOMY, "resp_z", "zoe", wake_seconds=30, hosts=asleep)
        second = await admitter.admit(
            ["zoe"], ROOMY, "resp_z", "zoe", wake_seconds=30, hosts=asleep
        )
        new = await admitter.admit(["yan"], ROOMY, wake_seconds=30, hosts=asleep)
        return first, second, new

    first, second, new = asyncio.run(scenario())
    assert (first.admitted, first.waker, first.host) == (True, True, "mac1")
    assert (second.admitted, second.limit) == (False, Limit.WAKING)
    assert (new.admitted, new.limit) == (False, Limit.WAKING)


def test_a_follow_up_waits_for_its_recovering_host_instead_of_moving(redis_url: str) -> None:
    """Its host's breaker is half-open with no trial free for this chat: the follow-up is shed
    to wait for it, not moved to another host with its transcript."""

    async def scenario() -> Decision:
        admitter = make_admitter(redis_url)
        await admitter.remember_conversation(Conversation("resp_r", "rae", 10, "linux1"))
        recovering = HostSlot("linux1", 2, up=False, recovering=True)
        return await admitter.admit(["rae"], ROOMY, "resp_r", "rae", hosts=(MAC, recovering))

    decision = asyncio.run(scenario())
    assert (decision.admitted, decision.limit, decision.moved) == (False, Limit.INFLIGHT, False)
