"""A follow-up that cannot fit its answer in the model's loaded context is refused as
context_full before the model sees it (sim with a small context, real Redis)."""

from __future__ import annotations

from typing import Any

import httpx
from chat_client import Received, chat
from gateway_server import running_gateway
from sim_process import running_sim
from support import eventually

CONTEXT = 2048
ANSWER_BUDGET = 512  # LLMGW_MAX_OUTPUT_TOKENS
SETTINGS = {"health_interval": 0.3, "max_output_tokens": ANSWER_BUDGET, "visitor_limit": 50}


def completed(received: Received) -> dict[str, Any]:
    event = next(e for e in received.events if e.get("type") == "response.completed")
    response: dict[str, Any] = event["response"]
    return response


def test_a_follow_up_that_cannot_fit_is_refused_before_the_model(redis_url: str) -> None:
    """A conversation near the context's end: its next turn is context_full, the sim never sees
    it, and the breaker stays closed; a new conversation is served."""
    with (
        running_sim("--context-length", str(CONTEXT), "--output-tokens", "40") as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url, **SETTINGS) as gateway,
    ):
        readyz = f"{gateway.url}/readyz"
        assert eventually(lambda: httpx.get(readyz).json()["model"] == "ready", timeout=10)
        first = chat(gateway.url, {"input": "word " * 1200})  # about 1500 tokens: it fits
        response = completed(first)
        usage = response["usage"]
        used = usage["input_tokens"] + usage["output_tokens"]
        assert used + 75 + ANSWER_BUDGET > CONTEXT  # no room left for the next answer
        before = sim.stats()["started"]
        follow_up = {"input": "and then? " * 30, "previous_response_id": response["id"]}
        refused = chat(gateway.url, follow_up)
        assert (refused.status, refused.json["code"]) == (400, "context_full")
        assert sim.stats()["started"] == before
        assert httpx.get(readyz).json()["breaker"] == "closed"
        assert "response.completed" in chat(gateway.url).types()


def test_a_follow_up_with_room_goes_through(redis_url: str) -> None:
    """A short conversation continues as usual: the check refuses only what cannot fit."""
    with (
        running_sim("--context-length", str(CONTEXT), "--output-tokens", "40") as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url, **SETTINGS) as gateway,
    ):
        readyz = f"{gateway.url}/readyz"
        assert eventually(lambda: httpx.get(readyz).json()["model"] == "ready", timeout=10)
        first = completed(chat(gateway.url, {"input": "Hello"}))
        again = chat(gateway.url, {"input": "More?", "previous_response_id": first["id"]})
        assert "response.completed" in again.types()
        assert sim.stats()["started"] == 2
