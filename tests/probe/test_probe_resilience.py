"""The agent outlives Redis outages and broken ticks; /metrics never shows unknown as 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
from typing import TYPE_CHECKING

import redis
import redis.asyncio
from prometheus_client import CollectorRegistry, generate_latest
from support import free_port, require_binary, wait_for_port

from probe.agent import Agent, Identity
from probe.assembly import open_agent
from probe.metrics import ProbeMetrics
from probe.publisher import RedisPublisher
from probe.runner import CollectorRunner
from probe.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pytest

    from probe.collectors import Signals
    from probe.snapshot import Snapshot

IDENTITY = Identity(host="testhost", interval=30.0, gpu_source="none")


class Steady:
    """A collector that always answers the same, and counts its calls."""

    name = "steady"

    def __init__(self) -> None:
        self.calls = 0

    async def collect(self) -> Signals:
        """One reading."""
        self.calls += 1
        return {"steady_ratio": 0.25}


@contextlib.contextmanager
def redis_server(port: int) -> Iterator[str]:
    """A private redis-server on `port`, stopped on exit."""
    command = [require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_down_then_back(caplog: pytest.LogCaptureFixture) -> None:
    """Ticks go on while Redis is away (counted, logged once); publishing resumes by itself."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    async def scenario() -> list[bool]:
        client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        publisher = RedisPublisher(client, prefix="llmgw", host="testhost", interval=30)
        agent = Agent([CollectorRunner(Steady(), 1)], identity=IDENTITY, publisher=publisher)
        try:
            await agent.tick()
            await agent.tick()
            assert publisher.errors == 2
            with redis_server(port):
                await agent.tick()
                with redis.Redis.from_url(url) as check:
                    return [check.exists("{llmgw}:probe:testhost") == 1, publisher.errors == 2]
        finally:
            await client.aclose()

    with caplog.at_level(logging.INFO, logger="probe.publisher"):
        assert asyncio.run(scenario()) == [True, True]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("cannot publish to Redis, will keep trying")
    assert messages[1] == "publishing to Redis again"


class BrokenOnce(RedisPublisher):
    """A publisher whose first publish hits a bug (an exception it does not handle)."""

    def __init__(self) -> None:
        self.published: list[Snapshot] = []
        self.errors = 0

    async def publish(self, snapshot: Snapshot) -> bool:
        """Raise the first time, keep the snapshot afterwards."""
        self.published.append(snapshot)
        if len(self.published) == 1:
            raise RuntimeError("bug in this tick")
        return True


def test_run_survives_a_broken_tick_and_stops_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tick that raises is logged; the loop ticks on until the stop event is set."""
    steady, publisher = Steady(), BrokenOnce()
    identity = Identity(host="testhost", interval=0.05, gpu_source="none")
    agent = Agent([CollectorRunner(steady, 1)], identity=identity, publisher=publisher)

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(agent.run(stop))
        while len(publisher.published) < 3:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(loop, timeout=10)

    asyncio.run(scenario())
    assert steady.calls >= 3
    assert "probe tick failed" in caplog.text


def test_metrics_port_taken_does_not_stop_publishing(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """If /metrics cannot listen, that is logged and snapshots are still published."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        settings = load_settings(
            redis_url=redis_url,
            probe_host="testhost",
            probe_gpu="none",
            probe_synthetic_interval=0,
            probe_model_url=f"http://127.0.0.1:{free_port()}",
            probe_metrics_port=taken.getsockname()[1],
        )

        async def scenario() -> bool:
            async with open_agent(settings) as agent:
                await agent.tick()
                return agent.metrics is not None and agent.metrics.last_publish is not None

        assert asyncio.run(scenario()) is True
    assert "cannot serve /metrics" in caplog.text


def scrape(metrics: ProbeMetrics) -> str:
    """/metrics text of a fresh registry holding only these metrics."""
    registry = CollectorRegistry()
    registry.register(metrics)
    return generate_latest(registry).decode()


def test_metrics_export_known_signals_and_never_unknown_as_zero() -> None:
    """Signals become llmgw_probe_* gauges; an unknown one has no sample at all."""
    metrics = ProbeMetrics()
    metrics.record({"gpu_utilization_ratio": 0.5, "swap_used_bytes": 0.0}, {"gpu": True})
    first = scrape(metrics)
    metrics.record({"swap_used_bytes": 0.0}, {"gpu": False})
    second = scrape(metrics)
    assert "llmgw_probe_gpu_utilization_ratio 0.5" in first
    assert "llmgw_probe_gpu_utilization_ratio" not in second
    assert "llmgw_probe_swap_used_bytes 0.0" in second
    assert 'llmgw_probe_collector_up{collector="gpu"} 0.0' in second


def test_metrics_of_publishing() -> None:
    """Publish errors are a counter; the last publish time appears once there was one."""
    metrics = ProbeMetrics()
    assert "llmgw_probe_last_publish_timestamp_seconds" not in scrape(metrics)
    metrics.publish_errors, metrics.last_publish = 3, 1_700_000_000.5
    exported = scrape(metrics)
    assert "llmgw_probe_publish_errors_total 3.0" in exported
    assert "llmgw_probe_last_publish_timestamp_seconds 1.7000000005e+09" in exported
