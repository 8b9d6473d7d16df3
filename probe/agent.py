"""The probe loop: every interval, run the collectors together, then publish one snapshot."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probe.snapshot import build_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from probe.collectors import Signals
    from probe.idle_baseline import IdleBaseline
    from probe.metrics import ProbeMetrics
    from probe.publisher import RedisPublisher
    from probe.runner import CollectorRunner
    from probe.snapshot import Snapshot

LOG = logging.getLogger("probe.agent")


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """What every snapshot says about its origin."""

    host: str
    interval: float
    gpu_source: str
    power_source: str = "none"


class Agent:
    """Collects and publishes; no collector, Redis outage or bug of one tick stops it."""

    def __init__(
        self,
        runners: Sequence[CollectorRunner],
        *,
        identity: Identity,
        publisher: RedisPublisher | None = None,
        metrics: ProbeMetrics | None = None,
        baseline: IdleBaseline | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runners = list(runners)
        self.identity = identity
        self.publisher = publisher
        self.metrics = metrics
        self.baseline = baseline
        self._clock = clock

    async def tick(self) -> Snapshot:
        """Collect once, publish (if there is a publisher) and return the snapshot."""
        signals, unknown = await self._collect()
        if self.baseline is not None:
            signals |= self.baseline.update(signals)
        snapshot = build_snapshot(
            signals,
            ts=self._clock(),
            host=self.identity.host,
            interval=self.identity.interval,
            gpu_source=self.identity.gpu_source,
            power_source=self.identity.power_source,
            unknown=unknown,
        )
        if self.metrics is not None:
            self.metrics.record(
                signals, {runner.name: runner.up is True for runner in self.runners}
            )
        await self._publish(snapshot)
        return snapshot

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every interval until `stop` is set; a late tick starts the next one at once."""
        interval = self.identity.interval
        next_tick = time.monotonic()
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                LOG.exception("probe tick failed; trying again next interval")
            next_tick = max(next_tick + interval, time.monotonic())
            try:
                async with asyncio.timeout(next_tick - time.monotonic()):
                    await stop.wait()
            except TimeoutError:
                pass

    async def _collect(self) -> tuple[Signals, list[str]]:
        results = await asyncio.gather(*(runner.run() for runner in self.runners))
        signals: Signals = {}
        unknown = []
        for runner, result in zip(self.runners, results, strict=True):
            if result is None:
                unknown.append(runner.name)
            else:
                signals |= result
        return signals, unknown

    async def _publish(self, snapshot: Snapshot) -> None:
        if self.publisher is None:
            return
        published = await self.publisher.publish(snapshot)
        if self.metrics is not None:
            self.metrics.publish_errors = self.publisher.errors
            if published:
                self.metrics.last_publish = float(snapshot["ts"])
