"""The pressure governor: signals to pressure to limits, staleness, and no flapping."""

from __future__ import annotations

import pytest

from app.admission.decision import Limits
from app.protection.governor import (
    GovernorConfig,
    PressureGovernor,
    TtftTracker,
    factor_for,
    pressures,
)

CONFIG = GovernorConfig(soft=0.6, hard=0.9, floor=0.25, stale_factor=0.5, relax_per_second=0.02)
BASE = Limits(global_limit=40, visitor_limit=6, inflight_cap=8)


@pytest.mark.parametrize(
    ("signals", "gateway_ttft", "expected"),
    [
        ({}, None, {}),
        ({"gpu_utilization_ratio": 1.0}, None, {"gpu": 0.5}),
        ({"memory_pressure_level": 1}, None, {"memory": 0.0}),
        ({"memory_pressure_level": 2}, None, {"memory": 0.75}),
        ({"memory_pressure_level": 4}, None, {"memory": 1.0}),
        ({"memory_psi_some_avg10": 12.5}, None, {"memory_psi": 0.5}),
        ({"memory_psi_some_avg10": 80.0}, None, {"memory_psi": 1.0}),
        ({"synthetic_ttft_seconds": 2.5}, None, {"model_ttft": 0.5}),
        ({}, 10.0, {"gateway_ttft": 1.0}),
        # Signals the governor does not weigh (swap, CPU) are shown elsewhere, not counted here.
        ({"swap_used_ratio": 0.9, "cpu_ratio": 1.0}, None, {}),
    ],
)
def test_signals_normalise_to_pressures(
    signals: dict[str, float], gateway_ttft: float | None, expected: dict[str, float]
) -> None:
    """Each known signal maps to a pressure in [0, 1]; a busy GPU alone stays below soft."""
    assert pressures(signals, gateway_ttft, CONFIG) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("pressure", "factor", "global_limit", "inflight_cap"),
    [
        (0.0, 1.0, 40, 8),
        (0.6, 1.0, 40, 8),
        (0.75, 0.625, 25, 5),
        (0.9, 0.25, 10, 2),
        (1.0, 0.25, 10, 2),
    ],
)
def test_pressure_to_factor_to_limits(
    pressure: float, factor: float, global_limit: int, inflight_cap: int
) -> None:
    """Between soft and hard thresholds the limits shrink in a line from base to the floor."""
    assert factor_for(pressure, CONFIG) == pytest.approx(factor)
    governor = PressureGovernor(BASE, CONFIG)
    governor.factor = factor
    assert governor.limits() == Limits(global_limit, BASE.visitor_limit, inflight_cap)


def test_limits_follow_every_change_of_factor_or_base() -> None:
    """The limits asked on every admission are never stale: a new factor, by `update` or set
    outright, or a new base, shows at the next ask."""
    governor = PressureGovernor(BASE, CONFIG)
    assert governor.limits() == Limits(20, 6, 4)  # the stale factor until a reading
    governor.update(0.0, {"memory_pressure_level": 1}, None)
    assert governor.limits() == BASE
    governor.update(1.0, {"memory_pressure_level": 4}, None)
    assert governor.limits() == Limits(10, 6, 2)
    governor.factor = 0.5
    assert governor.limits() == Limits(20, 6, 4)
    governor.base = Limits(global_limit=100, visitor_limit=3, inflight_cap=10)
    assert governor.limits() == Limits(50, 3, 5)


def test_the_global_token_window_shrinks_with_the_factor() -> None:
    """Everyone's token window shrinks like everyone's request window; the visitor's stays,
    and a token window that is off stays off."""
    tokens = Limits(40, 6, 8, global_tokens=50_000, visitor_tokens=4_000)
    governor = PressureGovernor(tokens, CONFIG)
    governor.factor = 0.25
    assert governor.limits() == Limits(10, 6, 2, global_tokens=12_500, visitor_tokens=4_000)
    governor.base = BASE
    assert (governor.limits().global_tokens, governor.limits().visitor_tokens) == (0, 0)


def test_missing_probe_gives_the_conservative_factor() -> None:
    """With no fresh probe the factor is the configured stale factor, never unlimited."""
    governor = PressureGovernor(BASE, CONFIG)
    for second in range(100):
        governor.update(float(second), None, None)
    assert governor.factor == CONFIG.stale_factor
    assert governor.limits().global_limit == 20


def test_tightens_at_once_and_relaxes_slowly() -> None:
    """Pressure cuts the factor in one step; its end lets the factor back only gradually."""
    governor = PressureGovernor(BASE, CONFIG)
    governor.update(0.0, {}, None)
    governor.factor = 1.0
    assert governor.update(1.0, {"memory_pressure_level": 4}, None) == CONFIG.floor
    assert governor.update(2.0, {"memory_pressure_level": 1}, None) == pytest.approx(0.27)
    assert governor.update(12.0, {"memory_pressure_level": 1}, None) == pytest.approx(0.47)
    assert governor.update(100.0, {"memory_pressure_level": 1}, None) == 1.0


def test_oscillating_input_does_not_flap() -> None:
    """Pressure flipping high and low every second keeps the limits tight and steady."""
    governor = PressureGovernor(BASE, CONFIG)
    governor.factor = 1.0
    seen = []
    for second in range(120):
        level = 4 if second % 2 else 1
        governor.update(float(second), {"memory_pressure_level": level}, None)
        seen.append(governor.limits().global_limit)
    assert seen[0] == 40
    assert set(seen[1:]) == {10}  # one step down to the floor at the first spike, and it stays


def test_stale_after_fresh_tightens_to_the_stale_factor() -> None:
    """A probe that goes quiet pulls a relaxed governor down to the stale factor at once."""
    governor = PressureGovernor(BASE, CONFIG)
    governor.factor = 1.0
    governor.update(0.0, {"memory_pressure_level": 1}, None)
    assert governor.update(1.0, None, None) == CONFIG.stale_factor


def test_the_first_reading_replaces_the_start_up_guess_at_once() -> None:
    """A gateway starts at the stale factor; the first fresh reading sets the factor outright
    (a restart is not throttled while it relaxes), but a probe back from silence relaxes slowly."""
    governor = PressureGovernor(BASE, CONFIG)
    assert governor.update(0.0, None, None) == CONFIG.stale_factor
    assert governor.update(1.0, {"memory_pressure_level": 1}, None) == 1.0
    assert governor.update(2.0, None, None) == CONFIG.stale_factor
    assert governor.update(3.0, {"memory_pressure_level": 1}, None) == pytest.approx(0.52)
    busy = PressureGovernor(BASE, CONFIG)
    assert busy.update(0.0, {"memory_pressure_level": 4}, None) == CONFIG.floor


def test_gateway_ttft_average_forgets_when_idle() -> None:
    """The gateway's own TTFT moves toward new samples and says nothing after a quiet minute."""
    tracker = TtftTracker(alpha=0.5, forget_after=60)
    tracker.observe(1.0, now=0.0)
    tracker.observe(3.0, now=1.0)
    assert tracker.current(2.0) == pytest.approx(2.0)
    assert tracker.current(62.0) is None
