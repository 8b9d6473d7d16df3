"""Mixed prompt sizes at three times the sim's capacity: half short questions, half some 6,000
characters (about 1,500 tokens to prefill), admitted by a request window against a token window,
each set to what the sim gets through in a window of the same mix.

The sim reads 1,500 tokens a second per slot, so a long prompt holds its slot about a second
before its first token while a short one answers at once: a request window counts both alike,
a token window counts what they cost.

Each runs twice: the windows alone (no in-flight cap), then behind the in-flight cap at the
sim's four slots with a short wait in line, as a gateway is configured by default.

Run alone: PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/mixed.py
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from goals import Goal, table
from processes import gateway, redis_server, sim

ANSWER = 16  # tokens of every answer, and the gateway's cap on it
SIM_ARGS = (
    "--slots", "4", "--queue", "512", "--decode-rate", "400", "--prefill-rate", "1500",
    "--output-tokens", str(ANSWER),
)  # fmt: skip
SECONDS = 30.0
WINDOW = 1  # seconds: a window short enough to act as a rate
SHORT = "What is this blog about?"
LONG = "Here is a long piece of my own writing for you to read carefully. " * 91  # 6,006 chars
GATEWAY = {
    "max_output_tokens": ANSWER,
    "reasoning_effort": "none",
    "window_seconds": WINDOW,
    "visitor_limit": 10**6,
    "max_inflight": 10**6,
    "health_interval": 0,
    "probe_stale_factor": 1,
}


@dataclass
class Run:
    """What one load run saw."""

    ttft: list[float] = field(default_factory=list)
    tokens: int = 0  # input and output of the chats answered, as the model reported them
    output_tokens: int = 0
    long_admitted: int = 0
    statuses: list[int] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self, capacity: dict[str, float]) -> dict[str, float]:
        ordered = sorted(self.ttft) or [float("nan")]
        admitted = self.statuses.count(200)
        goodput = self.tokens / self.elapsed
        return {
            "requests": len(self.statuses),
            "admitted": admitted,
            "long_share_of_admitted": self.long_admitted / max(1, admitted),
            "refused_share": 1 - admitted / max(1, len(self.statuses)),
            "ttft_p50_s": statistics.median(ordered),
            "ttft_p95_s": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
            "goodput_tokens_per_s": goodput,
            "goodput_share_of_capacity": goodput / capacity["tokens_per_s"],
            "output_tokens_per_s": self.output_tokens / self.elapsed,
        }


def mix(seed: int) -> random.Random:
    return random.Random(seed)


async def one_chat(client: httpx.AsyncClient, url: str, run: Run, text: str, n: int) -> None:
    """One visitor's chat through the gateway: its status, TTFT and the tokens it used."""
    started = time.perf_counter()
    headers = {"X-Thumbmark-Id": f"mixed-{n}"}
    async with client.stream("POST", f"{url}/api/chat", json={"input": text}, headers=headers) as r:
        run.statuses.append(r.status_code)
        if r.status_code != 200:
            await r.aread()
            return
        run.long_admitted += text is LONG
        first = True
        async for line in r.aiter_lines():
            if first and line.startswith("data: ") and "delta" in line:
                run.ttft.append(time.perf_counter() - started)
                first = False
            if line.startswith("data: ") and "response.completed" in line:
                usage = json.loads(line[6:])["response"]["usage"] or {}
                run.tokens += int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
                run.output_tokens += int(usage.get("output_tokens", 0))


async def open_loop(url: str, rate: float) -> Run:
    """Poisson arrivals at `rate` per second, half of them long, whatever the answers."""
    run, rng = Run(), mix(7)
    async with (
        httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=1000)) as client,
        asyncio.TaskGroup() as group,
    ):
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < SECONDS:
            n += 1
            text = LONG if rng.random() < 0.5 else SHORT
            group.create_task(one_chat(client, url, run, text, n))
            await asyncio.sleep(rng.expovariate(rate))
    run.elapsed = time.perf_counter() - started
    return run


async def unloaded_ttft(url: str, samples: int = 20) -> float:
    """The mix one chat at a time: its TTFT p95 (a long prompt's prefill, unhurried)."""
    run = Run()
    async with httpx.AsyncClient(timeout=60) as client:
        for n in range(samples):
            await one_chat(client, url, run, LONG if n % 2 else SHORT, n)
    ordered = sorted(run.ttft)
    return ordered[int(0.95 * (len(ordered) - 1))]


async def capacity(sim_url: str, seconds: float = 15.0) -> dict[str, float]:
    """The sim's own capacity on the mix: chats and tokens per second with every slot busy."""
    run, rng = Run(), mix(3)
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            text = LONG if rng.random() < 0.5 else SHORT
            body = {"model": "m", "input": text, "stream": True, "max_output_tokens": ANSWER}
            async with client.stream("POST", f"{sim_url}/v1/responses", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and "response.completed" in line:
                        usage = json.loads(line[6:])["response"]["usage"]
                        run.tokens += usage["input_tokens"] + usage["output_tokens"]
                        run.statuses.append(200)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(4)))
    elapsed = time.perf_counter() - started
    return {"chats_per_s": len(run.statuses) / elapsed, "tokens_per_s": run.tokens / elapsed}


