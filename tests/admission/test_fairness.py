"""Fairness: one visitor hammering the endpoint neither locks others out nor spends their budget."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
from sim_process import running_sim
from support import free_port, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

pytestmark = pytest.mark.slow

VISITOR_LIMIT = 5
HAMMERING = 50 * VISITOR_LIMIT
ORDINARY_VISITORS = 20
CHATS_EACH = VISITOR_LIMIT - 1  # within their limit
# Less than the hammering alone would spend if refused requests counted: 250 + 80 > 100.
GLOBAL_LIMIT = 100


@contextmanager
def gateway_behind_proxy(**settings: object) -> Iterator[str]:
    """`llmgw serve` believing X-Forwarded-For from loopback, as behind its reverse proxy."""
    port = free_port()
    env = {**os.environ, "LLMGW_PORT": str(port), "LLMGW_TRUSTED_PROXIES": "127.0.0.1/32"}
    env |= {"LLMGW_HEALTH_INTERVAL": "0", "LLMGW_PROBE_STALE_FACTOR": "1"}
    env |= {f"LLMGW_{name.upper()}": str(value) for name, value in settings.items()}
    process = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=env)
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


async def chat_from(client: httpx.AsyncClient, url: str, address: str) -> tuple[int, str | None]:
    """One chat as the visitor at `address`; its status and, for a 429, whose limit it was."""
    headers = {"X-Forwarded-For": address}
    async with client.stream(
        "POST", f"{url}/api/chat", json={"input": "hi"}, headers=headers
    ) as response:
        await response.aread()
        if response.status_code == 429:
            return 429, str(response.json()["limit"])
        return response.status_code, None


async def hammer(client: httpx.AsyncClient, url: str) -> list[tuple[int, str | None]]:
    """The abusive visitor: fifty times its limit, twenty-five requests at a time."""
    room = asyncio.Semaphore(25)

    async def one() -> tuple[int, str | None]:
        async with room:
            return await chat_from(client, url, "203.0.113.66")

    return await asyncio.gather(*(one() for _ in range(HAMMERING)))


async def ordinary(client: httpx.AsyncClient, url: str, visitor: int) -> list[int]:
    """An ordinary visitor: a few chats one after the other, within the limit, each from a
    network of their own (twenty visitors of one /24 would be a crowd that needs passes)."""
    address = f"10.{visitor + 1}.0.7"
    return [(await chat_from(client, url, address))[0] for _ in range(CHATS_EACH)]


async def contend(url: str) -> tuple[list[tuple[int, str | None]], list[int]]:
    """The hammering and the ordinary visitors at the same time."""
    limits = httpx.Limits(max_connections=100)
    async with (
        httpx.AsyncClient(timeout=30, limits=limits) as client,
        asyncio.TaskGroup() as group,
    ):
        abusive = group.create_task(hammer(client, url))
        others = [group.create_task(ordinary(client, url, n)) for n in range(ORDINARY_VISITORS)]
    return abusive.result(), [status for run in others for status in run.result()]


def test_one_visitor_hammering_spends_nobody_elses_budget(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """50x one visitor's limit beside 20 ordinary visitors: >= 99% of theirs succeed, and the
    global window counts only admitted requests."""
    with (
        running_sim("--slots", "64", "--decode-rate", "4000", "--output-tokens", "4") as sim,
        gateway_behind_proxy(
            redis_url=redis_url,
            upstream_url=sim.url,
            global_limit=GLOBAL_LIMIT,
            visitor_limit=VISITOR_LIMIT,
            max_inflight=10**6,
            window_seconds=600,  # everything falls in one window
        ) as url,
    ):
        abusive, others = asyncio.run(contend(url))
    abusive_statuses = [status for status, _ in abusive]
    assert abusive_statuses.count(200) == VISITOR_LIMIT
    assert {limit for status, limit in abusive if status != 200} == {"visitor"}
    assert others.count(200) / len(others) >= 0.99, sorted(others)
    admitted = abusive_statuses.count(200) + others.count(200)
    assert int(redis_client.get("{llmgw}:window:global") or 0) == admitted
