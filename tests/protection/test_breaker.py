"""The circuit breaker's states and transitions, on a clock the test controls."""

from __future__ import annotations

import functools

import pytest

from app.protection.breaker import BreakerConfig, BreakerState, CircuitBreaker

CONFIG = BreakerConfig(
    consecutive_failures=3, failure_share=0.5, window=10, min_calls=4, cooldown=5.0,
    max_cooldown=40.0, jitter=0.2, trials=2,
)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(CONFIG, clock=clock, jitter=lambda: 0.5)


def state(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read afresh (mypy would carry a narrowed type across calls)."""
    return breaker.state


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        permit = breaker.permit()
        assert permit is not None
        breaker.failure(permit)


def test_consecutive_failures_open_it(breaker: CircuitBreaker) -> None:
    """Three failures in a row open the breaker, and then nothing is let through."""
    fail(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED
    fail(breaker, 1)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.permit() is None


def test_failure_share_opens_it_at_low_traffic(breaker: CircuitBreaker) -> None:
    """Alternating failures (never three in a row) open it once half of the calls fail."""
    for outcome in (False, True, False, True):
        permit = breaker.permit()
        assert permit is not None
        (breaker.success if outcome else breaker.failure)(permit)
    assert (
        breaker.state is BreakerState.CLOSED
    )  # 2 of 4 failed, but the share is judged on a failure
    fail(breaker, 1)
    assert state(breaker) is BreakerState.OPEN


def test_half_open_admits_only_the_bounded_trials(breaker: CircuitBreaker, clock: Clock) -> None:
    """After the cooldown exactly `trials` requests get through until one of them reports."""
    fail(breaker, 3)
    clock.now += 5.0
    assert state(breaker) is BreakerState.HALF_OPEN
    permits = [breaker.permit() for _ in range(5)]
    assert [p is not None for p in permits] == [True, True, False, False, False]


def test_a_good_trial_closes_it(breaker: CircuitBreaker, clock: Clock) -> None:
    """One successful trial closes the breaker and forgets the trips."""
    fail(breaker, 3)
    clock.now += 5.0
    permit = breaker.permit()
    assert permit is not None
    breaker.success(permit)
    assert state(breaker) is BreakerState.CLOSED
    fail(breaker, 3)
    assert breaker.retry_after() == pytest.approx(5.0)  # first-trip cooldown again


def test_cooldown_grows_on_repeated_trips(breaker: CircuitBreaker, clock: Clock) -> None:
    """Each failed trial doubles the cooldown, up to its maximum."""
    fail(breaker, 3)
    waits = []
    for _ in range(5):
        waits.append(breaker.retry_after())
        clock.now += waits[-1]
        permit = breaker.permit()
        assert permit is not None
        breaker.failure(permit)
    assert waits == pytest.approx([5.0, 10.0, 20.0, 40.0, 40.0])


def test_cooldown_is_jittered_within_bounds(clock: Clock) -> None:
    """Jitter spreads the cooldown by at most ±20 %."""
    for jitter, expected in ((0.0, 4.0), (1.0, 6.0)):
        breaker = CircuitBreaker(CONFIG, clock=clock, jitter=functools.partial(float, jitter))
        breaker.force_open()
        assert breaker.retry_after() == pytest.approx(expected)


def test_force_open_and_health_restored(breaker: CircuitBreaker) -> None:
    """The health check opens it at once, and its recovery lets trials in without waiting."""
    breaker.force_open()
    assert state(breaker) is BreakerState.OPEN
    breaker.health_restored()
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.permit() is not None


def test_unused_trial_is_given_back(breaker: CircuitBreaker, clock: Clock) -> None:
    """A trial refused by the rate limiter does not use up the half-open budget."""
    fail(breaker, 3)
    clock.now += 5.0
    for _ in range(4):
        permit = breaker.permit()
        assert permit is not None
        breaker.give_back(permit)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_transitions_are_reported(clock: Clock) -> None:
    """Every change of state is reported to the listener, in order."""
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(CONFIG, clock=clock, on_change=lambda a, b: changes.append((a, b)))
    breaker.force_open()
    clock.now += 10
    permit = breaker.permit()
    assert permit is not None
    breaker.success(permit)
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_diagnosed_outage_keeps_it_open(clock: Clock) -> None:
    """While the health check keeps saying down, no trial is let through, and no trip counted."""
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(CONFIG, clock=clock, on_change=lambda a, b: changes.append((a, b)))
    for _ in range(30):
        breaker.force_open()
        clock.now += 1.0
        assert breaker.permit() is None
    assert changes == [("closed", "open")]


def test_a_passing_check_closes_an_idle_half_open_breaker(breaker: CircuitBreaker) -> None:
    """After an outage, a passing health check closes it when no trial is under way."""
    breaker.force_open()
    breaker.health_restored()
    breaker.health_confirmed()
    assert state(breaker) is BreakerState.CLOSED
