"""The owner's lane under a public flood: visitors at ten times the sim's capacity on /api/chat
(Poisson arrivals, refused ones do not retry) while the owner chats through
/v1/chat/completions with an owner's key, one chat at a time with a pause between, as a
person at their tools does. The gateway's in-flight cap is the sim's slots.

Three arms, each its own gateway against the same sim:
- lanes: LLMGW_OWNER_RESERVED_INFLIGHT=1, a place held back for the owner;
- keyed, none held back: the owner's key, LLMGW_OWNER_RESERVED_INFLIGHT=0 (what the
  lane-ordered line alone buys the owner);
- without lanes: the owner as one more /api/chat visitor and no place held back, as before
  lanes. This is the reference: a keyed owner with none held back still goes first in the
  line, so it would not show what lanes buy.

Run alone: PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/lanes.py
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from adaptive import INSTRUCTIONS
from goals import Goal, table
from keyed import KEY_SECRET, owner_key
from latency import percentile
from processes import gateway, redis_server, sim
from setups import SAMPLES

from app.chat.request import ChatRequest
from app.server.routes.openai_chat import CHAT_PATH
from app.settings import load_settings
from app.upstream.client import RESPONSES_PATH, build_payload

ENABLED = os.environ.get("LLMGW_BENCH_LANES", "1") == "1"
SLOTS = 4
ANSWER = 48  # tokens of every answer
SIM_ARGS = ("--slots", str(SLOTS), "--queue", "64", "--decode-rate", "200",
            "--output-tokens", str(ANSWER))  # fmt: skip
FLOOD = 10  # times the sim's capacity, in chats per second
OWNER_CHATS = max(10, SAMPLES // 10)
UNLOADED_CHATS = 20
OWNER_PAUSE = 0.5  # seconds the owner reads an answer before the next question
WARM_UP = 1.0  # seconds of flood before the owner's first chat: every place is taken
TEXT = ("output_text.delta", '"content":"')  # a Responses text delta, a chat chunk's text
GATEWAY = {
    "max_inflight": SLOTS,
    "max_output_tokens": ANSWER,
    "reasoning_effort": "none",
    "instructions": INSTRUCTIONS,  # some 300 tokens: a prefill of about 0.2 s
    "global_limit": 10**6,
    "visitor_limit": 10**6,
    "probe_stale_factor": 1,
    "key_secret": KEY_SECRET,
}
ARMS = {
    "lanes": (1, True),  # (LLMGW_OWNER_RESERVED_INFLIGHT, the owner uses the key)
    "keyed_none_held": (0, True),
    "no_lanes": (0, False),
}


@dataclass(frozen=True)
class Chatter:
    """Who sends what where: the owner (keyed, or as a visitor) or one visitor of the flood."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Tally:
    """What one party's chats saw: a refused chat's time to first token is infinite."""

    ttft: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    output_tokens: int = 0
    elapsed: float = 0.0


def visitor(n: int) -> Chatter:
    return Chatter("/api/chat", {"input": "hi"}, {"X-Thumbmark-Id": f"lanes-{n}"})


def owner(key: str | None) -> Chatter:
    """The owner's chat: with the key on the keyed route, or without as a visitor."""
    if key is None:
        return visitor(0)
    messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": "hi"}]
    body = {"messages": messages, "stream": True, "max_tokens": ANSWER}
    return Chatter(CHAT_PATH, body, {"Authorization": f"Bearer {key}"})


def output_tokens(line: str) -> int:
    """The answer's tokens from a stream's usage: Responses' last event, or a chat's last chunk."""
    if "response.completed" in line:
        return int(json.loads(line[6:])["response"]["usage"]["output_tokens"])
    if '"usage":{' in line:
        return int(json.loads(line[6:])["usage"]["completion_tokens"])
    return 0


async def chat(client: httpx.AsyncClient, url: str, who: Chatter, into: Tally) -> None:
    """One chat: its status, time to its first text and its output tokens."""
    started = time.perf_counter()
    async with client.stream("POST", url + who.path, json=who.body, headers=who.headers) as r:
        into.statuses.append(r.status_code)
        if r.status_code != 200:
            await r.aread()
            into.ttft.append(math.inf)
            return
        first = True
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if first and any(marker in line for marker in TEXT):
                into.ttft.append(time.perf_counter() - started)
                first = False
            into.output_tokens += output_tokens(line)


