"""How hard the kernel finds it to keep memory: macOS pressure level, Linux PSI."""

from __future__ import annotations

import asyncio
import pathlib
from typing import TYPE_CHECKING

from probe.collectors.commands import run_command

if TYPE_CHECKING:
    from probe.collectors import Collector, Signals

PRESSURE_LEVELS = {1: "normal", 2: "warn", 4: "critical"}
PSI_PATH = pathlib.Path("/proc/pressure/memory")


def parse_pressure_level(text: str) -> Signals:
    """`sysctl -n kern.memorystatus_vm_pressure_level` output (1, 2 or 4) as a signal."""
    level = int(text.strip())
    if level not in PRESSURE_LEVELS:
        raise ValueError(f"unexpected memory pressure level {level}")
    return {"memory_pressure_level": float(level)}


def parse_psi(text: str) -> Signals:
    """`avg10` of the `some` and `full` lines of a PSI file, in percent as the file has them."""
    signals: Signals = {}
    for line in text.splitlines():
        kind, _, fields = line.partition(" ")
        values = dict(field.split("=", 1) for field in fields.split() if "=" in field)
        if kind in {"some", "full"} and "avg10" in values:
            signals[f"memory_psi_{kind}_avg10"] = float(values["avg10"])
    if "memory_psi_some_avg10" not in signals:
        raise ValueError("no 'some avg10=' line in the PSI file")
    return signals


class MacPressureCollector:
    """The kernel's memory pressure level on macOS: 1 normal, 2 warn, 4 critical."""

    name = "memory_pressure"

    async def collect(self) -> Signals:
        """Ask sysctl for the level."""
        output = await run_command("sysctl", "-n", "kern.memorystatus_vm_pressure_level")
        return parse_pressure_level(output)


class LinuxPressureCollector:
    """Linux pressure stall information for memory (`/proc/pressure/memory`)."""

    name = "memory_pressure"

    def __init__(self, path: pathlib.Path = PSI_PATH) -> None:
        self._path = path

    async def collect(self) -> Signals:
        """Read and parse the PSI file."""
        return parse_psi(await asyncio.to_thread(self._path.read_text))


def pressure_collector(system: str) -> Collector | None:
    """The pressure source of this operating system (`platform.system()`), if it has one."""
    if system == "Darwin":
        return MacPressureCollector()
    if system == "Linux":
        return LinuxPressureCollector()
    return None
