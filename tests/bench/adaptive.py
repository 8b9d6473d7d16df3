"""Adaptive versus static limits with the sim driven at three times its capacity, same run."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from goals import Goal, table
from probe_process import running_probe
from processes import gateway, sim

SIM_ARGS = ("--slots", "4", "--decode-rate", "200", "--output-tokens", "48", "--queue", "64")
SECONDS = 30.0
QUEUE_SHARE = float(os.environ.get("LLMGW_BENCH_QUEUE_SHARE", "0.25"))
# A blog assistant's system prompt (about 300 tokens), so prefill costs what it does in real use.
INSTRUCTIONS = "You are the friendly assistant of a personal blog. Answer briefly. " * 18


@dataclass
class Run:
    """What one load run saw."""

    ttft: list[float] = field(default_factory=list)
    output_tokens: int = 0
    statuses: list[int] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self, capacity_tokens_per_second: float) -> dict[str, float]:
        admitted = self.statuses.count(200)
        ordered = sorted(self.ttft) or [float("nan")]
        goodput = self.output_tokens / self.elapsed
        return {
            "requests": len(self.statuses),
            "admitted": admitted,
            "shed_share": 1 - admitted / max(1, len(self.statuses)),
            "ttft_p50_s": statistics.median(ordered),
            "ttft_p95_s": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
            "goodput_tokens_per_s": goodput,
            "goodput_share_of_capacity": goodput / capacity_tokens_per_second,
        }


async def one_chat(client: httpx.AsyncClient, url: str, run: Run, visitor: int) -> None:
    """One visitor's chat through the gateway: its status, TTFT and completed tokens."""
    started = time.perf_counter()
    headers = {"X-Thumbmark-Id": f"bench-{visitor}"}
    async with client.stream("POST", f"{url}/api/chat", json={"input": "hi"}, headers=headers) as r:
        run.statuses.append(r.status_code)
        if r.status_code != 200:
            await r.aread()
            return
        first = True
        async for line in r.aiter_lines():
            if first and line.startswith("data: ") and "delta" in line:
                run.ttft.append(time.perf_counter() - started)
                first = False
            if line.startswith("data: ") and "response.completed" in line:
                usage = json.loads(line[6:])["response"]["usage"] or {}
                run.output_tokens += int(usage.get("output_tokens", 0))


async def open_loop(url: str, rate: float, seconds: float = SECONDS) -> Run:
    """Poisson arrivals at `rate` per second, whatever the answers: real visitors don't wait."""
    run = Run()
    rng = random.Random(7)
    limits = httpx.Limits(max_connections=1000)
    async with (
        httpx.AsyncClient(timeout=120, limits=limits) as client,
        asyncio.TaskGroup() as group,
    ):
        started = time.perf_counter()
        visitor = 0
        while time.perf_counter() - started < seconds:
            visitor += 1
            group.create_task(one_chat(client, url, run, visitor))
            await asyncio.sleep(rng.expovariate(rate))
    run.elapsed = time.perf_counter() - started
    return run


async def unloaded_ttft(url: str, samples: int = 15) -> float:
    run = Run()
    async with httpx.AsyncClient(timeout=60) as client:
        for n in range(samples):
            await one_chat(client, url, run, n)
    return statistics.median(run.ttft)


async def capacity(sim_url: str, seconds: float = 15.0) -> tuple[float, float]:
    """The sim's own capacity: tokens/s and requests/s with every slot kept busy."""
    run = Run()
    deadline = time.perf_counter() + seconds
    body = {"model": "m", "input": "hi", "stream": True, "reasoning": {"effort": "medium"},
            "instructions": INSTRUCTIONS}  # fmt: skip

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            async with client.stream("POST", f"{sim_url}/v1/responses", json=body) as r:
                async for line in r.aiter_lines():
                    if "response.completed" in line and line.startswith("data: "):
                        run.output_tokens += json.loads(line[6:])["response"]["usage"][
                            "output_tokens"
                        ]
                        run.statuses.append(200)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(4)))
    elapsed = time.perf_counter() - started
    return run.output_tokens / elapsed, len(run.statuses) / elapsed