async def owner_chats(url: str, who: Chatter, into: Tally, chats: int, pause: float) -> None:
    """The owner's chats one after another, on a connection of their own."""
    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(chats):
            await chat(client, url, who, into)
            await asyncio.sleep(pause)


async def flooded(url: str, rate: float, who: Chatter) -> tuple[Tally, Tally]:
    """The flood, until the owner (who starts once it has filled every place) is done."""
    public, mine, rng = Tally(), Tally(), random.Random(7)
    done = asyncio.Event()

    async def the_owner() -> None:
        await asyncio.sleep(WARM_UP)
        await owner_chats(url, who, mine, OWNER_CHATS, OWNER_PAUSE)
        done.set()

    limits = httpx.Limits(max_connections=1000)
    async with (
        httpx.AsyncClient(timeout=120, limits=limits) as client,
        asyncio.TaskGroup() as group,
    ):
        started = time.perf_counter()
        group.create_task(the_owner())
        n = 0
        while not done.is_set():
            n += 1
            group.create_task(chat(client, url, visitor(n), public))
            await asyncio.sleep(rng.expovariate(rate))
    public.elapsed = time.perf_counter() - started
    return public, mine


async def capacity(sim_url: str, slots: int = SLOTS, seconds: float = 12.0) -> dict[str, float]:
    """The sim's own capacity with `slots` of its slots kept busy (all of them: its capacity):
    chats and output tokens per second, each chat as the gateway sends a visitor's."""
    payload = build_payload(ChatRequest(input="hi"), load_settings(**GATEWAY))
    run, deadline = Tally(), time.perf_counter() + seconds
    direct = Chatter(RESPONSES_PATH, json.loads(payload), {})

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            await chat(client, sim_url, direct, run)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(slots)))
    elapsed = time.perf_counter() - started
    return {
        "chats_per_s": run.statuses.count(200) / elapsed,
        "tokens_per_s": run.output_tokens / elapsed,
    }


def arm(
    base: dict[str, object], reserved: int, who: Chatter, measured: dict[str, float]
) -> dict[str, float]:
    """One gateway: the owner's chats alone (after one that opens connections and looks the
    key up), then under the flood."""
    with gateway(**base, owner_reserved_inflight=reserved) as url:
        alone = Tally()
        asyncio.run(owner_chats(url, who, Tally(), 1, 0.1))
        asyncio.run(owner_chats(url, who, alone, UNLOADED_CHATS, 0.1))
        public, mine = asyncio.run(flooded(url, FLOOD * measured["chats_per_s"], who))
    unloaded = percentile(alone.ttft, 0.5)
    goodput = public.output_tokens / public.elapsed
    return {
        "owner_unloaded_ttft_p50_s": unloaded,
        "owner_ttft_p50_s": percentile(mine.ttft, 0.5),
        "owner_ttft_p95_s": percentile(mine.ttft, 0.95),
        "owner_ratio_p95": percentile(mine.ttft, 0.95) / unloaded,
        "owner_chats": len(mine.statuses),
        "owner_refused": len(mine.statuses) - mine.statuses.count(200),
        "public_requests": len(public.statuses),
        "public_admitted": public.statuses.count(200),
        "public_ttft_p50_s": percentile([t for t in public.ttft if t < math.inf], 0.5),
        "public_goodput_tokens_per_s": goodput,
        "public_goodput_share": goodput / measured["tokens_per_s"],
        "seconds": public.elapsed,
    }


def compare(redis_url: str) -> dict[str, Any]:
    """Each arm against one sim flooded at ten times its capacity."""
    key = owner_key(redis_url, "bench-lanes-owner")
    with sim(*SIM_ARGS) as sim_url:
        measured = asyncio.run(capacity(sim_url))
        # What the public can get at most with one slot held back for an owner who is away.
        ceiling = asyncio.run(capacity(sim_url, SLOTS - ARMS["lanes"][0]))
        base: dict[str, object] = {"redis_url": redis_url, "upstream_url": sim_url, **GATEWAY}
        runs = {
            name: arm(base, reserved, owner(key if keyed else None), measured)
            for name, (reserved, keyed) in ARMS.items()
        }
    return {
        "capacity": measured,
        "public_ceiling_share": ceiling["tokens_per_s"] / measured["tokens_per_s"],
        "offered_chats_per_s": FLOOD * measured["chats_per_s"],
        **runs,
    }


