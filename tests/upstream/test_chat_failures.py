"""When the model fails: a JSON error before the stream, an SSE error event after, never a hang."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from chat_client import chat
from fault_servers import silent_server
from gateway_server import running_gateway
from sim_process import SimHandle, running_sim
from support import eventually, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def sim_server() -> Iterator[SimHandle]:
    with running_sim("--decode-rate", "40", "--output-tokens", "40") as handle:
        yield handle


@pytest.fixture
def sim(sim_server: SimHandle) -> SimHandle:
    sim_server.set_fault("ok")
    sim_server.reset()
    return sim_server


def test_refused_port_is_a_502(redis_url: str) -> None:
    """Nothing listening upstream: a JSON 502 that names no host or port."""
    upstream = f"http://127.0.0.1:{free_port()}"
    with running_gateway(upstream_url=upstream, redis_url=redis_url) as gateway:
        received = chat(gateway.url)
    assert received.status == 502
    assert received.json["code"] == "upstream_unavailable"
    assert upstream.split("//")[1] not in str(received.json)


def test_silent_upstream_is_a_504_within_the_timeout(redis_url: str) -> None:
    """An upstream that accepts and never answers ends in a JSON 504, not a hang."""
    with (
        silent_server() as upstream,
        running_gateway(upstream_url=upstream, redis_url=redis_url, first_token_timeout=0.5) as gw,
    ):
        started = time.monotonic()
        received = chat(gw.url)
        elapsed = time.monotonic() - started
    assert received.status == 504
    assert received.json["code"] == "upstream_timeout"
    assert elapsed < 0.5 + 2


def test_stalled_stream_ends_with_an_idle_error_event(sim: SimHandle, redis_url: str) -> None:
    """A stream that stops mid-way ends with an SSE error event after the idle timeout."""
    sim.set_fault("stall")
    with running_gateway(upstream_url=sim.url, redis_url=redis_url, idle_timeout=0.5) as gateway:
        received = chat(gateway.url)
    assert received.status == 200
    assert "response.output_text.delta" in received.types()
    assert received.events[-1] == {
        "type": "error",
        "error": {"code": "idle_timeout", "message": "the model stopped sending"},
    }
    assert eventually(lambda: sim.stats()["active"] == 0)


def test_total_timeout_cuts_a_long_answer(sim: SimHandle, redis_url: str) -> None:
    """An answer longer than the total timeout is cut off with an SSE error event."""
    sim.set_fault("slow")
    with running_gateway(upstream_url=sim.url, redis_url=redis_url, total_timeout=1.0) as gateway:
        received = chat(gateway.url)
    assert received.events[-1]["error"]["code"] == "total_timeout"
    assert received.times[-1] < 1.0 + 2


def test_first_token_timeout(sim: SimHandle, redis_url: str) -> None:
    """A model that takes too long to start answering is reported, before or in the stream."""
    sim.set_fault("slow")
    long_input = {"input": "word " * 1500}
    with running_gateway(
        upstream_url=sim.url, redis_url=redis_url, first_token_timeout=0.3
    ) as gateway:
        received = chat(gateway.url, long_input)
    if received.json is not None:
        assert (received.status, received.json["code"]) == (504, "upstream_timeout")
    else:
        assert received.events[-1]["error"]["code"] == "first_token_timeout"
        assert "response.output_text.delta" not in received.types()


def test_model_not_loaded_is_a_503(sim: SimHandle, redis_url: str) -> None:
    """LM Studio's 'No models loaded' becomes a 503 with Retry-After, in plain words."""
    sim.set_fault("no_model")
    with running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway:
        received = chat(gateway.url)
    assert received.status == 503
    assert received.json["code"] == "model_not_loaded"
    assert int(received.headers["Retry-After"]) > 0


def test_upstream_500_is_a_502(sim: SimHandle, redis_url: str) -> None:
    """A model server error is a JSON 502 that does not echo the upstream's body."""
    sim.set_fault("error", share=1.0)
    with running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway:
        received = chat(gateway.url)
    assert received.status == 502
    assert set(received.json) == {"error", "code"}
