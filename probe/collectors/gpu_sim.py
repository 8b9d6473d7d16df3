"""GPU stand-in for the simulated model server: its busy slots, from `GET /_sim/stats`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from probe.collectors import Signals


def parse_sim_stats(stats: dict[str, Any]) -> Signals:
    """`gpu_utilization_ratio` = busy slots / slots, and `sim_queued` requests."""
    slots = float(stats["slots"])
    if slots <= 0:
        raise ValueError(f"the simulator reports {slots:g} slots")
    return {
        "gpu_utilization_ratio": float(stats["busy_slots"]) / slots,
        "sim_queued": float(stats["queued"]),
    }


class SimGpuCollector:
    """Reads the simulator's slot use as if it were GPU utilisation."""

    name = "gpu"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def collect(self) -> Signals:
        """Ask the simulator for its stats."""
        response = await self._client.get("/_sim/stats")
        return parse_sim_stats(response.raise_for_status().json())
