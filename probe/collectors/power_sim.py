"""Power of the simulated model server's host: its energy counter, from `GET /_sim/stats`.

The sim integrates a configurable draw (idle watts plus watts per stream, see sim/power.py)
into a counter of joules, read here exactly as a hardware counter is read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from probe.collectors.power import TOTAL, Channel

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx


class SimPowerSource:
    """The simulator's `energy_joules`, as the host's `total`."""

    name = "sim"

    def __init__(
        self, client: httpx.AsyncClient, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._clock = clock

    async def read(self) -> list[Channel]:
        """Ask the simulator for its counter."""
        response = await self._client.get("/_sim/stats")
        joules = float(response.raise_for_status().json()["energy_joules"])
        return [Channel("sim", (TOTAL,), joules, self._clock())]

    async def aclose(self) -> None:
        """Nothing to stop: the HTTP client is the agent's."""