def compare(redis_url: str) -> dict[str, Any]:
    """Request-only, then token-aware admission, against one sim at three times its capacity."""
    with sim(*SIM_ARGS) as sim_url:
        measured = asyncio.run(capacity(sim_url))
        offered = 3 * measured["chats_per_s"]
        base: dict[str, object] = {"redis_url": redis_url, "upstream_url": sim_url, **GATEWAY}
        with gateway(**base, global_limit=10**6) as url:
            unloaded = asyncio.run(unloaded_ttft(url))
        windows: dict[str, dict[str, object]] = {
            "request_only": {"global_limit": max(1, round(measured["chats_per_s"] * WINDOW))},
            "token_aware": {
                "global_limit": 10**6,
                "global_token_limit": max(1, round(measured["tokens_per_s"] * WINDOW)),
            },
        }
        # The README's advice: a wait in line of under half the usual time to first token.
        capped: dict[str, object] = {
            "max_inflight": 4,
            "owner_reserved_inflight": 0,  # visitors only: no owner to hold a place for
            "queue_wait_seconds": round(0.25 * unloaded, 3),
        }
        arms = {**windows, **{f"{name}_capped": {**w, **capped} for name, w in windows.items()}}
        runs = {}
        for name, limits in arms.items():
            with gateway(**{**base, **limits}) as url:
                runs[name] = asyncio.run(open_loop(url, offered)).summary(measured)
    return {
        "capacity": measured,
        "offered_chats_per_s": offered,
        "unloaded_ttft_p95_s": unloaded,
        "limits": arms,
        **runs,
    }


LABELS = {
    "request_only": "request window",
    "token_aware": "token window",
    "request_only_capped": "request window, in-flight cap",
    "token_aware_capped": "token window, in-flight cap",
}


def markdown(result: dict[str, Any]) -> list[str]:
    """The request-only versus token-aware table and its goals."""
    capacity_, unloaded = result["capacity"], result["unloaded_ttft_p95_s"]
    rows = [
        "",
        "## Mixed prompt sizes at three times the sim's capacity",
        "",
        (
            f"Half the chats ask a short question, half send ~6,000 characters (1,500 tokens to "
            f"prefill at 1,500 tokens/s a slot); answers {ANSWER} tokens. Sim capacity on this "
            f"mix {capacity_['chats_per_s']:.2f} chats/s ({capacity_['tokens_per_s']:.0f} "
            f"tokens/s, 4 slots); offered {result['offered_chats_per_s']:.2f} chats/s as Poisson "
            f"arrivals for {SECONDS:.0f} s; unloaded TTFT p95 {unloaded * 1000:.0f} ms. Windows of "
            f"{WINDOW} s; limits: `{result['limits']}`."
        ),
        "",
        (
            "| admission | TTFT p50 | TTFT p95 | p95 / unloaded | goodput (tokens) | of capacity"
            " | output tokens/s | long prompts among admitted | refused |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in LABELS.items():
        run = result[name]
        rows.append(
            f"| {label} | {run['ttft_p50_s'] * 1000:.0f} ms | {run['ttft_p95_s'] * 1000:.0f} ms | "
            f"{run['ttft_p95_s'] / unloaded:.2f}x | {run['goodput_tokens_per_s']:.0f} tok/s | "
            f"{run['goodput_share_of_capacity']:.0%} | {run['output_tokens_per_s']:.0f} | "
            f"{run['long_share_of_admitted']:.0%} | {run['refused_share']:.0%} |"
        )
    return [*rows, "", *table(mixed_goals(result))]


def mixed_goals(result: dict[str, Any]) -> list[Goal]:
    """Token-aware admission: admitted TTFT p95 near unloaded while goodput stays high, by the
    windows alone and behind the in-flight cap, each beside request-only admission."""
    unloaded = result["unloaded_ttft_p95_s"]
    goals = []
    for suffix, how in (("", "windows alone"), ("_capped", "with the in-flight cap")):
        run, reference = result[f"token_aware{suffix}"], result[f"request_only{suffix}"]
        goals += [
            Goal(
                f"mixed sizes, token-aware ({how}): admitted TTFT p95 / unloaded TTFT p95",
                1.5,
                run["ttft_p95_s"] / unloaded,
                "x",
                f"request-only: {reference['ttft_p95_s'] / unloaded:.2f}x",
            ),
            Goal(
                f"mixed sizes, token-aware ({how}): goodput / sim capacity (tokens)",
                90,
                100 * run["goodput_share_of_capacity"],
                "%",
                f"request-only: {reference['goodput_share_of_capacity']:.0%}",
                at_least=True,
            ),
        ]
    return goals


if __name__ == "__main__":
    with redis_server() as url:
        outcome = compare(url)
    print(json.dumps(outcome, indent=2))
    print("\n".join(markdown(outcome)))
