"""Token-aware admission end to end (real gateways, real redis-server, the sim): replicas stay
exact on one token window and settle it to the model's real usage, a visitor sending long
prompts is refused by tokens while short ones still chat, and a visitor who leaves mid-stream
pays for what was relayed."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from chat_client import chat
from gateway_server import running_gateway
from gateway_subprocess import gateway_processes
from sim_process import running_sim
from support import eventually, sample

if TYPE_CHECKING:
    from pathlib import Path

    import redis

GLOBAL_TOKENS = "{llmgw}:tokens:global"
ANSWER_CAP = 64  # LLMGW_MAX_OUTPUT_TOKENS: what each reservation holds for the answer
LONG = "Tell me about the history of the chat widget. " * 130  # 5,980 characters
SHORT = "Hello, how are you?"
# Room for every stream at once, paced so that streams overlap; input read at once.
MANY_SLOTS = (
    "--slots", "200", "--queue", "2000", "--decode-rate", "600", "--output-tokens", "30",
    "--prefill-rate", "1000000",
)  # fmt: skip
QUIET = {"health_interval": "0", "probe_stale_factor": "1", "reasoning_effort": "none"}


def estimate(text: str) -> int:
    """The gateway's reservation for a chat of this text (chars/4 rounded up, plus the cap)."""
    return -(-len(text) // 4) + ANSWER_CAP


async def one_chat(client: httpx.AsyncClient, url: str, text: str) -> dict[str, Any]:
    """A chat read to its end: its status, its 429 body, or the usage the model reported."""
    async with client.stream("POST", f"{url}/api/chat", json={"input": text}) as response:
        if response.status_code != 200:
            await response.aread()
            retry_after = response.headers.get("Retry-After")
            return {"status": response.status_code, "body": response.json(), "wait": retry_after}
        usage = None
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"response.completed"' in line:
                usage = json.loads(line[6:])["response"]["usage"]
        return {"status": 200, "usage": usage}


async def flood(urls: list[str], texts: list[str]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=len(texts))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(one_chat(client, urls[n % len(urls)], text) for n, text in enumerate(texts))
        )


@pytest.mark.slow
def test_four_gateways_hold_one_token_window_and_settle_it_to_real_usage(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Four replicas, one token window of 50,000, 100 chats of mixed sizes at once (more than
    the window can hold even after refunds): the window never holds more than its limit, the
    rest are 429 "tokens", and once every stream has ended Redis holds exactly the tokens the
    model reported using, as do the gateways' counters."""
    texts = [LONG if n % 2 else SHORT for n in range(100)]
    assert sum(estimate(text) for text in texts) > 1.5 * 50_000
    highest, stop = 0, threading.Event()

    def watch() -> None:
        nonlocal highest
        while not stop.wait(0.005):
            highest = max(highest, int(redis_client.get(GLOBAL_TOKENS) or 0))

    with (
        running_sim(*MANY_SLOTS) as sim,
        gateway_processes(
            [tmp_path / f"gateway-{n}.log" for n in range(4)],
            redis_url=redis_url,
            upstream_url=sim.url,
            global_token_limit="50000",
            global_limit=str(10**6),
            visitor_limit=str(10**6),
            max_inflight=str(10**6),
            max_output_tokens=str(ANSWER_CAP),
            window_seconds="600",
            log_level="WARNING",
            **QUIET,
        ) as gateways,
    ):
        urls = [gateway.url for gateway in gateways]
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            results = asyncio.run(flood(urls, texts))
        finally:
            stop.set()
            watcher.join()
        assert eventually(lambda: redis_client.zcard("{llmgw}:inflight") == 0)
        counters = [httpx.get(f"{url}/metrics").text for url in urls]
    answered = [r["usage"] for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] != 200]
    # The estimate against the sim's own count: the input exactly, the answer within its cap,
    # so every reservation covers its usage.
    asked = [text for text, r in zip(texts, results, strict=True) if r["status"] == 200]
    assert [u["input_tokens"] for u in answered] == [estimate(t) - ANSWER_CAP for t in asked]
    assert all(u["output_tokens"] <= ANSWER_CAP for u in answered)
    used = sum(usage["input_tokens"] + usage["output_tokens"] for usage in answered)
    assert refused
    assert {r["status"] for r in refused} == {429}
    assert {r["body"]["limit"] for r in refused} == {"tokens"}
    assert all(int(r["wait"]) == r["body"]["retry_after"] > 0 for r in refused)
    assert 0 < highest <= 50_000
    assert int(redis_client.get(GLOBAL_TOKENS) or 0) == used
    spent = sum(sample(text, "llmgw_tokens_spent_total") for text in counters)
    reserved = sum(sample(text, "llmgw_tokens_reserved_total") for text in counters)
    refunded = sum(sample(text, "llmgw_tokens_refunded_total") for text in counters)
    assert spent == used
    assert reserved - refunded == used
    assert reserved == sum(estimate(text) for text in asked)


