"""NVIDIA GPU use through NVML (the `nvidia-ml-py` package, imported only when asked for)."""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from probe.collectors import Signals


class NvmlUnavailable(Exception):
    """nvidia-ml-py is not installed, or NVML does not start (no driver, no GPU)."""


def open_nvml() -> Any:
    """The initialised `pynvml` module; raises NvmlUnavailable when there is none."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        raise NvmlUnavailable("nvidia-ml-py is not installed") from None
    try:
        nvml.nvmlInit()
    except Exception as exc:  # pynvml.NVMLError, but the module may be a stand-in
        raise NvmlUnavailable(f"NVML did not start: {exc}") from None
    return nvml


def read_devices(nvml: Any) -> Signals:
    """Busiest device's utilisation; memory used and total summed over all devices."""
    utilizations, used, total = [], 0.0, 0.0
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        utilizations.append(float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        used, total = used + float(memory.used), total + float(memory.total)
    if not utilizations:
        raise ValueError("NVML reports no GPU")
    signals = {"gpu_utilization_ratio": max(utilizations) / 100, "gpu_memory_used_bytes": used}
    if total > 0:
        signals |= {"gpu_memory_total_bytes": total, "gpu_memory_used_ratio": used / total}
    return signals


class NvidiaGpuCollector:
    """GPU utilisation and memory of NVIDIA GPUs; NVML calls run in a thread."""

    name = "gpu"

    def __init__(self, open_library: Callable[[], Any] = open_nvml) -> None:
        self._open_library = open_library
        self._nvml: Any = None

    async def collect(self) -> Signals:
        """Read every device; opens NVML on first use (and again after it failed)."""
        if self._nvml is None:
            self._nvml = await asyncio.to_thread(self._open_library)
        return await asyncio.to_thread(read_devices, self._nvml)


def nvml_available(open_library: Callable[[], Any] = open_nvml) -> bool:
    """Whether NVML starts here: how `LLMGW_PROBE_GPU=auto` decides on NVIDIA."""
    try:
        open_library()
    except NvmlUnavailable:
        return False
    return True
