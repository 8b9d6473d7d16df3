"""An overloaded host is not a down host (issue 15): a real sim of two slots offered three times
what it serves, through a real gateway checking it every second with a probe beside it: the
breaker stays closed, no outage is diagnosed, and the chats it cannot take are shed. The sim's
own 503s are no outage either. The same host killed is still called down within two seconds."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from gateway_server import GatewayHandle, running_gateway
from probe_process import running_probe
from sim_process import SimHandle, running_sim
from support import eventually, sample

from app.protection import health_check

if TYPE_CHECKING:
    from collections.abc import Iterator

# Two slots of about 0.35 s a chat: some 5 chats a second, so 15 offered is three times that.
SIM = ("--slots", "2", "--decode-rate", "200")
OFFERED_PER_SECOND = 15.0
SECONDS = 12.0
GATEWAY = {
    "health_interval": 0.2,
    "global_limit": 10**6,
    "visitor_limit": 10**6,
    "probe_stale_factor": 1.0,
}
# The sim lists its models in 2 to 25 ms even at three times its capacity (LM Studio through
# the tunnel takes a few hundred, and a swamped host longer than CHECK_TIMEOUT's 3 s): once the
# load runs, the check's time limit goes below that, so that checks time out (all but those
# whose answer is already there when the busy gateway reads it).
SWAMPED_CHECK_TIMEOUT = 0.0001


@dataclass
class Load:
    """Chats offered at a steady rate from a thread of their own, each a new visitor."""

    url: str
    statuses: list[int] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._offer())

    async def _offer(self) -> None:
        limits = httpx.Limits(max_connections=500)
        async with (
            httpx.AsyncClient(timeout=60, limits=limits) as client,
            asyncio.TaskGroup() as group,
        ):
            visitor = 0
            while not self.stop.is_set():
                visitor += 1
                group.create_task(self._chat(client, visitor))
                await asyncio.sleep(1 / OFFERED_PER_SECOND)

    async def _chat(self, client: httpx.AsyncClient, visitor: int) -> None:
        headers = {"X-Thumbmark-Id": f"overload-{visitor}"}
        body = {"input": "hi"}
        async with client.stream("POST", f"{self.url}/api/chat", json=body, headers=headers) as r:
            await r.aread()
            self.statuses.append(r.status_code)
            if r.status_code != 200:
                self.codes.append(r.json()["code"])


@contextmanager
def offering(url: str) -> Iterator[Load]:
    """The load on the gateway at `url`, running until the block ends."""
    load = Load(url)
    thread = threading.Thread(target=load.run)
    thread.start()
    try:
        yield load
    finally:
        load.stop.set()
        thread.join(timeout=60)


@pytest.fixture
def load_on(gateway: GatewayHandle) -> Iterator[Load]:
    with offering(gateway.url) as load:
        yield load


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    with running_sim(*SIM) as handle:
        yield handle


@pytest.fixture
def gateway(sim: SimHandle, redis_url: str) -> Iterator[GatewayHandle]:
    """A gateway on the sim, with a probe publishing beside it."""
    with (
        running_probe(redis_url, sim.url, interval=0.3),
        running_gateway(upstream_url=sim.url, redis_url=redis_url, **GATEWAY) as handle,
    ):
        assert eventually(lambda: readyz(handle)["probes_fresh"] == 1, timeout=10)
        yield handle


def readyz(gateway: GatewayHandle) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{gateway.url}/readyz", timeout=10).json()
    return body


def sampled(gateway: GatewayHandle, seconds: float, *names: str) -> set[tuple[object, ...]]:
    """What /readyz said under these names, five times a second for `seconds`."""
    seen = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready = readyz(gateway)
        seen.add(tuple(ready[name] for name in names))
        time.sleep(0.2)
    return seen


def breaker_trips(gateway: GatewayHandle) -> float:
    """Times the breaker opened, as /metrics counts them (every diagnosed outage opens it)."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    labels = {"from_state": "closed", "to_state": "open"}
    return sample(text, "llmgw_breaker_transitions_total", **labels)


def test_three_times_the_capacity_sheds_chats_and_calls_no_outage(
    gateway: GatewayHandle,
    load_on: Load,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At three times the sim's capacity, the health checks timing out, the breaker never
    opens and no outage is diagnosed: chats are answered between the checks. The chats past
    capacity are shed with a 503, the others answered."""
    assert eventually(lambda: load_on.statuses.count(200) >= 5, timeout=10)
    monkeypatch.setattr(health_check, "CHECK_TIMEOUT", SWAMPED_CHECK_TIMEOUT)
    caplog.set_level(logging.INFO, logger="llmgw.monitor")
    seen = sampled(gateway, SECONDS, "outage", "breaker")
    load_on.stop.set()
    assert any("no answer in time" in record.message for record in caplog.records)
    assert seen == {(None, "closed")}
    assert breaker_trips(gateway) == 0
    assert set(load_on.codes) <= {"shed"}
    answered = load_on.statuses.count(200)
    assert answered >= len(load_on.statuses) / 6, load_on.statuses  # half of a fair share


@pytest.fixture
def shedding_sim() -> Iterator[SimHandle]:
    """The two slots with no line behind them: the sim answers 503 to what it cannot start."""
    with running_sim(*SIM, "--queue", "0") as handle:
        yield handle


def test_a_model_server_shedding_with_503s_is_no_outage(
    shedding_sim: SimHandle, redis_url: str
) -> None:
    """A gateway letting more chats through than the sim takes (the benchmark's static limits):
    the sim's 503s are a host shedding load, so no outage is diagnosed, as they once were
    (model_server_down and back, several times a second)."""
    settings = {**GATEWAY, "max_inflight": 8, "owner_reserved_inflight": 0}
    with (
        running_gateway(upstream_url=shedding_sim.url, redis_url=redis_url, **settings) as gw,
        offering(gw.url),
    ):
        outages = sampled(gw, 6.0, "outage")
    assert shedding_sim.stats()["rejected"] > 0
    assert outages == {(None,)}


def test_a_killed_host_under_load_is_down_within_two_seconds(
    sim: SimHandle, gateway: GatewayHandle, load_on: Load
) -> None:
    """The same overloaded sim killed: its refused connections call it down at once, with the
    probe's word (model_server_down), and the breaker opens."""
    assert eventually(lambda: load_on.statuses.count(200) >= 5, timeout=10)
    sim.kill()
    killed = time.monotonic()
    assert eventually(lambda: readyz(gateway)["outage"] is not None, timeout=5)
    assert time.monotonic() - killed < 2.5
    assert readyz(gateway)["breaker"] == "open"
    assert eventually(lambda: readyz(gateway)["outage"] == "model_server_down", timeout=5)
