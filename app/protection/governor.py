"""The pressure governor: what the model host feels, as one pressure in [0, 1], and the factor
by which the global limits (requests and tokens) and the in-flight caps shrink from their base
toward a floor.

Each lane shrinks by a power of that factor f: the public by f, members by f**0.5, the owner by
f**0.25, so the public gives way first and most, the owner last and least. Of the base in-flight
cap C, R places (LLMGW_OWNER_RESERVED_INFLIGHT) are held back for the owner: the public's cap is
(C - R) * f, members' (C - R) * f**0.5, the owner's C * f**0.25 and never less than members' cap
plus R. Every cap counts the streams of all lanes, so no other lane fills the owner's R places.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from app.access.keys import Lane
from app.admission.decision import Limits

if TYPE_CHECKING:
    from collections.abc import Mapping

# macOS kern.memorystatus_vm_pressure_level: 1 normal, 2 warn, 4 critical.
MACOS_MEMORY_LEVELS = {1: 0.0, 2: 0.75, 4: 1.0}
# The power of the factor each lane's limits shrink by: higher lanes shrink later and less.
LANE_POWERS = {Lane.OWNER: 0.25, Lane.MEMBER: 0.5, Lane.PUBLIC: 1.0}


@dataclass(frozen=True, slots=True)
class GovernorConfig:
    """Thresholds and pacing; the README's table documents each."""

    soft: float = 0.6
    hard: float = 0.9
    floor: float = 0.25
    stale_factor: float = 0.5
    relax_per_second: float = 0.02
    ttft_limit_seconds: float = 5.0
    gpu_weight: float = 0.5
    psi_limit_percent: float = 25.0


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def pressures(
    signals: Mapping[str, float], gateway_ttft: float | None, config: GovernorConfig
) -> dict[str, float]:
    """Each known signal normalised to [0, 1]; unknown signals are simply absent."""
    out: dict[str, float] = {}
    if (gpu := signals.get("gpu_utilization_ratio")) is not None:
        # A busy GPU is not an overloaded one: alone it stays under the soft threshold.
        out["gpu"] = _clamp(gpu) * config.gpu_weight
    if (level := signals.get("memory_pressure_level")) is not None:
        out["memory"] = MACOS_MEMORY_LEVELS.get(int(level), 1.0)
    if (psi := signals.get("memory_psi_some_avg10")) is not None:
        out["memory_psi"] = _clamp(psi / config.psi_limit_percent)
    if (ttft := signals.get("synthetic_ttft_seconds")) is not None:
        out["model_ttft"] = _clamp(ttft / config.ttft_limit_seconds)
    if gateway_ttft is not None:
        out["gateway_ttft"] = _clamp(gateway_ttft / config.ttft_limit_seconds)
    return out


def factor_for(pressure: float, config: GovernorConfig) -> float:
    """1 up to the soft threshold, the floor from the hard one, a straight line between."""
    if pressure <= config.soft:
        return 1.0
    if pressure >= config.hard:
        return config.floor
    share = (pressure - config.soft) / (config.hard - config.soft)
    return 1.0 - share * (1.0 - config.floor)


