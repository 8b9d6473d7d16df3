"""POST /api/chat end to end: real gateway, real redis-server, real simulated LM Studio."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from chat_client import chat, chat_status
from gateway_server import running_gateway
from sim_process import SimHandle, running_sim
from support import eventually

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

# Paced like a small model, so a stream visibly takes time.
PACED = ("--slots", "8", "--decode-rate", "60", "--output-tokens", "24")
# Many fast slots, for tests about admission rather than streaming.
ROOMY = ("--slots", "64", "--queue", "512", "--decode-rate", "4000", "--output-tokens", "8")


@pytest.fixture(scope="module")
def paced_sim() -> Iterator[SimHandle]:
    with running_sim(*PACED) as handle:
        yield handle


@pytest.fixture(scope="module")
def roomy_sim() -> Iterator[SimHandle]:
    with running_sim(*ROOMY) as handle:
        yield handle


@pytest.fixture
def sim(paced_sim: SimHandle) -> SimHandle:
    """A paced sim, healthy and with zeroed counters."""
    return paced_sim.healthy()


@pytest.fixture
def fast_sim(roomy_sim: SimHandle) -> SimHandle:
    """A sim with room for bursts, healthy and with zeroed counters."""
    return roomy_sim.healthy()


def test_stream_is_incremental(sim: SimHandle, redis_url: str) -> None:
    """The first delta reaches the browser well before the stream ends."""
    with running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway:
        received = chat(gateway.url)
    assert received.status == 200
    assert received.headers["content-type"].startswith("text/event-stream")
    assert received.types()[0] == "response.created"
    assert received.types()[-1] == "response.completed"
    first = received.first_time("response.output_text.delta")
    assert first < received.times[-1] / 2
    deltas = [t for t, e in zip(received.times, received.events, strict=True) if "delta" in e]
    assert len({round(t, 2) for t in deltas}) > 10  # arrived over time, not in one burst


def test_model_and_limits_are_pinned_by_the_gateway(fast_sim: SimHandle, redis_url: str) -> None:
    """The answer is capped by the gateway's max_output_tokens, whatever the visitor wanted."""
    with running_gateway(upstream_url=fast_sim.url, redis_url=redis_url, max_output_tokens=5) as gw:
        received = chat(gw.url)
    usage = received.events[-1]["response"]["usage"]
    assert usage["output_tokens"] - usage["output_tokens_details"]["reasoning_tokens"] <= 5


def test_follow_up_uses_previous_response_id(fast_sim: SimHandle, redis_url: str) -> None:
    """A follow-up with the id of the first answer continues that conversation upstream."""
    with running_gateway(upstream_url=fast_sim.url, redis_url=redis_url) as gateway:
        first = chat(gateway.url, {"input": "My name is Ada"})
        response_id = first.events[0]["response"]["id"]
        second = chat(gateway.url, {"input": "And again?", "previous_response_id": response_id})
    assert second.status == 200
    first_usage = first.events[-1]["response"]["usage"]
    # The stored conversation counts as input: the follow-up's input is larger.
    assert second.events[-1]["response"]["usage"]["input_tokens"] > first_usage["input_tokens"]


def test_exact_global_limit_under_concurrency(
    fast_sim: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """200 concurrent requests against a global limit of 50 admit exactly 50."""
    with running_gateway(
        upstream_url=fast_sim.url,
        redis_url=redis_url,
        global_limit=50,
        visitor_limit=1000,
        max_inflight=1000,
    ) as gateway:

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                calls = [chat_status(client, gateway.url, {}) for _ in range(200)]
                return await asyncio.gather(*calls)

        statuses = asyncio.run(burst())
    assert statuses.count(200) == 50
    assert statuses.count(429) == 150
    assert int(redis_client.get("{llmgw}:window:global") or 0) == 50
    assert fast_sim.stats()["started"] == 50


def test_visitor_refusals_leave_the_global_budget(
    fast_sim: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """One visitor hammering the endpoint spends only its own limit; others still get in."""
    with running_gateway(
        upstream_url=fast_sim.url,
        redis_url=redis_url,
        global_limit=5,
        visitor_limit=2,
        trusted_proxies="127.0.0.1/32",
    ) as gateway:
        abuser = [chat(gateway.url, headers={"X-Forwarded-For": "203.0.113.66"}) for _ in range(12)]
        others = [
            chat(gateway.url, headers={"X-Forwarded-For": f"198.51.100.{n}"}) for n in (1, 2, 3)
        ]
    assert [r.status for r in abuser].count(200) == 2
    assert {r.json["limit"] for r in abuser if r.status == 429} == {"visitor"}
    assert [r.status for r in others] == [200, 200, 200]
    assert int(redis_client.get("{llmgw}:window:global") or 0) == 5


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(
    fast_sim: SimHandle, redis_url: str
) -> None:
    """Without trusted proxies, a new X-Forwarded-For per request does not escape the limit."""
    settings = {"upstream_url": fast_sim.url, "redis_url": redis_url, "visitor_limit": 2}
    with running_gateway(**settings) as gateway:
        statuses = [
            chat(gateway.url, headers={"X-Forwarded-For": f"192.0.2.{n}"}).status for n in range(5)
        ]
    assert statuses == [200, 200, 429, 429, 429]


def test_rejection_body_headers_and_retry_after(
    fast_sim: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """A 429 says whose limit, with Retry-After matching the window's remaining time in Redis."""
    with running_gateway(
        upstream_url=fast_sim.url, redis_url=redis_url, global_limit=1, window_seconds=20
    ) as gateway:
        assert chat(gateway.url).status == 200
        time.sleep(1.2)
        refused = chat(gateway.url)
        remaining_ms = redis_client.pttl("{llmgw}:window:global")
    assert refused.status == 429
    assert refused.json["limit"] == "global"
    retry_after = int(refused.headers["Retry-After"])
    assert refused.json["retry_after"] == retry_after
    assert abs(retry_after - remaining_ms / 1000) <= 1
    assert retry_after <= 19  # the window started over a second earlier
    assert refused.headers["RateLimit-Limit"] == "1"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert "error" in refused.json


def test_client_disconnect_cancels_the_generation(
    sim: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """A visitor who leaves mid-stream makes the model stop generating, gives the in-flight
    place back and is counted as cancelled."""
    sim.set_fault("slow")
    with running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway:
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{gateway.url}/api/chat", json={"input": "hi"}) as response,
        ):
            for line in response.iter_lines():
                if "delta" in line:
                    break
        assert eventually(lambda: sim.stats()["cancelled"] == 1)
        assert eventually(lambda: sim.stats()["active"] == 0)
        assert eventually(lambda: redis_client.zcard("{llmgw}:inflight") == 0)
        cancelled = 'llmgw_requests_total{outcome="client_cancelled",route="/api/chat"} 1.0'
        assert eventually(lambda: cancelled in httpx.get(f"{gateway.url}/metrics").text)
    assert sim.stats()["completed"] == 0
