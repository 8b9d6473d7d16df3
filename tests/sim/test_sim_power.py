"""The sim's power curve and energy counter: idle draw, more per stream, two sims apart."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from sim_process import HeldStreams, running_sims
from support import eventually

from sim.power import PowerMeter

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sim_process import SimHandle

SLOW = ("--decode-rate", "10", "--output-tokens", "400", "--slots", "4")


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, SimHandle]]:
    """A light model (10 W idle, 20 W a stream) and a heavy one (30 W idle, 80 W a stream)."""
    light = (*SLOW, "--idle-watts", "10", "--watts-per-stream", "20")
    heavy = (*SLOW, "--idle-watts", "30", "--watts-per-stream", "80")
    with running_sims(light=light, heavy=heavy) as handles:
        yield handles


def measured_watts(sim: SimHandle, seconds: float = 0.5) -> float:
    """Average power from two readings of the counter."""
    before = sim.stats()
    start = time.monotonic()
    time.sleep(seconds)
    after = sim.stats()
    joules = float(after["energy_joules"]) - float(before["energy_joules"])
    return joules / (time.monotonic() - start)


def test_idle_draw_is_the_idle_watts(sims: dict[str, SimHandle]) -> None:
    """Nothing running: the counter grows at exactly the idle power."""
    light = sims["light"].healthy()
    stats = light.stats()
    assert stats["power_watts"] == 10.0
    assert stats["idle_watts"] == 10.0
    assert stats["watts_per_stream"] == 20.0
    assert measured_watts(light) == pytest.approx(10.0, rel=0.1)


def test_each_stream_adds_its_watts(sims: dict[str, SimHandle]) -> None:
    """Two streams in slots: the draw is idle + 2 x per stream, and the counter follows it."""
    heavy = sims["heavy"].healthy()
    streams = HeldStreams(heavy, 2)
    try:
        eventually(lambda: heavy.stats()["busy_slots"] == 2)
        assert heavy.stats()["power_watts"] == 30.0 + 2 * 80.0
        assert measured_watts(heavy) == pytest.approx(190.0, rel=0.1)
    finally:
        streams.close()
    eventually(lambda: heavy.stats()["busy_slots"] == 0)
    assert heavy.stats()["power_watts"] == 30.0


def test_two_sims_with_two_curves_draw_differently_for_the_same_work(
    sims: dict[str, SimHandle],
) -> None:
    """The same single stream costs the heavy sim more than the light one."""
    watts = {}
    for name, sim in sims.items():
        sim.healthy()
        streams = HeldStreams(sim, 1)
        try:
            eventually(lambda sim=sim: sim.stats()["busy_slots"] == 1)  # type: ignore[misc]
            watts[name] = measured_watts(sim, seconds=0.3)
        finally:
            streams.close()
    assert watts["light"] == pytest.approx(30.0, rel=0.15)
    assert watts["heavy"] == pytest.approx(110.0, rel=0.15)


def test_reset_leaves_the_energy_counter_alone(sims: dict[str, SimHandle]) -> None:
    """`POST /_sim/reset` zeroes the counters of requests, not the energy a host has used."""
    light = sims["light"]
    before = light.stats()["energy_joules"]
    light.reset()
    assert light.stats()["energy_joules"] >= before > 0


def test_meter_integrates_piece_by_piece() -> None:
    """10 W for 2 s, then 3 streams at 5 W each for 1 s, then idle for 4 s: 20 + 25 + 40 J."""
    now = [0.0]
    meter = PowerMeter(idle_watts=10.0, watts_per_stream=5.0, clock=lambda: now[0])
    now[0] = 2.0
    meter.set_streams(3)
    now[0] = 3.0
    meter.set_streams(0)
    now[0] = 7.0
    assert meter.joules() == pytest.approx(85.0)


@pytest.mark.parametrize("option", ["--idle-watts", "--watts-per-stream"])
def test_negative_watts_are_refused(option: str) -> None:
    """A negative power is a usage error (exit 2) with the reason."""
    done = subprocess.run(
        [sys.executable, "-m", "sim", option, "-1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "watts" in done.stderr
