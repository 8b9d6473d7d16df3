"""Time to the first SSE byte and between text deltas, gateway versus sim direct, at 1, 10 and
100 concurrent streams: the two paths alternate phase by phase, so both see the same machine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stream_client import Headers, StreamConnection, Timing, timed_stream

if TYPE_CHECKING:
    from collections.abc import Sequence

    from usage import CpuClock


@dataclass(frozen=True)
class Level:
    """One concurrency level: streams at once, chats per stream per phase, phases per path."""

    streams: int
    chats_per_phase: int
    phases: int


@dataclass(frozen=True)
class Target:
    """One path to measure: where to post what (with which headers, a key's for instance)."""

    name: str
    url: str
    path: str
    body: bytes
    headers: Headers = ()


@dataclass
class PathSamples:
    """What one path showed at one level."""

    first_byte: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    failed: int = 0

    def add(self, timing: Timing) -> None:
        if timing.status != 200 or timing.first_byte is None:
            self.failed += 1
            return
        self.first_byte.append(timing.first_byte)
        self.gaps.extend(timing.gaps)


@dataclass
class LevelResult:
    """Both paths at one level, and the gateway's CPU seconds over its own phases."""

    streams: int
    paths: dict[str, PathSamples]
    gateway_cpu_seconds: float = 0.0
    gateway_chats: int = 0


async def phase(
    target: Target, connections: Sequence[StreamConnection], chats: int, into: PathSamples
) -> None:
    """Every connection runs `chats` streams back to back (a closed loop per stream)."""

    async def worker(connection: StreamConnection) -> None:
        for _ in range(chats):
            into.add(await timed_stream(connection, target.path, target.body, target.headers))

    await asyncio.gather(*(worker(connection) for connection in connections))


async def measure_level(
    level: Level, direct: Target, gateway: Target, gateway_cpu: CpuClock
) -> LevelResult:
    """Warm both paths, then alternate their phases; which goes first alternates too."""
    pools = {
        target.name: [StreamConnection(target.url) for _ in range(level.streams)]
        for target in (direct, gateway)
    }
    result = LevelResult(level.streams, {direct.name: PathSamples(), gateway.name: PathSamples()})
    for target in (direct, gateway):  # connections, pools, the admission script
        await phase(target, pools[target.name], 2, PathSamples())
    for number in range(level.phases):
        order = (direct, gateway) if number % 2 == 0 else (gateway, direct)
        for target in order:
            samples = result.paths[target.name]
            if target is gateway:
                with gateway_cpu.measure() as spent:
                    await phase(target, pools[target.name], level.chats_per_phase, samples)
                result.gateway_cpu_seconds += spent.seconds
                result.gateway_chats += level.streams * level.chats_per_phase
            else:
                await phase(target, pools[target.name], level.chats_per_phase, samples)
    for connection in (c for pool in pools.values() for c in pool):
        await connection.close()
    return result


def measure_levels(
    levels: Sequence[Level], direct: Target, gateway: Target, gateway_cpu: CpuClock
) -> list[LevelResult]:
    """Every level in turn, fewest streams first."""
    return [asyncio.run(measure_level(level, direct, gateway, gateway_cpu)) for level in levels]


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (nan for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summarize(result: LevelResult) -> dict[str, float]:
    """p50/p99 of both figures on both paths, the gateway's addition, ratio, and its CPU."""
    direct, through = result.paths["direct"], result.paths["gateway"]
    out: dict[str, float] = {"streams": result.streams}
    for figure in ("first_byte", "gaps"):
        for name, share in (("p50", 0.5), ("p99", 0.99)):
            d = percentile(getattr(direct, figure), share) * 1000
            g = percentile(getattr(through, figure), share) * 1000
            out[f"{figure}_direct_{name}_ms"] = d
            out[f"{figure}_gateway_{name}_ms"] = g
            out[f"{figure}_added_{name}_ms"] = g - d
            out[f"{figure}_ratio_{name}"] = g / d if d > 0 else float("nan")
    out["samples_direct"] = len(direct.first_byte)
    out["samples_gateway"] = len(through.first_byte)
    out["gap_samples_gateway"] = len(through.gaps)
    out["failed"] = direct.failed + through.failed
    out["failed_direct"] = direct.failed
    out["failed_gateway"] = through.failed
    out["cpu_ms_per_chat"] = result.gateway_cpu_seconds / max(1, result.gateway_chats) * 1000
    return out
