"""The host's idle power, measured while nothing runs: the part of the energy no answer caused.

The probe does not see generations (LM Studio tells no one), so "nothing runs" is read from the
accelerator: GPU use (`gpu_utilization_ratio`: busy slots on the sim, ioreg on a Mac, NVML on
Linux), or CPU use where no GPU is known (a CPU-only host), at most `below` at this tick and
at the one before, so the interval between them was idle at both ends. The baseline is an
exponentially weighted mean of `power_total_watts` over such intervals.

What this can get wrong: an answer shorter than the interval that starts and ends between two
ticks goes unseen, and that interval's power raises the mean a little; other work on the host
(a backup, a browser) counts as idle draw. The weight keeps one such interval from moving the
baseline by more than a fifth of its excess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probe.collectors import Signals

WEIGHT = 0.2  # the newest idle interval's share of the mean
ACTIVITY_SIGNALS = ("gpu_utilization_ratio", "cpu_ratio")


class IdleBaseline:
    """Adds `idle_power_watts` to a tick's signals once an idle interval was measured."""

    def __init__(self, *, below: float, weight: float = WEIGHT) -> None:
        self.below = below
        self.weight = weight
        self.watts: float | None = None
        self._idle_before = False

    def update(self, signals: Signals) -> Signals:
        """Take one tick's signals; `idle_power_watts` if the baseline is known."""
        idle = self._is_idle(signals)
        power = signals.get("power_total_watts")
        if idle and self._idle_before and power is not None:
            old = self.watts
            self.watts = power if old is None else self.weight * power + (1 - self.weight) * old
        self._idle_before = idle
        return {} if self.watts is None else {"idle_power_watts": self.watts}

    def _is_idle(self, signals: Signals) -> bool:
        for name in ACTIVITY_SIGNALS:
            if (activity := signals.get(name)) is not None:
                return activity <= self.below
        return False  # nothing tells: never guess idle
