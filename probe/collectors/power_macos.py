"""Apple Silicon power: `macmon` (no root) or `powermetrics` (root), each run as a sampler.

Both read the same source, the SoC's IOReport "Energy Model" counters: `powermetrics` is
Apple's tool and needs root; `macmon` (github.com/vladkens/macmon, `brew install macmon`) reads
the counters through the same private API without root, and adds DRAM power and the system's
total from the SMC (`sys_power`, key PSTR). Under `auto` the probe prefers macmon: the probe
keeps running as the user's LaunchAgent, and `total` covers the whole machine rather than CPU +
GPU + ANE. powermetrics is taken when macmon is missing and the probe runs as root (as a
LaunchDaemon, infra/probe/README.md).

Components: `cpu`, `gpu`, `ane`, `dram` (macmon only) and `total`: macmon's `sys_power` where
the SMC has it, else CPU + GPU + ANE + DRAM; powermetrics' `combined_power` (CPU + GPU + ANE).
"""

from __future__ import annotations

import json
import math
import os
import re
from functools import partial
from typing import TYPE_CHECKING

from probe.collectors.power import TOTAL
from probe.collectors.power_stream import (
    PowerSample,
    Sampler,
    find_command,
    read_line,
    read_plist,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from probe.collectors.power import Channel

# The sampler's own window: at most a second, so power follows load closely.
MAX_SAMPLE_SECONDS = 1.0
STALE_WINDOWS = 5  # this many windows without a sample: the sampler counts as failed
MACMON_WATTS = {"cpu_power": "cpu", "gpu_power": "gpu", "ane_power": "ane", "ram_power": "dram"}
POWERMETRICS_MILLIWATTS = {"cpu_power": "cpu", "gpu_power": "gpu", "ane_power": "ane"}
PLIST_NUMBER = re.compile(
    rb"<key>(elapsed_ns|cpu_power|gpu_power|ane_power|combined_power)</key>\s*"
    rb"<(?:real|integer)>([^<]+)</(?:real|integer)>"
)


def parse_macmon(line: bytes, seconds: float) -> PowerSample:
    """One `macmon pipe` line (watts) as a sample over `seconds`, macmon's `-i` interval."""
    document = json.loads(line)
    watts = {name: _watts(document[key]) for key, name in MACMON_WATTS.items() if key in document}
    if "cpu" not in watts or "gpu" not in watts:
        raise ValueError("no cpu_power and gpu_power in the macmon sample")
    system = _watts(document.get("sys_power", 0.0))
    watts[TOTAL] = system if system > 0 else sum(watts.values())
    return PowerSample(watts, seconds)


def parse_powermetrics(document: bytes) -> PowerSample:
    """One plist of `powermetrics -f plist` (milliwatts, window `elapsed_ns`) as a sample.

    Read by a scan for the five keys, not with plistlib: a whole sample is 80 KB of XML even
    with only our samplers (every cluster's and core's frequency states), and plistlib takes
    5-10 ms to build it, about 1 % of a core at one sample a second, the probe's whole budget;
    the scan takes 0.2 ms. It is exact because each of these keys appears once in the document
    (the clusters, cores and GPU use other names), and a document where one appears twice is
    refused rather than guessed at. tests/probe check it against plistlib on a real sample.
    """
    if b"<plist" not in document:
        raise ValueError("not a plist")
    found: dict[str, float] = {}
    for key, value in PLIST_NUMBER.findall(document):
        name = key.decode()
        if name in found:
            raise ValueError(f"{name} appears twice in the powermetrics sample")
        found[name] = float(value)
    if "elapsed_ns" not in found or "cpu_power" not in found:
        raise ValueError("no elapsed_ns and cpu_power in the powermetrics sample")
    watts = {
        name: _watts(found[key]) / 1000
        for key, name in POWERMETRICS_MILLIWATTS.items()
        if key in found
    }
    combined = found.get("combined_power")
    watts[TOTAL] = _watts(combined) / 1000 if combined is not None else sum(watts.values())
    return PowerSample(watts, found["elapsed_ns"] / 1e9)


def _watts(value: object) -> float:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"power {value!r} is not a finite non-negative number")
    return number


def sample_milliseconds(interval: float) -> int:
    """The sampler's window for a probe interval (seconds)."""
    return max(100, round(min(interval, MAX_SAMPLE_SECONDS) * 1000))


class MacmonPowerSource:
    """`macmon pipe -i <ms>`, one JSON sample a line."""

    name = "macmon"

    def __init__(self, interval: float) -> None:
        milliseconds = sample_milliseconds(interval)
        self.sampler = Sampler(
            ["macmon", "pipe", "-i", str(milliseconds)],
            record=read_line,
            parse=partial(parse_macmon, seconds=milliseconds / 1000),
            stale_after=STALE_WINDOWS * milliseconds / 1000 + interval,
        )

    async def read(self) -> list[Channel]:
        """The energy sampled so far."""
        return await self.sampler.read()

    async def aclose(self) -> None:
        """Stop macmon."""
        await self.sampler.aclose()


class PowermetricsPowerSource:
    """`powermetrics --samplers cpu_power,gpu_power -f plist -i <ms>` (root only)."""

    name = "powermetrics"

    def __init__(self, interval: float) -> None:
        milliseconds = sample_milliseconds(interval)
        argv = ["powermetrics", "--samplers", "cpu_power,gpu_power", "-f", "plist"]
        self.sampler = Sampler(
            [*argv, "-i", str(milliseconds)],
            record=read_plist,
            parse=parse_powermetrics,
            stale_after=STALE_WINDOWS * milliseconds / 1000 + interval,
        )

    async def read(self) -> list[Channel]:
        """The energy sampled so far."""
        return await self.sampler.read()

    async def aclose(self) -> None:
        """Stop powermetrics."""
        await self.sampler.aclose()


def macos_source_name(
    *,
    has_macmon: Callable[[], bool] = lambda: find_command("macmon") is not None,
    is_root: Callable[[], bool] = lambda: os.geteuid() == 0,
) -> str:
    """`auto` on a Mac: macmon if installed, else powermetrics as root, else none."""
    if has_macmon():
        return "macmon"
    return "powermetrics" if is_root() else "none"
