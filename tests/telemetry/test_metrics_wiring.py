"""The gateway's /metrics tells what really happened: outcomes, latency, tokens, limits."""

from __future__ import annotations

import httpx
from chat_client import chat
from gateway_server import running_gateway
from sim_process import running_sim
from support import sample


def test_outcomes_latency_and_tokens_are_counted(redis_url: str) -> None:
    """One answer, one refusal by the visitor limit and one bad request show in /metrics."""
    with (
        running_sim("--decode-rate", "400") as sim,
        running_gateway(
            upstream_url=sim.url,
            redis_url=redis_url,
            visitor_limit=1,
            upstream_token="tok-never-shown",
        ) as gateway,
    ):
        ok = chat(gateway.url, headers={"X-Thumbmark-Id": "visitor-one"})
        refused = chat(gateway.url, headers={"X-Thumbmark-Id": "visitor-one"})
        bad = httpx.post(f"{gateway.url}/api/chat", content=b"{", timeout=10)
        text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert (ok.status, refused.status, bad.status_code) == (200, 429, 400)
    route = {"route": "/api/chat"}
    assert sample(text, "llmgw_requests_total", **route, outcome="ok") == 1
    assert sample(text, "llmgw_requests_total", **route, outcome="rate_limited_visitor") == 1
    assert sample(text, "llmgw_requests_total", **route, outcome="bad_request") == 1
    assert sample(text, "llmgw_time_to_first_token_seconds_count") == 1
    usage = ok.events[-1]["response"]["usage"]
    assert sample(text, "llmgw_tokens_total", type="output") == usage["output_tokens"]
    assert sample(text, "llmgw_active_streams") == 0
    assert sample(text, "llmgw_admission_decisions_total", decision="admitted", path="redis") == 1
    assert sample(text, "llmgw_admission_decisions_total", decision="visitor", path="redis") == 1
    assert sample(text, "llmgw_redis_up") == 1
    assert sample(text, "llmgw_breaker_state", state="closed") == 1
    assert "tok-never-shown" not in text
    assert "visitor-one" not in text
    assert "127.0.0.1" not in text


def test_a_single_host_gateway_exports_its_host_series_from_the_start(redis_url: str) -> None:
    """The old configuration's one host, `home`, and the fallback have their per-host series
    in /metrics before any chat, so dashboards and alerts see them from the first scrape."""
    with (
        running_sim() as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway,
    ):
        text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    for host in ("home", "fallback"):
        assert sample(text, "llmgw_host_inflight", host=host) == 0
        assert sample(text, "llmgw_host_routed_total", host=host, reason="new") == 0
        assert sample(text, "llmgw_host_requests_total", host=host, outcome="ok") == 0
        assert sample(text, "llmgw_host_time_to_first_token_seconds_count", host=host) == 0
    assert sample(text, "llmgw_host_breaker_state", host="home", state="closed") == 1
    assert sample(text, "llmgw_host_outage", host="home", **{"class": "tunnel"}) == 0
    assert sample(text, "llmgw_fallback_tokens_total") == 0
