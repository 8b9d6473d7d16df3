"""previous_response_id is bound to the visitor it answered: nobody else can continue it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_client import chat
from gateway_server import running_gateway
from sim_process import running_sim

if TYPE_CHECKING:
    import redis


def test_another_visitor_cannot_continue_a_conversation(redis_url: str) -> None:
    """Visitor B with A's response id gets a 404 and never A's conversation; A continues."""
    with (
        running_sim("--decode-rate", "400") as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway,
    ):
        first = chat(gateway.url, {"input": "my secret"}, headers={"X-Thumbmark-Id": "alice"})
        response_id = first.events[0]["response"]["id"]
        follow_up = {"input": "what did I say?", "previous_response_id": response_id}
        started = sim.stats()["started"]
        stolen = chat(gateway.url, follow_up, headers={"X-Thumbmark-Id": "mallory"})
        assert sim.stats()["started"] == started
        own = chat(gateway.url, follow_up, headers={"X-Thumbmark-Id": "alice"})
    assert stolen.status == 404
    assert stolen.json["code"] == "unknown_conversation"
    assert "my secret" not in str(stolen.json)
    assert own.status == 200
    assert own.types()[-1] == "response.completed"


def test_made_up_response_ids_are_refused(redis_url: str, redis_client: redis.Redis) -> None:
    """An id the gateway never handed out is a 404, before anything reaches the model."""
    with (
        running_sim() as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway,
    ):
        refused = chat(gateway.url, {"input": "hi", "previous_response_id": "resp_0000"})
        assert sim.stats()["started"] == 0
    assert refused.status == 404
    assert redis_client.get("{llmgw}:window:global") is None
