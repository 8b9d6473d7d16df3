"""The energy ledger on its own: snapshots and answers given by hand, on a clock of the test's."""

from __future__ import annotations

import pytest
from energy_support import Clock, ended
from prometheus_client import generate_latest
from support import sample

from app.protection.energy import EnergyLedger
from app.telemetry import GatewayMetrics

IDLE = 10.0


class Host:
    """A host drawing IDLE plus `per_stream` per answer in flight, its snapshots taken by hand."""

    def __init__(self, ledger: EnergyLedger, clock: Clock, per_stream: float = 40.0) -> None:
        self.ledger, self.clock, self.per_stream = ledger, clock, per_stream
        self.joules, self.streams, self.inflight = 0.0, 0, 0

    def run(self, seconds: float) -> None:
        self.joules += (IDLE + self.per_stream * self.streams) * seconds
        self.clock.now += seconds

    def snapshot(self, *, idle: float | None = IDLE) -> None:
        signals = {"energy_total_joules": self.joules, "energy_since": 1.0}
        if idle is not None:
            signals["idle_power_watts"] = idle
        signals["power_total_watts"] = IDLE + self.per_stream * self.streams
        self.ledger.record("box", self.clock.now, signals)


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics()


def ledger_on(metrics: GatewayMetrics, clock: Clock, inflight: list[int]) -> EnergyLedger:
    return EnergyLedger(
        metrics,
        {"home": "box"},
        lambda _host: inflight[0],
        longest_answer=300,
        models=["m"],
        clock=clock,
        monotonic=clock,
    )


