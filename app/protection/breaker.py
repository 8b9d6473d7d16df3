"""The upstream circuit breaker: closed, open, half-open, sized for a personal site's traffic.

A few consecutive failures, or a high failure share over the last few calls, open it; it stays
open for a jittered cooldown that doubles on each trip in a row; then a bounded number of trial
requests decide. The health check or the probe can open it at once, and close the wait early.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


LEGAL = {
    BreakerState.CLOSED: {BreakerState.OPEN},
    BreakerState.OPEN: {BreakerState.HALF_OPEN},
    BreakerState.HALF_OPEN: {BreakerState.CLOSED, BreakerState.OPEN},
}


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    consecutive_failures: int = 3
    failure_share: float = 0.5
    window: int = 10
    min_calls: int = 4
    cooldown: float = 5.0
    max_cooldown: float = 120.0
    jitter: float = 0.2
    trials: int = 2


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to call upstream once; a trial permit is one of the bounded half-open calls."""

    trial: bool


# Permits carry nothing but their kind: one of each serves every request.
ORDINARY = Permit(trial=False)
TRIAL = Permit(trial=True)


class CircuitBreaker:
    """One per gateway process. `permit()` is the local fast path: no I/O."""

    def __init__(
        self,
        config: BreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self.config = config
        self._clock, self._jitter, self._on_change = clock, jitter, on_change
        self._state = BreakerState.CLOSED
        self._outcomes: deque[bool] = deque(maxlen=config.window)
        self._consecutive = 0
        self._trips = 0
        self._open_until = 0.0
        self._trials_out = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cooldown has passed is half-open."""
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial through (0 when it would now)."""
        return (
            max(0.0, self._open_until - self._clock()) if self.state is BreakerState.OPEN else 0.0
        )

    def permit(self) -> Permit | None:
        """A permit to call upstream, or None while open or while every trial is out."""
        state = self.state
        if state is BreakerState.CLOSED:
            return ORDINARY
        if state is BreakerState.HALF_OPEN and self._trials_out < self.config.trials:
            self._trials_out += 1
            return TRIAL
        return None

    def give_back(self, permit: Permit) -> None:
        """The permit was not used (the request was refused before calling upstream)."""
        if permit.trial:
            self._trials_out = max(0, self._trials_out - 1)

    def success(self, permit: Permit) -> None:
        """The call worked."""
        self.give_back(permit)
        self._consecutive = 0
        self._outcomes.append(True)
        if self._state is BreakerState.HALF_OPEN and permit.trial:
            self._close()

    def failure(self, permit: Permit) -> None:
        """The call failed on the upstream's side."""
        self.give_back(permit)
        self._consecutive += 1
        self._outcomes.append(False)
        if (self._state is BreakerState.HALF_OPEN and permit.trial) or (
            self._state is BreakerState.CLOSED and self._should_trip()
        ):
            self._trip()

    def force_open(self) -> None:
        """The health check or the probe says the model server is down: open now, and stay
        open while they keep saying so (no trials against a model side known to be down)."""
        if self._state is BreakerState.OPEN:
            self._open_until = max(self._open_until, self._clock() + self.config.cooldown)
        else:
            self._trip()

    def health_restored(self) -> None:
        """The outage is over: stop waiting, let the trials decide."""
        if self.state is BreakerState.OPEN:
            self._open_until = self._clock()
            self._move(BreakerState.HALF_OPEN)

    def health_confirmed(self) -> None:
        """An active check passed: on a quiet site with no trial under way, that is the trial."""
        if self.state is BreakerState.HALF_OPEN and self._trials_out == 0:
            self._close()

    def _should_trip(self) -> bool:
        if self._consecutive >= self.config.consecutive_failures:
            return True
        calls = len(self._outcomes)
        failures = calls - sum(self._outcomes)
        return calls >= self.config.min_calls and failures / calls >= self.config.failure_share

    def _trip(self) -> None:
        self._trips += 1
        base = min(self.config.max_cooldown, self.config.cooldown * 2 ** (self._trips - 1))
        spread = 1 + self.config.jitter * (2 * self._jitter() - 1)
        self._open_until = self._clock() + base * spread
        self._trials_out = 0
        self._move(BreakerState.OPEN)

    def _close(self) -> None:
        self._trips = 0
        self._consecutive = 0
        self._outcomes.clear()
        self._move(BreakerState.CLOSED)

    def _move(self, new: BreakerState) -> None:
        old = self._state
        if new not in LEGAL[old]:
            raise RuntimeError(f"breaker cannot go from {old} to {new}")
        self._state = new
        if self._on_change is not None:
            self._on_change(old, new)
