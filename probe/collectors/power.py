"""The host's energy: counters read from a power source, kept as the probe's own running totals.

Every source (power_macos, power_nvidia, power_rapl, power_sim) hands over `Channel`s: a raw
cumulative reading in joules, as the hardware or the sampler has it, with the components it
counts towards. The account below turns the raw readings into totals that only grow:

- a counter that wraps at a known range (RAPL's `max_energy_range_uj`) adds what it counted up
  to the range and from zero;
- a counter that falls without one (NVML after a driver reload, a restarted sim) started again
  from zero: what it reads now is what it counted since;
- a channel first seen counts from its first reading, unless it started from zero with the
  probe (a sampler's or an integral's own totals): then all of it counts.

Published signals (the contract the gateway reads; see infra/probe/README.md):

- `energy_<component>_joules`: joules counted since `energy_since`, never falling;
- `power_<component>_watts`: average power over the last interval the source measured;
- `energy_since`: Unix time the probe started counting (its totals were 0 then). A new value
  means the totals started again (the probe restarted): take no difference across it.

`total` is the host as far as its source sees it; the other components are parts of it or
overlap (`cpu` is inside `package`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from probe.collectors import Signals

TOTAL = "total"


@dataclass(frozen=True, slots=True)
class Channel:
    """One raw energy counter: `joules` as read at monotonic time `at`."""

    key: str  # stable across readings, unique within the source: "intel-rapl:0", "nvidia0"
    components: tuple[str, ...]
    joules: float
    at: float
    wraps_at: float | None = None  # the counter's range, when it wraps around
    from_zero: bool = False  # started at 0 when the probe did: its first reading counts


class PowerSource(Protocol):
    """Where the channels come from; `name` is published as `power_source`."""

    name: str

    async def read(self) -> list[Channel]:
        """Every channel now; raise when the source cannot be read."""
        ...

    async def aclose(self) -> None:
        """Stop whatever the source runs (a sampler process)."""
        ...


def increase(previous: float, current: float, wraps_at: float | None) -> float:
    """What a counter counted between two readings, across a wrap or a restart."""
    if current >= previous:
        return current - previous
    if wraps_at is not None and previous <= wraps_at:
        return current + wraps_at - previous
    return current  # it started again from zero


@dataclass(slots=True)
class _Seen:
    joules: float
    at: float
    watts: float | None = None


class EnergyAccount:
    """Running totals per component, and the power of each over its last measured interval."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self.since = wall_clock()
        self.totals: dict[str, float] = {}
        self._seen: dict[str, _Seen] = {}

    def update(self, channels: Iterable[Channel]) -> Signals:
        """Take one reading of every channel; the published signals."""
        watts: dict[str, float] = {}
        unknown: set[str] = set()  # a component with a part not yet measured has no power
        for channel in channels:
            channel_watts = self._take(channel)
            for component in channel.components:
                self.totals.setdefault(component, 0.0)
                if channel_watts is None:
                    unknown.add(component)
                else:
                    watts[component] = watts.get(component, 0.0) + channel_watts
        return self._signals({c: w for c, w in watts.items() if c not in unknown})

    def _take(self, channel: Channel) -> float | None:
        seen = self._seen.get(channel.key)
        if seen is None:
            seen = self._seen[channel.key] = _Seen(0.0, channel.at)
            if not channel.from_zero:
                seen.joules = channel.joules  # counted from here on
                return None
        joules = increase(seen.joules, channel.joules, channel.wraps_at)
        for component in channel.components:
            self.totals[component] = self.totals.get(component, 0.0) + joules
        if channel.at > seen.at:  # no new reading since (a sampler between samples): keep it
            seen.watts = joules / (channel.at - seen.at)
        seen.joules, seen.at = channel.joules, channel.at
        return seen.watts

    def _signals(self, watts: dict[str, float]) -> Signals:
        signals: Signals = {"energy_since": self.since}
        for component, joules in self.totals.items():
            signals[f"energy_{component}_joules"] = joules
        for component, component_watts in watts.items():
            signals[f"power_{component}_watts"] = component_watts
        return signals


class PowerCollector:
    """The `power` collector: a source's channels through the probe's own account."""

    name = "power"

    def __init__(self, source: PowerSource) -> None:
        self.source = source
        self._account = EnergyAccount()

    async def collect(self) -> Signals:
        """Read the source and count what it measured since the last reading."""
        return self._account.update(await self.source.read())

    async def aclose(self) -> None:
        """Stop the source."""
        await self.source.aclose()


class CombinedSource:
    """Several sources read together (NVIDIA and RAPL on one Linux host): their `total`s add."""

    def __init__(self, sources: list[PowerSource]) -> None:
        self.sources = sources
        self.name = "+".join(source.name for source in sources)

    async def read(self) -> list[Channel]:
        """The channels of every source; a source that fails makes the whole reading fail, or
        `total` would drop by that source's share."""
        channels: list[Channel] = []
        for source in self.sources:
            channels += await source.read()
        return channels

    async def aclose(self) -> None:
        """Stop every source."""
        for source in self.sources:
            await source.aclose()
