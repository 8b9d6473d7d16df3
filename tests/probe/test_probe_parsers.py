"""Parsers of the probe's sources, on recorded real output (see fixtures/README.md)."""

from __future__ import annotations

import asyncio
import pathlib
from types import SimpleNamespace
from typing import Any

import pytest

from probe.collectors.gpu_macos import parse_ioreg
from probe.collectors.gpu_nvidia import NvidiaGpuCollector, NvmlUnavailable, nvml_available
from probe.collectors.gpu_sim import parse_sim_stats
from probe.collectors.memory_pressure import parse_pressure_level, parse_psi

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
MIB = 1024 * 1024


def fixture(name: str) -> str:
    """The text of a recorded output."""
    return (FIXTURES / name).read_text()


def test_ioreg_on_an_m4_reads_device_utilization_and_both_memory_figures() -> None:
    """Device Utilization % (not Tiler or Renderer) and both memory counters are read."""
    assert parse_ioreg(fixture("ioreg-apple-m4.txt")) == {
        "gpu_utilization_ratio": pytest.approx(0.17),
        "gpu_memory_used_bytes": 430571520,
        "gpu_memory_alloc_bytes": 4597121024,
    }


def test_ioreg_ignores_the_driver_counter_and_legend_channel_names() -> None:
    """'In use system memory (driver)' and names in IOReportLegend never feed a value."""
    signals = parse_ioreg(fixture("ioreg-apple-m1max-generating.txt"))
    assert signals["gpu_memory_used_bytes"] == 19327352832
    assert signals["gpu_memory_alloc_bytes"] == 33285996544
    assert signals["gpu_utilization_ratio"] == pytest.approx(0.87)


def test_ioreg_with_a_loaded_model_at_rest_reports_zero_use_not_unknown() -> None:
    """An idle GPU is a measured 0 % use, with the model's memory still allocated."""
    signals = parse_ioreg(fixture("ioreg-apple-m1pro-model-loaded-idle.txt"))
    assert signals["gpu_utilization_ratio"] == 0
    assert signals["gpu_memory_alloc_bytes"] == 21343043584


def test_ioreg_without_utilization_leaves_it_unknown() -> None:
    """A GPU that publishes only memory (as virtual Macs do) has no utilisation signal."""
    text = fixture("ioreg-apple-m4.txt").replace('"Device Utilization %"=17,', "")
    assert "gpu_utilization_ratio" not in parse_ioreg(text)


def test_ioreg_utilization_out_of_range_is_unknown() -> None:
    """A percentage above 100 is not believed."""
    text = fixture("ioreg-apple-m4.txt").replace('Utilization %"=17', 'Utilization %"=250')
    assert "gpu_utilization_ratio" not in parse_ioreg(text)


def test_ioreg_with_two_accelerators_takes_the_busiest_and_sums_memory() -> None:
    """Two GPUs: the busier one's utilisation, memory of both together."""
    both = fixture("ioreg-apple-m4.txt") + fixture("ioreg-apple-m1max-generating.txt")
    signals = parse_ioreg(both)
    assert signals["gpu_utilization_ratio"] == pytest.approx(0.87)
    assert signals["gpu_memory_used_bytes"] == 430571520 + 19327352832


@pytest.mark.parametrize(
    "garbage",
    ["", "ioreg: no such class\n", fixture("psi-memory-idle.txt")],
    ids=["empty", "error-text", "other-file"],
)
def test_ioreg_garbage_is_an_error_not_zero(garbage: str) -> None:
    """Output without a PerformanceStatistics dictionary raises instead of reading as 0."""
    with pytest.raises(ValueError, match="PerformanceStatistics"):
        parse_ioreg(garbage)


def test_ioreg_cut_off_mid_dictionary_is_an_error() -> None:
    """Truncated output is refused rather than half read."""
    text = fixture("ioreg-apple-m4.txt")
    cut = text[: text.index('"Device Utilization %"=1') + 24]
    with pytest.raises(ValueError, match="cut off"):
        parse_ioreg(cut)


