"""The owner's lane live: visitors flood /api/chat at ten times what the sim can serve, and the
owner's tool still gets every chat at once, on the place held back for it, which no visitor
ever takes. A key's streams at once are its own 429."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from chat_client import chat_status
from gateway_server import running_gateway
from keys_support import KEY_SECRET, create_key
from sim_process import running_sim
from support import flushed

if TYPE_CHECKING:
    from gateway_server import GatewayHandle

pytestmark = pytest.mark.slow

SLOTS = 4  # the sim's parallel generations, and the gateway's in-flight cap
FLOOD = 10 * SLOTS
OWNER_CHATS = 6
MODEL = "nvidia/nemotron-3-nano"


async def flood(url: str, stop: asyncio.Event, statuses: list[int]) -> None:
    """One visitor after another, as fast as answers come, until told to stop."""
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            statuses.append(await chat_status(client, url, {}))


async def watch_lanes(url: str, stop: asyncio.Event, seen: list[dict[str, Any]]) -> None:
    """/readyz's lanes, sampled while the flood runs."""
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop.is_set():
            seen.append((await client.get(f"{url}/readyz")).json()["lanes"])
            await asyncio.sleep(0.02)


async def owners_chats(url: str, key: str) -> list[int]:
    """The owner's tool, one streamed chat after another, each read to its end."""
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    statuses = []
    for _ in range(OWNER_CHATS):
        stream = await sdk.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        statuses.append(stream.status_code)
        async for _ in stream.parse():
            pass
        await asyncio.sleep(0.1)
    return statuses


async def under_flood(gateway: GatewayHandle, key: str) -> tuple[list[int], list[int], list[Any]]:
    stop = asyncio.Event()
    public: list[int] = []
    seen: list[dict[str, Any]] = []
    tasks = [asyncio.create_task(flood(gateway.url, stop, public)) for _ in range(FLOOD)]
    tasks.append(asyncio.create_task(watch_lanes(gateway.url, stop, seen)))
    await asyncio.sleep(1.0)  # the flood fills the visitors' places first
    try:
        owner = await owners_chats(gateway.url, key)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return owner, public, seen


def test_the_owner_is_admitted_at_once_through_a_flood_of_visitors(redis_server: str) -> None:
    """Visitors at ten times the sim's capacity: every owner chat is a 200 without waiting in
    line, visitors never hold more than 3 of the 4 places, and they did fill those 3 (and
    were shed beyond them)."""
    with (
        running_sim("--slots", str(SLOTS), "--decode-rate", "100", "--output-tokens", "20") as sim,
        running_gateway(
            upstream_url=sim.url,
            redis_url=flushed(redis_server),
            key_secret=KEY_SECRET,
            max_inflight=SLOTS,
            owner_reserved_inflight=1,
            global_limit=10**6,
            visitor_limit=10**6,
            max_output_tokens=20,
        ) as gateway,
    ):
        # Created after the flush: the key lives in the same Redis database.
        key = create_key(redis_server, "owner-laptop", lane="owner")
        owner, public, seen = asyncio.run(under_flood(gateway, key))
    assert owner == [200] * OWNER_CHATS
    assert max(lanes["public"]["inflight"] for lanes in seen) == SLOTS - 1
    assert max(lanes["owner"]["inflight"] for lanes in seen) == 1
    assert all(lanes["owner"]["queued"] == 0 for lanes in seen)
    assert 200 in public
    assert 503 in public  # the flood is shed beyond the visitors' places


def test_a_keys_streams_at_once_are_its_own_429(redis_server: str) -> None:
    """A key made with --concurrency 1: while its stream runs, a second is a RateLimitError
    naming the concurrency limit; another key is admitted meanwhile."""
    with (
        running_sim("--decode-rate", "50", "--output-tokens", "40") as sim,
        running_gateway(
            upstream_url=sim.url, redis_url=flushed(redis_server), key_secret=KEY_SECRET
        ) as gateway,
    ):
        one = create_key(redis_server, "one-at-a-time", "--concurrency", "1", lane="member")
        other = create_key(redis_server, "another", lane="member")
        sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=one, max_retries=0)
        neighbour = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=other, max_retries=0)
        hi: Any = [{"role": "user", "content": "hi"}]
        with sdk.chat.completions.create(model=MODEL, messages=hi, stream=True) as running:
            next(iter(running))
            with pytest.raises(openai.RateLimitError) as refused:
                sdk.chat.completions.create(model=MODEL, messages=hi)
            beside = neighbour.chat.completions.create(model=MODEL, messages=hi)
    assert refused.value.body["limit"] == "concurrency"  # type: ignore[index]
    assert beside.choices[0].message.content
