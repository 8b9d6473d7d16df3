"""Run one collector with a time limit, and turn any failure into "unknown" with a reason."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probe.collectors import Collector, Signals

LOG = logging.getLogger("probe.collectors")


class CollectorRunner:
    """Keeps a collector's state (up or not, and why) so a reason is logged once per change."""

    def __init__(self, collector: Collector, timeout: float) -> None:
        self.collector = collector
        self.timeout = timeout
        self.up: bool | None = None
        self.reason: str | None = None

    @property
    def name(self) -> str:
        """The collector's name."""
        return self.collector.name

    async def run(self) -> Signals | None:
        """The collector's finite signals, or None (unknown) if it failed or took too long."""
        try:
            async with asyncio.timeout(self.timeout):
                signals = await self.collector.collect()
        except Exception as exc:
            self._failed(self._describe(exc))
            return None
        self._succeeded()
        return {name: float(value) for name, value in signals.items() if math.isfinite(value)}

    def _failed(self, reason: str) -> None:
        if reason != self.reason:
            LOG.warning("collector %s is unknown: %s", self.name, reason)
        self.up, self.reason = False, reason

    def _succeeded(self) -> None:
        if self.up is False:
            LOG.info("collector %s is back", self.name)
        self.up, self.reason = True, None

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, TimeoutError) and not str(exc):
            return f"no answer within {self.timeout:g} s"
        return f"{type(exc).__name__}: {exc}"[:300]