@pytest.mark.parametrize(("output", "level"), [("1\n", 1.0), ("2\n", 2.0), ("4\n", 4.0)])
def test_sysctl_pressure_levels(output: str, level: float) -> None:
    """macOS pressure levels 1, 2 and 4 become memory_pressure_level."""
    assert parse_pressure_level(output) == {"memory_pressure_level": level}


@pytest.mark.parametrize("output", ["", "3\n", "normal\n", "sysctl: unknown oid\n"])
def test_sysctl_pressure_garbage_is_an_error(output: str) -> None:
    """Anything but 1, 2 or 4 raises."""
    with pytest.raises(ValueError):  # noqa: PT011 - int() and the range check both raise it
        parse_pressure_level(output)


def test_psi_idle() -> None:
    """An idle host's PSI file reads as measured zeros."""
    assert parse_psi(fixture("psi-memory-idle.txt")) == {
        "memory_psi_some_avg10": 0.0,
        "memory_psi_full_avg10": 0.0,
    }


def test_psi_thrashing_keeps_percent_values() -> None:
    """avg10 of 'some' and 'full' are kept in percent, as the file has them."""
    assert parse_psi(fixture("psi-memory-thrashing.txt")) == {
        "memory_psi_some_avg10": 31.47,
        "memory_psi_full_avg10": 12.80,
    }


def test_psi_garbage_is_an_error() -> None:
    """A file without a 'some avg10=' line raises."""
    with pytest.raises(ValueError, match="some avg10"):
        parse_psi(fixture("ioreg-apple-m4.txt"))


def test_sim_stats_busy_slots_as_utilization() -> None:
    """The simulator's busy slots over its slots stand in for GPU utilisation."""
    stats = {"busy_slots": 3, "slots": 4, "queued": 2, "active": 5}
    assert parse_sim_stats(stats) == {"gpu_utilization_ratio": 0.75, "sim_queued": 2.0}


def fake_nvml(*, utilizations: list[int], used_mib: int, total_mib: int) -> Any:
    """A stand-in for the pynvml module: only the calls the collector makes."""
    return SimpleNamespace(
        nvmlDeviceGetCount=lambda: len(utilizations),
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetUtilizationRates=lambda handle: SimpleNamespace(gpu=utilizations[handle]),
        nvmlDeviceGetMemoryInfo=lambda _handle: SimpleNamespace(
            used=used_mib * MIB, total=total_mib * MIB, free=(total_mib - used_mib) * MIB
        ),
    )


def test_nvidia_reads_utilization_and_memory() -> None:
    """One RTX 4090: utilisation, memory used, total and their ratio."""
    nvml = fake_nvml(utilizations=[37], used_mib=2048, total_mib=24564)
    signals = asyncio.run(NvidiaGpuCollector(lambda: nvml).collect())
    assert signals == {
        "gpu_utilization_ratio": pytest.approx(0.37),
        "gpu_memory_used_bytes": 2048 * MIB,
        "gpu_memory_total_bytes": 24564 * MIB,
        "gpu_memory_used_ratio": pytest.approx(2048 / 24564),
    }


def test_nvidia_with_two_gpus_takes_the_busiest() -> None:
    """Several GPUs: the busiest one's utilisation, memory summed."""
    nvml = fake_nvml(utilizations=[5, 90], used_mib=1000, total_mib=8000)
    signals = asyncio.run(NvidiaGpuCollector(lambda: nvml).collect())
    assert signals["gpu_utilization_ratio"] == pytest.approx(0.90)
    assert signals["gpu_memory_used_bytes"] == 2000 * MIB


def test_nvidia_missing_library_is_unavailable() -> None:
    """Without nvidia-ml-py (or a driver), NVML counts as unavailable, not as an idle GPU."""

    def missing() -> Any:
        raise NvmlUnavailable("nvidia-ml-py is not installed")

    assert nvml_available(missing) is False
    with pytest.raises(NvmlUnavailable):
        asyncio.run(NvidiaGpuCollector(missing).collect())


def test_nvidia_is_unavailable_on_a_host_without_it() -> None:
    """Here (no nvidia-ml-py or no driver) the real loader says unavailable instead of failing."""
    assert nvml_available() is False
