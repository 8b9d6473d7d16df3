"""Waking a model LM Studio unloaded: one chat wakes it (the sim loads it in LOAD_SECONDS), ten
more arrive during the load, on two gateway replicas, and wait. Measured: the waker's time from
its request to its first token, and how long after it the waiters get theirs.

Run alone: PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/waking.py
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from processes import gateway_server, redis_server, sim_server

LOAD_SECONDS = 5.0
WAITERS = 10
SIM = ("--jit", "--load-seconds", str(LOAD_SECONDS), "--decode-rate", "200")
GATEWAY = {
    "health_interval": 0.5,
    "max_output_tokens": 16,
    "reasoning_effort": "none",
    "probe_stale_factor": 1,
    "visitor_limit": 1000,
    "global_limit": 1000,
    "max_inflight": 32,
    "queue_size": 32,
}
OUTPUT = ("response.output_text.delta", "response.reasoning_text.delta")


async def first_token(client: httpx.AsyncClient, url: str) -> tuple[float, float]:
    """When a chat was sent and when its first token came (monotonic seconds)."""
    sent = time.monotonic()
    async with client.stream("POST", f"{url}/api/chat", json={"input": "Hello"}) as answer:
        async for line in answer.aiter_lines():
            if line.startswith("data: ") and json.loads(line[6:]).get("type") in OUTPUT:
                return sent, time.monotonic()
    raise RuntimeError(f"no token from {url} ({answer.status_code})")


async def wake(urls: tuple[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60) as client:
        waker = asyncio.create_task(first_token(client, urls[0]))
        await asyncio.sleep(1.0)  # the load is under way
        waiters = [first_token(client, urls[n % 2]) for n in range(WAITERS)]
        (sent, woke), *others = await asyncio.gather(waker, *waiters)
    after = [token - woke for _, token in others]
    return {
        "load_seconds": LOAD_SECONDS,
        "waker_first_token_s": woke - sent,
        "waiters": WAITERS,
        "waiters_after_waker_max_s": max(after),
        "waiters_after_waker_p50_s": sorted(after)[len(after) // 2],
    }


def asleep(url: str) -> bool:
    state: object = httpx.get(f"{url}/readyz", timeout=5).json().get("model")
    return state == "sleeping"


def wake_run(redis_url: str) -> dict[str, Any]:
    """Two replicas in front of a sim whose model is not loaded; one wake, measured."""
    with (
        sim_server(*SIM) as sim,
        gateway_server(redis_url=redis_url, upstream_url=sim.url, **GATEWAY) as one,
        gateway_server(redis_url=redis_url, upstream_url=sim.url, **GATEWAY) as two,
    ):
        deadline = time.monotonic() + 15
        while not (asleep(one.url) and asleep(two.url)):
            if time.monotonic() > deadline:
                raise RuntimeError("the gateways never saw the model asleep")
            time.sleep(0.2)
        result = asyncio.run(wake((one.url, two.url)))
        result["loads_started"] = httpx.get(f"{sim.url}/_sim/stats").json()["loads_started"]
    return result


if __name__ == "__main__":
    with redis_server() as url:
        print(json.dumps(wake_run(url), indent=2))
