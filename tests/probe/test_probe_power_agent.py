"""The probe publishing energy: a real sim's counter through the agent into Redis and /metrics,
the idle baseline, and a host with no power source (or a broken one) that publishes the rest."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sim_process import HeldStreams, SimHandle, running_sim

from probe.assembly import open_agent
from probe.settings import load_settings
from sim.config import SimConfig

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Awaitable, Callable, Iterator

    import redis

    from probe.agent import Agent

HOST = "powerhost"
KEY = "{llmgw}:probe:" + HOST
IDLE_WATTS, STREAM_WATTS = 15.0, 60.0
ENERGY_FIELD = re.compile(r"^(energy_.*|power_.*_watts|idle_power_watts)$")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    """A slow sim with a known power curve, so streams stay while the probe looks."""
    curve = ("--idle-watts", str(IDLE_WATTS), "--watts-per-stream", str(STREAM_WATTS))
    with running_sim("--decode-rate", "10", "--output-tokens", "400", *curve) as handle:
        yield handle


def with_agent(
    sim: SimHandle,
    redis_url: str | None,
    scenario: Callable[[Agent], Awaitable[Any]],
    **settings: Any,
) -> Any:
    """Run `scenario` with an agent on the sim (sim GPU and, unless told, sim power)."""
    values: dict[str, Any] = {
        "probe_model_url": sim.url,
        "probe_gpu": "sim",
        "probe_power_source": "sim",
        "probe_host": HOST,
        "probe_interval": 30.0,  # ticks are called directly: this only sets the TTL
        "probe_synthetic_interval": 0,
        "probe_metrics_port": 0,
        "redis_url": redis_url,
        "model": SimConfig().model,
    }
    agent_settings = load_settings(**(values | settings))

    async def run() -> Any:
        async with open_agent(agent_settings) as agent:
            return await scenario(agent)

    return asyncio.run(run())


def stored(client: redis.Redis) -> dict[str, str]:
    """The snapshot hash as text."""
    return {_text(k): _text(v) for k, v in client.hgetall(KEY).items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_published_energy_is_the_sims_counter(
    sim: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """Between two ticks the probe counts what the sim's own counter counted: no less than
    between the inner readings of the test, no more than between the outer ones."""
    sim.healthy()

    async def scenario(agent: Agent) -> tuple[list[float], list[dict[str, str]]]:
        readings, hashes = [], []
        readings.append(sim.stats()["energy_joules"])
        await agent.tick()
        readings.append(sim.stats()["energy_joules"])
        hashes.append(stored(redis_client))
        streams = HeldStreams(sim, 2)
        await asyncio.sleep(0.6)
        streams.close()
        readings.append(sim.stats()["energy_joules"])
        await agent.tick()
        readings.append(sim.stats()["energy_joules"])
        hashes.append(stored(redis_client))
        return readings, hashes

    (outer_start, inner_start, inner_end, outer_end), (first, second) = with_agent(
        sim, redis_url, scenario
    )
    assert first["power_source"] == "sim"
    assert float(first["energy_total_joules"]) == 0.0
    counted = float(second["energy_total_joules"]) - float(first["energy_total_joules"])
    assert inner_end - inner_start <= counted <= outer_end - outer_start
    assert counted > 0.6 * (IDLE_WATTS + 2 * STREAM_WATTS) * 0.9  # the streams were counted
    assert float(second["power_total_watts"]) > IDLE_WATTS
    assert second["energy_since"] == first["energy_since"]
    assert "power" not in second["unknown"]


def test_idle_baseline_is_the_idle_draw_and_streams_do_not_move_it(sim: SimHandle) -> None:
    """Idle ticks measure the sim's idle watts; ticks with streams raise the power, not the
    baseline."""
    sim.healthy()

    async def scenario(agent: Agent) -> tuple[dict[str, float], dict[str, float]]:
        for _ in range(3):
            await agent.tick()
            await asyncio.sleep(0.5)  # long beside the jitter of when the sim is read
        idle = dict(await agent.tick())
        streams = HeldStreams(sim, 2)
        try:
            await agent.tick()
            await asyncio.sleep(0.5)
            busy = dict(await agent.tick())
        finally:
            streams.close()
        return idle, busy  # type: ignore[return-value]

    idle, busy = with_agent(sim, None, scenario)
    assert idle["idle_power_watts"] == pytest.approx(IDLE_WATTS, rel=0.05)
    assert idle["power_total_watts"] == pytest.approx(IDLE_WATTS, rel=0.05)
    assert busy["power_total_watts"] == pytest.approx(IDLE_WATTS + 2 * STREAM_WATTS, rel=0.15)
    assert busy["idle_power_watts"] == idle["idle_power_watts"]


def test_energy_series_on_the_probes_metrics(sim: SimHandle) -> None:
    """/metrics has the energy counter and power by component, the source and the baseline."""
    sim.healthy()

    async def scenario(agent: Agent) -> str:
        for _ in range(3):
            await agent.tick()
            await asyncio.sleep(0.5)
        registry = CollectorRegistry()
        assert agent.metrics is not None
        registry.register(agent.metrics)
        return generate_latest(registry).decode()

    text = with_agent(sim, None, scenario)
    assert 'llmgw_probe_power_source_info{source="sim"} 1.0' in text
    assert 'llmgw_probe_energy_joules_total{component="total"}' in text
    power = re.search(r'^llmgw_probe_power_watts\{component="total"\} (\S+)$', text, re.MULTILINE)
    idle = re.search(r"^llmgw_probe_idle_power_watts (\S+)$", text, re.MULTILINE)
    assert power is not None
    assert idle is not None
    assert float(power[1]) == pytest.approx(IDLE_WATTS, rel=0.05)
    assert float(idle[1]) == pytest.approx(IDLE_WATTS, rel=0.05)


def test_a_host_without_a_power_source_publishes_everything_else(
    sim: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """power_source none: no energy field, not listed as unknown, the other signals as ever."""
    sim.healthy()
    with_agent(sim, redis_url, lambda agent: agent.tick(), probe_power_source="none")
    fields = stored(redis_client)
    assert fields["power_source"] == "none"
    assert not [name for name in fields if ENERGY_FIELD.match(name)]
    assert fields["unknown"] == ""
    assert fields["model_server_up"] == "1"
    assert "gpu_utilization_ratio" in fields


def test_a_broken_power_source_is_unknown_and_nothing_else_is(
    sim: SimHandle, redis_url: str, redis_client: redis.Redis, tmp_path: pathlib.Path
) -> None:
    """RAPL asked for where there is none: `power` is unknown, everything else is published."""
    sim.healthy()
    with_agent(
        sim,
        redis_url,
        lambda agent: agent.tick(),
        probe_power_source="rapl",
        probe_rapl_root=tmp_path / "no-powercap",
    )
    fields = stored(redis_client)
    assert fields["power_source"] == "rapl"
    assert fields["unknown"] == "power"
    assert not [name for name in fields if ENERGY_FIELD.match(name)]
    assert fields["model_server_up"] == "1"
