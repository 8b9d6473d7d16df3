"""The agent against a real Redis and the real simulator: hash, TTL, channel, failures."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sim_process import SimHandle, running_sim

from probe.assembly import open_agent
from probe.runner import CollectorRunner
from probe.settings import load_settings
from sim.config import SimConfig

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    import redis

    from probe.agent import Agent
    from probe.collectors import Signals

HOST = "testhost"
KEY = "{llmgw}:probe:" + HOST
# tick() is called directly, so the interval only sets the TTL: long, so nothing expires
# while a slow machine runs the test.
INTERVAL = 30.0


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    """A slow simulator, so generations keep slots busy while the probe looks."""
    with running_sim("--decode-rate", "20", "--output-tokens", "400") as handle:
        yield handle


def with_agent(
    sim_url: str, redis_url: str | None, scenario: Callable[[Agent], Awaitable[Any]]
) -> Any:
    """Run `scenario` with an agent on the simulator (sim GPU source) publishing to Redis."""
    settings = load_settings(
        probe_model_url=sim_url,
        probe_gpu="sim",
        probe_host=HOST,
        probe_interval=INTERVAL,
        probe_synthetic_interval=0,
        probe_metrics_port=0,
        redis_url=redis_url,
        model=SimConfig().model,
    )

    async def run() -> Any:
        async with open_agent(settings) as agent:
            return await scenario(agent)

    return asyncio.run(run())


class Flaky:
    """A collector that answers `good` times, then throws."""

    name = "flaky"

    def __init__(self, good: int) -> None:
        self.good = good

    async def collect(self) -> Signals:
        """Answer, or throw once the good answers are used up."""
        self.good -= 1
        if self.good < 0:
            raise RuntimeError("sensor fell off")
        return {"flaky_ratio": 0.5}


def text(client: redis.Redis, key: str = KEY) -> dict[str, str]:
    """A Redis hash as text."""
    return {_str(k): _str(v) for k, v in client.hgetall(key).items()}


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_snapshot_lands_in_the_hash_with_a_ttl_of_three_intervals(
    sim: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """One tick writes every field under {llmgw}:probe:<host>, expiring after ~3 intervals."""
    snapshot = with_agent(sim.url, redis_url, lambda agent: agent.tick())
    stored = text(redis_client)
    assert stored["host"] == HOST
    assert stored["gpu_source"] == "sim"
    assert stored["model_server_up"] == "1"
    assert stored["unknown"] == ""
    assert float(stored["ts"]) == snapshot["ts"]
    assert float(stored["memory_used_ratio"]) == pytest.approx(snapshot["memory_used_ratio"])
    assert 3 * INTERVAL * 1000 - 15_000 < redis_client.pttl(KEY) <= 3 * INTERVAL * 1000


def test_snapshot_is_published_as_json(
    sim: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """A subscriber of {llmgw}:probe receives the same snapshot as JSON."""
    with redis_client.pubsub() as subscriber:
        subscriber.subscribe("{llmgw}:probe")
        confirmation = subscriber.get_message(timeout=5)
        assert confirmation is not None
        assert confirmation["type"] == "subscribe"
        snapshot = with_agent(sim.url, redis_url, lambda agent: agent.tick())
        message = subscriber.get_message(timeout=5)
    assert message is not None
    assert json.loads(message["data"]) == snapshot


def test_a_throwing_collector_is_unknown_and_its_field_leaves_the_hash(
    sim: SimHandle, redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A collector that starts throwing is listed as unknown; its old value is deleted."""

    async def scenario(agent: Agent) -> list[dict[str, str]]:
        agent.runners.append(CollectorRunner(Flaky(good=1), timeout=1))
        await agent.tick()
        before = text(redis_client)
        await agent.tick()
        await agent.tick()
        return [before, text(redis_client)]

    before, after = with_agent(sim.url, redis_url, scenario)
    assert before["flaky_ratio"] == "0.5"
    assert "flaky_ratio" not in after
    assert after["unknown"] == "flaky"
    assert after["model_server_up"] == "1"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["collector flaky is unknown: RuntimeError: sensor fell off"]


def test_sim_gpu_source_shows_busy_slots(sim: SimHandle, redis_url: str) -> None:
    """While the simulator generates, gpu_utilization_ratio is its busy share of slots."""

    async def scenario(agent: Agent) -> Any:
        async with httpx.AsyncClient(base_url=sim.url, timeout=30) as http:
            generations = [asyncio.create_task(generate(http)) for _ in range(2)]
            try:
                while sim.stats()["busy_slots"] < 1:
                    await asyncio.sleep(0.05)
                return await agent.tick()
            finally:
                for generation in generations:
                    generation.cancel()
                await asyncio.gather(*generations, return_exceptions=True)

    snapshot = with_agent(sim.url, redis_url, scenario)
    assert snapshot["gpu_utilization_ratio"] > 0
    assert snapshot["sim_queued"] == 0


async def generate(http: httpx.AsyncClient) -> None:
    """A long streamed generation, read until cancelled."""
    body = {"input": "Tell me a long story", "stream": True}
    async with http.stream("POST", "/v1/responses", json=body) as response:
        async for _ in response.aiter_bytes():
            pass


def test_killed_model_server_is_down_and_its_gpu_unknown(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """After SimHandle.kill(): model_server_up 0, and the sim GPU reading absent, not 0."""
    with running_sim() as handle:

        async def scenario(agent: Agent) -> list[dict[str, str]]:
            await agent.tick()
            before = text(redis_client)
            handle.kill()
            await agent.tick()
            return [before, text(redis_client)]

        before, after = with_agent(handle.url, redis_url, scenario)
    assert (before["model_server_up"], before["model_loaded"]) == ("1", "1")
    assert (before["model_available"], before["model_token_ok"]) == ("1", "1")
    assert (after["model_server_up"], after["model_loaded"]) == ("0", "0")
    assert "model_available" not in after  # down: whether the model is there is unknown
    assert "gpu_utilization_ratio" not in after
    assert after["unknown"] == "gpu"
