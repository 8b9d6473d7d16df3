"""Scale-out: several gateway processes sharing one Redis stay exact on the global limit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sim_process import running_sim
from support import free_port, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

pytestmark = pytest.mark.slow

GATEWAYS = 4
REQUESTS = 1_000
GLOBAL_LIMIT = 100
# Many fast slots: the sim must never be the reason a request is not admitted.
FAST_SIM = ("--slots", "200", "--queue", "2000", "--decode-rate", "4000", "--output-tokens", "4")


@contextmanager
def gateway_processes(count: int, **settings: object) -> Iterator[list[str]]:
    """`count` real `llmgw serve` processes, started together; yields their URLs."""
    env = {**os.environ, "LLMGW_HEALTH_INTERVAL": "0", "LLMGW_PROBE_STALE_FACTOR": "1"}
    env |= {"LLMGW_LOG_LEVEL": "WARNING"}
    env |= {f"LLMGW_{name.upper()}": str(value) for name, value in settings.items()}
    with ExitStack() as stack:
        ports = [free_port() for _ in range(count)]
        for port in ports:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"], env={**env, "LLMGW_PORT": str(port)}
            )
            stack.callback(_stop, process)
        for port in ports:
            wait_for_port(port, timeout=30)
        yield [f"http://127.0.0.1:{port}" for port in ports]


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


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
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Four gateways on one Redis, 1,000 requests at once: exactly 100 admitted, 900 global 429."""
    with (
        running_sim(*FAST_SIM) as sim,
        gateway_processes(
            GATEWAYS,
            redis_url=redis_url,
            upstream_url=sim.url,
            global_limit=GLOBAL_LIMIT,
            visitor_limit=10**6,
            max_inflight=10**6,
            window_seconds=600,  # the whole flood falls in one window
        ) as urls,
    ):
        results = asyncio.run(flood(urls, REQUESTS))
        fallback = fallback_admissions(urls)
    assert fallback == 0, f"{fallback} admissions were decided by the in-process fallback"
    statuses = [status for status, _ in results]
    assert statuses.count(200) == GLOBAL_LIMIT
    assert statuses.count(429) == REQUESTS - GLOBAL_LIMIT, sorted(set(statuses))
    assert {limit for status, limit in results if status == 429} == {"global"}
    assert int(redis_client.get("{llmgw}:window:global") or 0) == GLOBAL_LIMIT
