"""NVIDIA GPU energy through NVML (`nvidia-ml-py`), one channel per GPU, as the `gpu` component.

`nvmlDeviceGetTotalEnergyConsumption` is a counter in millijoules since the driver was last
loaded (Volta and newer). Where a GPU does not support it (NVML says NotSupported), its power
(`nvmlDeviceGetPowerUsage`, milliwatts, the driver's average over about a second) is sampled at
each reading and integrated here with the trapezoid rule: that misses what changes faster than
the probe's interval, so such GPUs count less exactly than those with the counter.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from probe.collectors.gpu_nvidia import NvmlUnavailable, open_nvml
from probe.collectors.power import TOTAL, Channel

if TYPE_CHECKING:
    from collections.abc import Callable

COMPONENTS = ("gpu", TOTAL)


class PowerIntegral:
    """Joules from power samples: trapezoids between consecutive samples of each key."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}  # key -> (time, watts)
        self._joules: dict[str, float] = {}

    def add(self, key: str, watts: float, at: float) -> float:
        """Take a sample; the energy integrated so far for `key`."""
        if (last := self._last.get(key)) is not None:
            then, last_watts = last
            self._joules[key] = self._joules.get(key, 0.0) + (watts + last_watts) / 2 * (at - then)
        self._last[key] = (at, watts)
        return self._joules.get(key, 0.0)


class NvidiaEnergyReader:
    """Reads each GPU's counter, or its power where it has no counter; runs in a worker thread."""

    def __init__(self, nvml: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._nvml = nvml
        self._clock = clock
        self._no_counter: set[int] = set()
        self._integral = PowerIntegral()

    def read(self) -> list[Channel]:
        """One channel per GPU."""
        count = self._nvml.nvmlDeviceGetCount()
        if count == 0:
            raise NvmlUnavailable("NVML reports no GPU")
        return [self._device(index) for index in range(count)]

    def _device(self, index: int) -> Channel:
        handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
        key = f"nvidia{index}"
        if index not in self._no_counter:
            try:
                millijoules = self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                return Channel(key, COMPONENTS, millijoules / 1000, self._clock())
            except self._nvml.NVMLError_NotSupported:
                self._no_counter.add(index)  # older GPUs: ask once, then sample power
        now = self._clock()
        watts = self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000
        joules = self._integral.add(key, watts, now)
        return Channel(key, COMPONENTS, joules, now, from_zero=True)


class NvidiaPowerSource:
    """NVML opened on first use (and again after it failed); calls run in a thread."""

    name = "nvidia"

    def __init__(
        self,
        open_library: Callable[[], Any] = open_nvml,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_library = open_library
        self._clock = clock
        self._reader: NvidiaEnergyReader | None = None

    async def read(self) -> list[Channel]:
        """Every GPU's channel."""
        if self._reader is None:
            nvml = await asyncio.to_thread(self._open_library)
            self._reader = NvidiaEnergyReader(nvml, self._clock)
        return await asyncio.to_thread(self._reader.read)

    async def aclose(self) -> None:
        """NVML stays initialised for the GPU collector; nothing to stop."""


def nvml_has_gpus(open_library: Callable[[], Any] = open_nvml) -> bool:
    """Whether NVML starts and sees a GPU: how `LLMGW_PROBE_POWER_SOURCE=auto` decides."""
    try:
        return int(open_library().nvmlDeviceGetCount()) > 0
    except Exception:  # NvmlUnavailable, or an NVMLError of the count: no usable GPU
        return False