def compare(redis_url: str) -> dict[str, object]:
    """Static then adaptive limits against one sim at three times its capacity."""
    with sim(*SIM_ARGS) as sim_url:
        tokens_per_s, requests_per_s = asyncio.run(capacity(sim_url))
        offered = 3 * requests_per_s
        base = {
            "redis_url": redis_url,
            "upstream_url": sim_url,
            "global_limit": 10**6,
            "visitor_limit": 10**6,
            "health_interval": 0,
            "instructions": INSTRUCTIONS,
        }
        with gateway(**base, max_inflight=10**6, probe_stale_factor=1) as url:
            unloaded = asyncio.run(unloaded_ttft(url))
            static = asyncio.run(open_loop(url, offered))
        adaptive_settings = {
            "max_inflight": 4,  # the model server's parallel slots: the base the governor shrinks
            "owner_reserved_inflight": 0,  # visitors only: no owner to hold a place for
            # Pressure counts from a tenfold slowdown, as 5 s does for a Mac's ~0.5 s.
            "governor_ttft_limit_seconds": round(max(0.5, 10 * unloaded), 3),
            # A shed request waits in line for a freed slot a fraction of the unloaded TTFT, as
            # the README advises: that wait is part of the admitted requests' TTFT.
            "queue_wait_seconds": round(QUEUE_SHARE * unloaded, 3),
        }
        runs = {}
        with running_probe(redis_url, sim_url, interval=1.0, timeout=3.0):
            # The same governor with the waiting room closed: what the line itself buys.
            for name, queue in (("adaptive", {}), ("adaptive_no_queue", {"queue_wait_seconds": 0})):
                with gateway(**base, **{**adaptive_settings, **queue}) as url:
                    time.sleep(3)  # the first snapshots arrive
                    runs[name] = asyncio.run(open_loop(url, offered))
    return {
        "capacity_tokens_per_s": tokens_per_s,
        "capacity_requests_per_s": requests_per_s,
        "offered_requests_per_s": offered,
        "unloaded_ttft_s": unloaded,
        "adaptive_settings": adaptive_settings,
        "static": static.summary(tokens_per_s),
        **{name: run.summary(tokens_per_s) for name, run in runs.items()},
    }


def markdown(result: dict[str, Any]) -> list[str]:
    """The static-versus-adaptive table."""
    rows = [
        "",
        "## Adaptive versus static limits at three times the sim's capacity",
        "",
        (
            f"Sim capacity {result['capacity_requests_per_s']:.2f} chats/s "
            f"({result['capacity_tokens_per_s']:.0f} tokens/s, 4 slots); offered "
            f"{result['offered_requests_per_s']:.2f} chats/s as Poisson arrivals for 30 s; "
            f"unloaded TTFT {result['unloaded_ttft_s'] * 1000:.0f} ms."
        ),
        "",
        (
            "| limits | admitted TTFT p50 | admitted TTFT p95 | p95 / unloaded | goodput | "
            "of capacity | shed or refused |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {"static": "static", "adaptive": "adaptive", "adaptive_no_queue": "adaptive, no line"}
    for name, label in names.items():
        if name not in result:
            continue
        run = result[name]
        rows.append(
            f"| {label} | {run['ttft_p50_s'] * 1000:.0f} ms | {run['ttft_p95_s'] * 1000:.0f} ms | "
            f"{run['ttft_p95_s'] / result['unloaded_ttft_s']:.1f}x | "
            f"{run['goodput_tokens_per_s']:.0f} tok/s | {run['goodput_share_of_capacity']:.0%} | "
            f"{run['shed_share']:.0%} |"
        )
    return [
        *rows,
        "",
        f"Adaptive settings: `{result['adaptive_settings']}`.",
        "",
        *table(adaptive_goals(result)),
    ]


def adaptive_goals(result: dict[str, Any]) -> list[Goal]:
    """The load-adaptive goal: admitted TTFT p95 near unloaded while goodput stays high."""
    run = result["adaptive"]
    return [
        Goal(
            "adaptive: admitted TTFT p95 / unloaded TTFT",
            1.5,
            run["ttft_p95_s"] / result["unloaded_ttft_s"],
            "x",
            f"static limits: {result['static']['ttft_p95_s'] / result['unloaded_ttft_s']:.1f}x",
        ),
        Goal(
            "adaptive: goodput / sim capacity",
            90,
            100 * run["goodput_share_of_capacity"],
            "%",
            f"static limits: {result['static']['goodput_share_of_capacity']:.0%}",
            at_least=True,
        ),
    ]
