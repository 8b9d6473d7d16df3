"""Scale-out: several gateway processes sharing one Redis stay exact on the global limit."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest
from gateway_subprocess import gateway_processes
from prometheus_client.parser import text_string_to_metric_families
from sim_process import running_sim

if TYPE_CHECKING:
    from pathlib import Path

    import redis

pytestmark = pytest.mark.slow

GATEWAYS = 4
REQUESTS = 1_000
GLOBAL_LIMIT = 100
# Many fast slots: the sim must never be the reason a request is not admitted.
FAST_SIM = ("--slots", "200", "--queue", "2000", "--decode-rate", "4000", "--output-tokens", "4")


async def one_chat(client: httpx.AsyncClient, url: str) -> tuple[int, str | None]:
    """Post a chat, read it to the end; the status and, for a 429, whose limit it was."""
    async with client.stream("POST", f"{url}/api/chat", json={"input": "hi"}) as response:
        await response.aread()
        if response.status_code == 429:
            return 429, str(response.json()["limit"])
        return response.status_code, None


async def flood(urls: list[str], requests: int) -> list[tuple[int, str | None]]:
    """`requests` chats at once, spread evenly over the gateways."""
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return await asyncio.gather(
            *(one_chat(client, urls[n % len(urls)]) for n in range(requests))
        )


def fallback_admissions(urls: list[str]) -> int:
    """Decisions the gateways took from their in-process fallback instead of Redis."""
    total = 0.0
    for url in urls:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == "llmgw_admission_decisions":
                total += sum(s.value for s in family.samples if s.labels["path"] == "fallback")
    return int(total)


def test_four_gateways_admit_exactly_the_global_limit(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Four gateways on one Redis, 1,000 requests at once: exactly 100 admitted, 900 global 429."""
    with (
        running_sim(*FAST_SIM) as sim,
        gateway_processes(
            [tmp_path / f"gateway-{n}.log" for n in range(GATEWAYS)],
            redis_url=redis_url,
            upstream_url=sim.url,
            global_limit=str(GLOBAL_LIMIT),
            visitor_limit=str(10**6),
            max_inflight=str(10**6),
            window_seconds="600",  # the whole flood falls in one window
            health_interval="0",
            probe_stale_factor="1",
            log_level="WARNING",
        ) as gateways,
    ):
        urls = [gateway.url for gateway in gateways]
        results = asyncio.run(flood(urls, REQUESTS))
        fallback = fallback_admissions(urls)
    assert fallback == 0, f"{fallback} admissions were decided by the in-process fallback"
    statuses = [status for status, _ in results]
    assert statuses.count(200) == GLOBAL_LIMIT
    assert statuses.count(429) == REQUESTS - GLOBAL_LIMIT, sorted(set(statuses))
    assert {limit for status, limit in results if status == 429} == {"global"}
    assert int(redis_client.get("{llmgw}:window:global") or 0) == GLOBAL_LIMIT