def test_long_prompts_are_refused_by_tokens_while_short_ones_still_chat(redis_url: str) -> None:
    """A visitor sending ~6,000-character prompts spends their token budget in two chats and is
    refused by tokens on the third, while other visitors, and that visitor's own short
    question, still get answers."""
    with (
        running_sim("--decode-rate", "2000", "--output-tokens", "30") as sim,
        running_gateway(
            upstream_url=sim.url,
            redis_url=redis_url,
            trusted_proxies="127.0.0.1/32",
            visitor_token_limit=4_000,
            visitor_limit=100,
            max_output_tokens=ANSWER_CAP,
            reasoning_effort="none",
        ) as gateway,
    ):
        heavy = {"X-Forwarded-For": "203.0.113.7"}
        long_chats = [chat(gateway.url, {"input": LONG}, headers=heavy) for _ in range(3)]
        others = [
            chat(gateway.url, {"input": SHORT}, headers={"X-Forwarded-For": f"198.51.100.{n}"})
            for n in range(1, 6)
        ]
        own_short = chat(gateway.url, {"input": SHORT}, headers=heavy)
    assert [received.status for received in long_chats] == [200, 200, 429]
    refused = long_chats[2]
    assert refused.json["limit"] == "tokens"
    assert "your" in refused.json["error"]
    assert refused.json["retry_after"] == int(refused.headers["Retry-After"]) > 0
    assert refused.headers["RateLimit-Limit"] == "4000"
    assert 'comment="tokens"' in refused.headers["RateLimit-Policy"]
    assert all("response.completed" in received.types() for received in others)
    assert "response.completed" in own_short.types()


def test_a_visitor_who_leaves_mid_stream_pays_for_what_was_relayed(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A visitor who hangs up after a few words is charged the input and the words relayed
    (four characters a token, as no usage came), and the rest of the reservation comes back."""
    text = "Please write me a very long story about a lighthouse."
    with (
        running_sim("--decode-rate", "10", "--output-tokens", "300") as sim,
        running_gateway(
            upstream_url=sim.url,
            redis_url=redis_url,
            global_token_limit=100_000,
            max_output_tokens=1_000,
            reasoning_effort="none",
        ) as gateway,
    ):
        relayed = ""
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{gateway.url}/api/chat", json={"input": text}) as response,
        ):
            lines = response.iter_lines()
            deltas = 0
            while deltas < 5:
                line = next(lines)
                if line.startswith("data: ") and ".delta" in line:
                    relayed += json.loads(line[6:])["delta"]
                    deltas += 1
        assert eventually(lambda: redis_client.zcard("{llmgw}:inflight") == 0)
        charged = int(redis_client.get(GLOBAL_TOKENS) or 0)
        metrics = httpx.get(f"{gateway.url}/metrics").text
    at_least = -(-len(text) // 4) + -(-len(relayed) // 4)
    assert at_least <= charged <= at_least + 3  # a word may have left before the hang-up
    assert sample(metrics, "llmgw_tokens_spent_total") == charged
    reserved = -(-len(text) // 4) + 1_000
    assert sample(metrics, "llmgw_tokens_refunded_total") == reserved - charged
