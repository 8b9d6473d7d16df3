"""The report's own arithmetic: periods, quantiles as Prometheus computes them, the ordering
and the closing line, on figures given by hand."""

from __future__ import annotations

import pytest

from app.report.energy import Prices, Usage, from_exposition, quantile, since_seconds
from app.report.energy_table import NO_SOURCE, ordered, verdict
from app.telemetry import GatewayMetrics


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604_800), ("24h", 86_400), ("30m", 1_800)])
def test_periods_read_as_prometheus_writes_them(text: str, seconds: int) -> None:
    """7d, 24h, 30m: the same durations Prometheus's range selectors take."""
    assert since_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "0d", "1y", "-1d", "7 days"])
def test_a_period_that_is_not_one_is_refused(text: str) -> None:
    """Anything else is a ValueError that says what is expected."""
    with pytest.raises(ValueError, match="7d, 24h or 30m"):
        since_seconds(text)


def test_quantile_interpolates_within_a_bucket_as_prometheus_does() -> None:
    """histogram_quantile's linear interpolation: half of 10 in (1, 2] with 10 below is 1.5."""
    buckets = {1.0: 10.0, 2.0: 20.0, float("inf"): 20.0}
    assert quantile(0.75, buckets) == pytest.approx(1.5)
    assert quantile(0.25, buckets) == pytest.approx(0.5)
    assert quantile(0.5, {}) is None


def test_the_exposition_is_read_by_model() -> None:
    """A gateway's /metrics, by model: answers, tokens, energy and its TTFT quantiles."""
    metrics = GatewayMetrics()
    metrics.energy_configured(["home"], ["m"])
    for ttft in (0.2, 0.3, 0.4):
        metrics.energy_model_answer(
            "m", "home", input_tokens=10, output_tokens=100, ttft=ttft, streaming=2.0
        )
    metrics.energy_host_power("home", 40.0, 12.0)
    metrics.energy_answer("m", "home", 90.0, 60.0, 100)
    body, _ = metrics.exposition(None)
    usage = from_exposition(body.decode())["m"]
    assert usage.answers == 3
    assert usage.tokens_per_second == pytest.approx(50.0)
    assert usage.joules_per_answer == pytest.approx(90.0)
    assert usage.joules_per_1k_tokens == pytest.approx(900.0)
    assert usage.ttft_p50 is not None
    assert 0.25 <= usage.ttft_p50 <= 0.5
    assert usage.energy_cost(0.3) == pytest.approx(3 * 90.0 / 3_600_000 * 0.3)


def measured(model: str, joules: float, answers: float, tokens: float) -> Usage:
    return Usage(
        model, answers=answers, joules=joules, energy_answers=answers, energy_tokens=tokens
    )


def test_lighter_first_and_the_closing_line_says_by_how_much() -> None:
    """Least energy per answer first; the unmeasured (the fallback) last; the line names both."""
    heavy, light = measured("big", 4_000, 10, 5_000), measured("small", 1_000, 10, 5_000)
    hosted = Usage("hosted", answers=3)
    assert [u.model for u in ordered([heavy, hosted, light])] == ["small", "big", "hosted"]
    line = verdict([heavy, light, hosted])
    assert line.startswith("A lighter model saves energy: small used 100.0 J an answer")
    assert "75% less" in line


def test_shorter_answers_are_not_cheaper_ones() -> None:
    """A model that uses less per answer but more per 1,000 tokens is said to be shorter."""
    terse, wordy = measured("terse", 500, 10, 500), measured("wordy", 2_000, 10, 5_000)
    assert "its answers are shorter, not cheaper" in verdict([terse, wordy])


def test_no_power_source_is_said_so() -> None:
    """No model with measured energy: the report says there is no power source."""
    assert verdict([Usage("m", answers=4)]) == NO_SOURCE


def test_the_fallback_cost_is_its_price_for_the_same_tokens() -> None:
    """Input and output tokens at their prices per million."""
    prices = Prices(0.3, "EUR", fallback_input_per_mtok=1.0, fallback_output_per_mtok=4.0)
    usage = Usage("m", input_tokens=2_000_000, output_tokens=500_000)
    assert prices.fallback_cost(usage) == pytest.approx(4.0)
