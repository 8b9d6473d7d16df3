"""Apple GPU use from `ioreg -c IOAccelerator` (no root needed), parsed as plain text."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from probe.collectors.commands import run_command

if TYPE_CHECKING:
    from probe.collectors import Signals

IOREG = ("ioreg", "-r", "-d", "1", "-w", "0", "-c", "IOAccelerator")
STATISTICS = '"PerformanceStatistics" = {'
# Exact keys only: "In use system memory (driver)" sits right before "In use system memory".
MEMORY_SIGNALS = {
    "In use system memory": "gpu_memory_used_bytes",
    "Alloc system memory": "gpu_memory_alloc_bytes",
}
NUMBER_ENTRY = re.compile(r'"([^"]+)"\s*=\s*(\d+(?:\.\d+)?)\s*(?=[,}])')


def statistics_dictionaries(text: str) -> list[dict[str, float]]:
    """The numeric entries of each accelerator's PerformanceStatistics dictionary."""
    found = []
    start = text.find(STATISTICS)
    while start != -1:
        body_start = start + len(STATISTICS) - 1
        body = _braced(text, body_start)
        found.append({key: float(value) for key, value in NUMBER_ENTRY.findall(body)})
        start = text.find(STATISTICS, body_start + len(body))
    return found


def _braced(text: str, start: int) -> str:
    """The `{...}` starting at `start`, braces inside quoted strings ignored."""
    depth, quoted = 0, False
    for index in range(start, len(text)):
        char = text[index]
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "{}":
            depth += 1 if char == "{" else -1
            if depth == 0:
                return text[start : index + 1]
    raise ValueError("PerformanceStatistics dictionary is cut off")


def parse_ioreg(text: str) -> Signals:
    """GPU signals from ioreg output: busiest accelerator's use, memory summed over all."""
    dictionaries = statistics_dictionaries(text)
    if not dictionaries:
        raise ValueError("no PerformanceStatistics in the ioreg output")
    signals: Signals = {}
    utilizations = [_utilization(stats) for stats in dictionaries]
    if known := [value for value in utilizations if value is not None]:
        signals["gpu_utilization_ratio"] = max(known)
    for key, signal in MEMORY_SIGNALS.items():
        if values := [stats[key] for stats in dictionaries if key in stats]:
            signals[signal] = sum(values)
    return signals


def _utilization(stats: dict[str, float]) -> float | None:
    percent = stats.get("Device Utilization %")
    return percent / 100 if percent is not None and 0 <= percent <= 100 else None


class MacGpuCollector:
    """GPU utilisation and memory of Apple GPUs."""

    name = "gpu"

    async def collect(self) -> Signals:
        """Run ioreg and parse its PerformanceStatistics."""
        return parse_ioreg(await run_command(*IOREG))