def exposition(metrics: GatewayMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def attributed(metrics: GatewayMetrics) -> float:
    return sample(
        exposition(metrics), "llmgw_energy_attributed_joules_total", model="m", host="home"
    )


def test_one_answer_at_a_time_gets_the_host_energy_of_its_lifetime(
    metrics: GatewayMetrics,
) -> None:
    """Answers one after another, across snapshot boundaries: each gets its lifetime's energy,
    and the marginal part is what the host drew above its idle baseline."""
    clock, inflight = Clock(), [0]
    ledger = ledger_on(metrics, clock, inflight)
    host = Host(ledger, clock)
    host.snapshot()
    expected = 0.0
    for length in (0.7, 2.3, 1.1):
        started = clock.now
        host.streams, inflight[0] = 1, 1
        host.run(0.2)
        first = clock.now
        host.snapshot()
        host.run(length)
        host.streams, inflight[0] = 0, 0
        expected += (IDLE + 40) * (length + 0.2)
        ledger.answered("home", "m", ended(started, first, {"output_tokens": 50}))
        host.run(0.4)
        host.snapshot()
    text = exposition(metrics)
    assert attributed(metrics) == pytest.approx(expected, rel=1e-6)
    marginal = sample(text, "llmgw_energy_marginal_joules_total", model="m", host="home")
    assert marginal == pytest.approx(40 * (0.7 + 2.3 + 1.1 + 0.6), rel=1e-6)
    assert sample(text, "llmgw_answer_energy_joules_count", model="m", host="home") == 3


def test_answers_at_once_share_by_their_tokens(metrics: GatewayMetrics) -> None:
    """Two answers over the same time share its energy by their output tokens: the first
    waits for the other's end to know its tokens, and together they get all of it."""
    clock, inflight = Clock(), [2]
    ledger = ledger_on(metrics, clock, inflight)
    host = Host(ledger, clock)
    host.streams = 2
    host.snapshot()
    started = clock.now
    host.run(2.0)
    host.streams = inflight[0] = 1
    ledger.answered("home", "m", ended(started, started, {"output_tokens": 300}))
    host.run(0.5)
    host.snapshot()
    assert "llmgw_answer_energy_joules_count{" not in exposition(metrics)  # waits for the other
    host.streams = inflight[0] = 0
    ledger.answered("home", "m", ended(started, started, {"output_tokens": 100}))
    host.run(0.5)
    host.snapshot()
    # 2 s at 90 W and 0.5 s at 50 W, in one interval shared 300 to 100 by their tokens; the
    # last 0.5 s, idle, is nobody's.
    assert attributed(metrics) == pytest.approx(90 * 2.0 + 50 * 0.5, rel=1e-6)
    histogram = sample(
        exposition(metrics), "llmgw_answer_energy_joules_sum", model="m", host="home"
    )
    assert histogram == pytest.approx(205, rel=1e-6)
    per_token = sample(
        exposition(metrics),
        "llmgw_answer_energy_per_output_token_joules_sum",
        model="m",
        host="home",
    )
    first, second = 205 * 0.75, 205 * 0.25
    assert per_token == pytest.approx(first / 300 + second / 100, rel=1e-6)


def test_no_power_source_no_energy_series(metrics: GatewayMetrics) -> None:
    """A probe without energy fields: answers are counted for their model, no energy series."""
    clock, inflight = Clock(), [0]
    ledger = ledger_on(metrics, clock, inflight)
    ledger.record("box", clock.now, {"cpu_ratio": 0.1})
    ledger.answered("home", "m", ended(clock.now - 1, clock.now - 0.5, {"output_tokens": 9}))
    clock.now += 1
    ledger.record("box", clock.now, {"cpu_ratio": 0.1})
    text = exposition(metrics)
    assert sample(text, "llmgw_model_answers_total", model="m", host="home") == 1
    energy_lines = [
        line for line in text.splitlines()
        if not line.startswith("#") and ("energy" in line or "power_watts" in line)
    ]  # fmt: skip
    assert energy_lines == []


def test_a_source_that_goes_away_takes_its_series_with_it(metrics: GatewayMetrics) -> None:
    """Power, then none: the host's power series leave rather than stay at their last value."""
    clock, inflight = Clock(), [0]
    ledger = ledger_on(metrics, clock, inflight)
    host = Host(ledger, clock)
    host.snapshot()
    host.run(1)
    host.snapshot()
    assert sample(exposition(metrics), "llmgw_host_power_watts", host="home") == IDLE
    ledger.record("box", clock.now + 1, {"cpu_ratio": 0.1})
    assert "llmgw_host_power_watts{" not in exposition(metrics)


def test_a_snapshot_that_comes_in_late_does_not_hold_answers_back(
    metrics: GatewayMetrics,
) -> None:
    """A snapshot received after a new stream began counts that stream, which lived after the
    snapshot was taken: once it ends, the answers before it settle, not a minute later."""
    clock, inflight = Clock(), [0]
    ledger = ledger_on(metrics, clock, inflight)
    host = Host(ledger, clock)
    host.snapshot()
    first_start = clock.now + 0.2
    host.run(0.2)
    host.streams = inflight[0] = 1
    host.run(0.8)
    host.snapshot()
    host.run(0.5)
    host.streams = inflight[0] = 0
    ledger.answered("home", "m", ended(first_start, first_start, {"output_tokens": 40}))
    host.run(0.5)
    taken, joules_then = clock.now, host.joules  # the probe's snapshot, not yet in
    host.run(0.2)
    second_start = clock.now
    host.streams = inflight[0] = 1
    host.run(0.2)
    signals = {"energy_total_joules": joules_then, "energy_since": 1.0, "idle_power_watts": IDLE}
    ledger.record("box", taken, signals)  # in now, with the second stream counted
    host.run(0.6)
    host.streams = inflight[0] = 0
    ledger.answered("home", "m", ended(second_start, second_start, {"output_tokens": 40}))
    host.run(0.5)
    host.snapshot()
    text = exposition(metrics)
    assert sample(text, "llmgw_answer_energy_joules_count", model="m", host="home") == 2
    assert attributed(metrics) == pytest.approx(50 * (1.3 + 0.8), rel=1e-6)
