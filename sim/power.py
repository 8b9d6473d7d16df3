"""The simulated host's power draw and its energy counter.

Power follows a configurable straight line, `idle_watts + watts_per_stream * streams`, where a
stream is a generation holding a slot (prefilling or decoding; one waiting in line draws
nothing). Two sims with different curves play a lighter and a heavier model.

The meter integrates that power exactly over time, piece by piece between changes, into a
cumulative counter of joules that only grows, like a hardware counter (NVML, RAPL): the probe
reads it the same way it reads real hardware, and a test can check attributed energy against
it. `POST /_sim/reset` leaves it alone, as a reset leaves the other live gauges alone.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class PowerMeter:
    """Energy since start, integrated over the number of streams as it changes."""

    def __init__(
        self,
        *,
        idle_watts: float,
        watts_per_stream: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_watts = idle_watts
        self.watts_per_stream = watts_per_stream
        self._clock = clock
        self._streams = 0
        self._joules = 0.0
        self._since = clock()

    @property
    def watts(self) -> float:
        """Power drawn right now."""
        return self.idle_watts + self.watts_per_stream * self._streams

    def set_streams(self, streams: int) -> None:
        """Count the energy at the old draw up to now, then draw for `streams` from now on."""
        self._settle()
        self._streams = streams

    def joules(self) -> float:
        """Energy drawn since the simulator started."""
        self._settle()
        return self._joules

    def stats(self) -> dict[str, float]:
        """The meter as `GET /_sim/stats` shows it."""
        return {
            "energy_joules": self.joules(),
            "power_watts": self.watts,
            "idle_watts": self.idle_watts,
            "watts_per_stream": self.watts_per_stream,
        }

    def _settle(self) -> None:
        now = self._clock()
        self._joules += self.watts * (now - self._since)
        self._since = now
