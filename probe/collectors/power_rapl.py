"""Intel and AMD CPU energy from RAPL, through Linux powercap: `/sys/class/powercap`.

Each zone (`intel-rapl:0`, and its subzones `intel-rapl:0:0`, ...) has `name`, `energy_uj`
(a counter in microjoules) and `max_energy_range_uj`, where the counter wraps to 0: at 100 W a
common 262 kJ range wraps in under an hour, so the account adds across the wrap. AMD CPUs
(family 17h and later) appear under the same `intel-rapl` names. The MMIO twin of package 0
(`intel-rapl-mmio:0`) counts the same energy and is skipped.

`energy_uj` is readable by root only since Linux 5.10 and the stable fixes for CVE-2020-8694
(PLATYPUS: the counter leaked what other processes computed). The probe must run as root to
use RAPL; infra/probe/README.md says how. Unreadable, the source fails with that reason.

Components: `package` (every socket), `cpu` (the cores), `uncore` (the integrated GPU on
client chips), `dram`, `psys` (the whole platform, on laptops). `total` is `psys` where the
platform has it, else packages plus DRAM (DRAM is outside the package domain).
"""

from __future__ import annotations

import asyncio
import pathlib
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probe.collectors.power import TOTAL, Channel

if TYPE_CHECKING:
    from collections.abc import Callable

POWERCAP = pathlib.Path("/sys/class/powercap")
ZONE = re.compile(r"^intel-rapl:\d+(:\d+)?$")  # the flat links powercap keeps for every zone
COMPONENTS = {"core": "cpu", "uncore": "uncore", "dram": "dram", "psys": "psys"}
ROOT_ONLY = (
    "RAPL energy_uj is readable by root only (CVE-2020-8694): run the probe as root"
    " (infra/probe/README.md, RAPL)"
)


class RaplUnavailable(Exception):
    """No RAPL zone here, or its counters cannot be read."""


@dataclass(frozen=True, slots=True)
class Zone:
    """One powercap zone: where its counter is, what it counts for, where it wraps."""

    key: str
    energy: pathlib.Path
    components: tuple[str, ...]
    wraps_at: float | None


def find_zones(root: pathlib.Path = POWERCAP) -> list[Zone]:
    """The RAPL zones under `root`, each with its components; raises when there are none."""
    named = [(path, _read_text(path / "name")) for path in _zone_paths(root)]
    has_psys = any(name == "psys" for _, name in named)
    zones = [_zone(path, name, has_psys=has_psys) for path, name in named]
    if not zones:
        raise RaplUnavailable(f"no RAPL zone under {root}")
    return zones


def _zone_paths(root: pathlib.Path) -> list[pathlib.Path]:
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise RaplUnavailable(f"cannot list {root}: {exc.strerror}") from None
    return [path for path in entries if ZONE.match(path.name) and (path / "energy_uj").exists()]


def _zone(path: pathlib.Path, name: str, *, has_psys: bool) -> Zone:
    component = "package" if name.startswith("package") else COMPONENTS.get(name, name)
    in_total = component == "psys" if has_psys else component in {"package", "dram"}
    components = (component, TOTAL) if in_total else (component,)
    wraps_uj = _read_number(path / "max_energy_range_uj")
    wraps_at = wraps_uj / 1e6 if wraps_uj is not None else None
    return Zone(path.name, path / "energy_uj", components, wraps_at)


def read_zones(zones: list[Zone], clock: Callable[[], float] = time.monotonic) -> list[Channel]:
    """One reading of every zone's counter."""
    channels = []
    for zone in zones:
        try:
            microjoules = int(zone.energy.read_text())
        except PermissionError:
            raise RaplUnavailable(ROOT_ONLY) from None
        channels.append(
            Channel(zone.key, zone.components, microjoules / 1e6, clock(), zone.wraps_at)
        )
    return channels


def rapl_readable(root: pathlib.Path = POWERCAP) -> bool:
    """Whether RAPL zones exist here and this process may read them: how `auto` decides."""
    try:
        read_zones(find_zones(root))
    except (RaplUnavailable, OSError, ValueError):
        return False
    return True


class RaplPowerSource:
    """Reads every RAPL zone in a worker thread (sysfs reads block)."""

    name = "rapl"

    def __init__(self, root: pathlib.Path = POWERCAP) -> None:
        self._root = root
        self._zones: list[Zone] | None = None

    async def read(self) -> list[Channel]:
        """Every zone's counter; zones are found on first use, and again after a failure."""
        try:
            if self._zones is None:
                self._zones = await asyncio.to_thread(find_zones, self._root)
            return await asyncio.to_thread(read_zones, self._zones)
        except (OSError, ValueError):
            self._zones = None  # a zone that went away: look again next time
            raise

    async def aclose(self) -> None:
        """Nothing runs in the background."""


def _read_text(path: pathlib.Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return path.name


def _read_number(path: pathlib.Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None