class PressureGovernor:
    """Tightens at once, relaxes slowly: an oscillating input keeps it tight, never flapping."""

    def __init__(self, base: Limits, config: GovernorConfig, *, owner_reserved: int = 0) -> None:
        self.base = base
        self.config = config
        self.owner_reserved = owner_reserved  # in-flight places only the owner may fill
        self.factor = config.stale_factor
        self.pressure = 0.0
        self.signals: dict[str, float] = {}
        self._updated: float | None = None
        self._informed = False  # no fresh probe reading yet since start
        # `limits()` is asked on every admission and changes only with the factor (or base).
        self._limits = self._shrunk()
        self._limits_of = (self.factor, self.base)

    def update(
        self,
        now: float,
        probe_signals: Mapping[str, float] | None,
        gateway_ttft: float | None,
    ) -> float:
        """Feed the latest readings (None: no fresh probe); return the factor now in force."""
        self.signals = pressures(probe_signals or {}, gateway_ttft, self.config)
        self.pressure = max(self.signals.values(), default=0.0)
        target = factor_for(self.pressure, self.config)
        if probe_signals is None:
            target = min(target, self.config.stale_factor)
        elapsed = 0.0 if self._updated is None else max(0.0, now - self._updated)
        self._updated = now
        if probe_signals is not None and not self._informed:
            # Until the first reading the stale factor stood for "not known yet", not for a
            # measured pressure: the first reading sets the factor outright, so a gateway that
            # just started is not held at the stale factor while it relaxes (25 s by default).
            self._informed = True
            self.factor = target
        elif target < self.factor:
            self.factor = target
        else:
            self.factor = min(target, self.factor + self.config.relax_per_second * elapsed)
        return self.factor

    def follow(self, factor: float, pressure: float) -> None:
        """Take the factor and pressure made elsewhere: the site's governor, with several
        hosts, follows theirs (app/upstream/hosts.py)."""
        self.factor, self.pressure, self._informed = factor, pressure, True

    def limits(self, lane: Lane = Lane.PUBLIC) -> Limits:
        """A lane's effective limits: the public's windows shrunk by the factor, and the lane's
        in-flight cap (see the module's docstring), rounded down, never below 1. Rounding down
        means a factor creeping back up crosses each step once: no flapping. A keyed lane is
        not counted in the public's windows: its own are its key's (`scaled`)."""
        factor, base = self.factor, self.base
        if factor != self._limits_of[0] or base is not self._limits_of[1]:
            self._limits = self._shrunk()
            self._limits_of = (factor, base)
        return self._limits[lane]

    def lane_factor(self, lane: Lane) -> float:
        """The factor a lane's limits shrink by now: a power of the governor's factor."""
        return float(self.factor ** LANE_POWERS[lane])

    def scaled(self, limit: int, lane: Lane) -> int:
        """A keyed lane's own limit (a key's requests or tokens per window) under pressure:
        shrunk by the lane's factor, never below 1; 0 (no limit) stays 0."""
        return _shrink(limit, self.lane_factor(lane)) if limit > 0 else 0

    def lane_caps(self) -> dict[str, int]:
        """Each lane's in-flight cap now, for the metrics and /readyz."""
        return {str(lane): self.limits(lane).inflight_cap for lane in Lane}

    def _shrunk(self) -> dict[Lane, Limits]:
        base, reserved = self.base, self.owner_reserved
        public = Limits(
            global_limit=_shrink(base.global_limit, self.factor),
            visitor_limit=base.visitor_limit,
            inflight_cap=_shrink(base.inflight_cap - reserved, self.factor),
            global_tokens=_shrink(base.global_tokens, self.factor) if base.global_tokens else 0,
            visitor_tokens=base.visitor_tokens,
        )
        member_cap = _shrink(base.inflight_cap - reserved, self.lane_factor(Lane.MEMBER))
        owner_cap = max(
            _shrink(base.inflight_cap, self.lane_factor(Lane.OWNER)), member_cap + reserved
        )
        return {
            Lane.OWNER: replace(public, inflight_cap=owner_cap, reserved_inflight=reserved),
            Lane.MEMBER: replace(public, inflight_cap=member_cap),
            Lane.PUBLIC: public,
        }


def _shrink(base: int, factor: float) -> int:
    return max(1, math.floor(base * factor + 1e-9))


class TtftTracker:
    """The gateway's own time to first token: a moving average that forgets when idle."""

    def __init__(self, alpha: float = 0.3, forget_after: float = 60.0) -> None:
        self._alpha = alpha
        self._forget_after = forget_after
        self._value: float | None = None
        self._at = 0.0

    def observe(self, seconds: float, now: float) -> None:
        """Take one admitted request's time to first token."""
        current = self.current(now)
        self._value = seconds if current is None else current + self._alpha * (seconds - current)
        self._at = now

    def current(self, now: float) -> float | None:
        """The average, or None when the last sample is too old to say anything."""
        if self._value is None or now - self._at > self._forget_after:
            return None
        return self._value
