"""Four admitters (as four gateway replicas would) against one token window of 50,000: the
reservations admitted never exceed it, and once every stream is settled Redis holds exactly
the tokens really used."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.admission.decision import Limits
from app.admission.redis_admitter import RedisAdmitter
from app.admission.redis_wire import RedisWire
from app.server.services import redis_client

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

    from app.admission.decision import Decision

REPLICAS = 4
REQUESTS = 1_000
WINDOW = 50_000
LIMITS = Limits(10**6, 10**6, 10**6, global_tokens=WINDOW)
GLOBAL_TOKENS = "{llmgw}:tokens:global"


@dataclass
class Replica:
    admitter: RedisAdmitter
    wire: RedisWire | None


def replicas(url: str) -> Iterator[Replica]:
    """Admitters of their own, each on its own pipelined connection, as gateways run them."""
    for _ in range(REPLICAS):
        client = redis_client(url)
        wire = RedisWire.of(client)
        admitter = RedisAdmitter(
            client, prefix="llmgw", window_seconds=600, lease_seconds=60, wire=wire
        )
        yield Replica(admitter, wire)


def mixed_sizes(seed: int) -> list[int]:
    """Half short chats (a few words and the answer's cap), half long ones (some 6,000
    characters of input on top)."""
    rng = random.Random(seed)
    return [rng.randint(260, 300) if n % 2 else rng.randint(1_700, 1_800) for n in range(REQUESTS)]


async def admit_all(fleet: list[Replica], sizes: list[int]) -> list[Decision]:
    return list(
        await asyncio.gather(
            *(
                fleet[n % REPLICAS].admitter.admit([f"visitor-{n % 97}"], LIMITS, tokens=size)
                for n, size in enumerate(sizes)
            )
        )
    )


async def settle(replica: Replica, decision: Decision, spent: int) -> None:
    assert decision.lease is not None
    await replica.admitter.release(decision.lease, None, decision.reservation, spent)


def test_four_replicas_never_admit_more_than_the_window(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """1,000 admissions at once: what they reserved fits the window, the window holds exactly
    that, and each refused request was one that did not fit; settled with real usage, the
    window holds exactly the usage."""
    sizes = mixed_sizes(seed=14)
    rng = random.Random(4)

    async def scenario() -> tuple[list[Decision], int, int]:
        fleet = list(replicas(redis_url))
        decisions = await admit_all(fleet, sizes)
        reserved_in_redis = int(redis_client.get(GLOBAL_TOKENS) or 0)
        usage = [rng.randint(1, size) for size in sizes]
        await asyncio.gather(
            *(
                settle(fleet[n % REPLICAS], decision, usage[n])
                for n, decision in enumerate(decisions)
                if decision.admitted
            )
        )
        spent = sum(usage[n] for n, decision in enumerate(decisions) if decision.admitted)
        for replica in fleet:
            if replica.wire is not None:
                replica.wire.close()
        return decisions, reserved_in_redis, spent

    decisions, reserved_in_redis, spent = asyncio.run(scenario())
    admitted = [size for size, d in zip(sizes, decisions, strict=True) if d.admitted]
    refused = [size for size, d in zip(sizes, decisions, strict=True) if not d.admitted]
    assert sum(admitted) <= WINDOW
    assert reserved_in_redis == sum(admitted)
    assert refused
    assert all(reserved_in_redis + size > WINDOW for size in refused)
    assert {str(d.limit) for d in decisions if not d.admitted} == {"tokens"}
    assert int(redis_client.get(GLOBAL_TOKENS) or 0) == spent


def test_refunds_interleaved_with_admissions_stay_exact(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Streams ending while others are admitted: the window never holds more than its limit,
    refunds make room for more, and at the end it holds exactly the tokens used."""
    sizes = mixed_sizes(seed=41)
    rng = random.Random(5)
    usage = [rng.randint(1, size) for size in sizes]
    highest = 0

    async def one(replica: Replica, size: int, spent: int) -> tuple[int, int]:
        await asyncio.sleep(rng.random() / 2)  # arrivals over half a second
        decision = await replica.admitter.admit(["someone"], LIMITS, tokens=size)
        if not decision.admitted:
            return 0, 0
        await asyncio.sleep(rng.random() / 50)  # the stream runs
        await settle(replica, decision, spent)
        return size, spent

    async def watch(stop: asyncio.Event) -> None:
        nonlocal highest
        while not stop.is_set():
            highest = max(highest, int(redis_client.get(GLOBAL_TOKENS) or 0))
            await asyncio.sleep(0.002)

    async def scenario() -> list[tuple[int, int]]:
        fleet = list(replicas(redis_url))
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        ends = await asyncio.gather(
            *(one(fleet[n % REPLICAS], size, usage[n]) for n, size in enumerate(sizes))
        )
        stop.set()
        await watcher
        for replica in fleet:
            if replica.wire is not None:
                replica.wire.close()
        return ends

    ends = asyncio.run(scenario())
    reserved, spent = sum(size for size, _ in ends), sum(used for _, used in ends)
    assert reserved > WINDOW  # the refunds made room for more than one window's reservations
    assert any(size == 0 for size, _ in ends)  # and still the window filled up
    assert 0 < highest <= WINDOW
    assert int(redis_client.get(GLOBAL_TOKENS) or 0) == spent