LABELS = {
    "lanes": "lanes (1 place held back)",
    "keyed_none_held": "owner's key, none held back",
    "no_lanes": "without lanes (owner as a visitor)",
}


def markdown(result: dict[str, Any]) -> list[str]:
    """The arms side by side, and the lane goals."""
    capacity_ = result["capacity"]
    rows = [
        "",
        f"## The owner's lane under a public flood at {FLOOD} times the sim's capacity",
        "",
        (
            f"Sim capacity {capacity_['chats_per_s']:.2f} chats/s ({capacity_['tokens_per_s']:.0f} "
            f"output tokens/s, {SLOTS} slots, some 300 tokens of instructions to prefill); "
            f"offered {result['offered_chats_per_s']:.1f} chats/s of visitors on /api/chat as "
            f"Poisson arrivals, while the owner makes {OWNER_CHATS} chats one at a time "
            f"({OWNER_PAUSE} s apart, the first {WARM_UP} s in). In-flight cap {SLOTS}, the "
            "waiting room as configured by default. Unloaded: the median of the owner's "
            f"{UNLOADED_CHATS} chats alone on the same gateway just before. A refused owner chat "
            "counts as never answered. With one slot held back the public's goodput can reach at "
            f"most what the sim gets through on {SLOTS - 1} slots, "
            f"{result['public_ceiling_share']:.0%} of its capacity (measured direct), and less "
            "while the owner's chat holds the place held back."
        ),
        "",
        (
            "| arm | owner TTFT unloaded | owner TTFT p50 / p95 | p95 / unloaded | owner "
            "refused | public goodput | of capacity | public admitted | seconds |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in LABELS.items():
        run = result[name]
        rows.append(
            f"| {label} | {_ms(run['owner_unloaded_ttft_p50_s'])} | "
            f"{_ms(run['owner_ttft_p50_s'])} / {_ms(run['owner_ttft_p95_s'])} | "
            f"{_times(run['owner_ratio_p95'])} | {run['owner_refused']} of {run['owner_chats']} | "
            f"{run['public_goodput_tokens_per_s']:.0f} tok/s | {run['public_goodput_share']:.0%} | "
            f"{run['public_admitted']} of {run['public_requests']} | {run['seconds']:.0f} |"
        )
    return [*rows, "", *table(lane_goals(result))]


def _ms(seconds: float) -> str:
    return "refused" if seconds == math.inf else f"{seconds * 1000:,.0f} ms"


def _times(ratio: float) -> str:
    return "no answer" if ratio == math.inf else f"{ratio:.2f}x"


def lane_goals(result: dict[str, Any]) -> list[Goal]:
    """With lanes, the owner barely notices the flood while the public keeps the model busy."""
    run, reference = result["lanes"], result["no_lanes"]
    return [
        Goal(
            f"owner's lane, public flood at {FLOOD}x capacity: owner TTFT p95 / unloaded",
            1.3,
            run["owner_ratio_p95"],
            "x",
            f"without lanes: {_times(reference['owner_ratio_p95'])} ({reference['owner_refused']}"
            f" of {reference['owner_chats']} owner chats refused)",
        ),
        Goal(
            f"owner's lane, public flood at {FLOOD}x capacity: public goodput / sim capacity",
            85,
            100 * run["public_goodput_share"],
            "%",
            f"without lanes: {reference['public_goodput_share']:.0%}; the public's ceiling "
            f"with a slot held back: {result['public_ceiling_share']:.0%}",
            at_least=True,
        ),
    ]


if __name__ == "__main__":
    with redis_server() as url:
        outcome = compare(url)
    print(json.dumps(outcome, indent=2))
    print("\n".join(markdown(outcome)))
