"""System memory, swap and CPU use, read through psutil."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import psutil  # type: ignore[import-untyped]  # no stubs in the dev extra

if TYPE_CHECKING:
    from probe.collectors import Signals

# psutil measures CPU between two calls: the first collect waits until the window is this long.
CPU_WINDOW_SECONDS = 0.1


class MemoryCollector:
    """`memory_used_ratio`, `swap_used_bytes`, `swap_used_ratio` and `cpu_ratio`."""

    name = "memory"

    def __init__(self) -> None:
        psutil.cpu_percent(None)  # starts the window of the first reading
        self._primed_at = time.monotonic()

    async def collect(self) -> Signals:
        """Read memory, swap and CPU use since the previous call."""
        waited = time.monotonic() - self._primed_at
        if waited < CPU_WINDOW_SECONDS:
            await asyncio.sleep(CPU_WINDOW_SECONDS - waited)
        # Here, not in the worker thread: psutil keeps the CPU baseline per thread.
        cpu = {"cpu_ratio": psutil.cpu_percent(None) / 100}
        return cpu | await asyncio.to_thread(read_memory)


def read_memory() -> Signals:
    """One psutil reading; the swap ratio is unknown on a machine without swap."""
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    signals = {
        "memory_used_ratio": (memory.total - memory.available) / memory.total,
        "swap_used_bytes": float(swap.used),
    }
    if swap.total > 0:
        signals["swap_used_ratio"] = swap.used / swap.total
    return signals
