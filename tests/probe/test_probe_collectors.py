"""Collector failures (missing binary, garbage, hanging) become unknown with a reason, never 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import shutil
import time
from typing import TYPE_CHECKING

import psutil  # type: ignore[import-untyped]
import pytest

from probe.collectors.gpu_macos import MacGpuCollector
from probe.collectors.memory import MemoryCollector
from probe.collectors.memory_pressure import LinuxPressureCollector, MacPressureCollector
from probe.runner import CollectorRunner

if TYPE_CHECKING:
    from probe.collectors import Signals

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
HANG_SECONDS = "61.2345"  # unusual, so the test finds exactly its own process


def fake_command(directory: pathlib.Path, name: str, body: str) -> None:
    """An executable shell script called `name` in `directory`."""
    script = directory / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """An empty directory that is the whole PATH: no sysctl, no ioreg unless a test adds one."""
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


def test_missing_binary_is_unknown_with_a_reason(
    bin_dir: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No sysctl on PATH: the collector is unknown, and the log says why."""
    runner = CollectorRunner(MacPressureCollector(), timeout=5)
    assert asyncio.run(runner.run()) is None
    assert runner.up is False
    assert "sysctl is not installed" in caplog.text


def test_garbage_output_is_unknown_not_zero(bin_dir: pathlib.Path) -> None:
    """An ioreg printing something else gives no signals at all."""
    fake_command(bin_dir, "ioreg", "echo 'nothing to see'")
    runner = CollectorRunner(MacGpuCollector(), timeout=5)
    assert asyncio.run(runner.run()) is None
    assert runner.reason is not None
    assert "PerformanceStatistics" in runner.reason


def test_failing_command_is_unknown(bin_dir: pathlib.Path) -> None:
    """A sysctl that exits with an error (unknown oid on Linux) is unknown, with its message."""
    fake_command(bin_dir, "sysctl", "echo 'sysctl: unknown oid' >&2; exit 1")
    runner = CollectorRunner(MacPressureCollector(), timeout=5)
    assert asyncio.run(runner.run()) is None
    assert runner.reason is not None
    assert "unknown oid" in runner.reason


def test_recorded_output_through_the_real_command_path(bin_dir: pathlib.Path) -> None:
    """A stand-in ioreg printing a recorded capture is read through the subprocess path."""
    cat = shutil.which("cat", path=os.defpath) or "/bin/cat"
    fake_command(bin_dir, "ioreg", f"exec {cat} '{FIXTURES / 'ioreg-apple-m4.txt'}'")
    signals = asyncio.run(CollectorRunner(MacGpuCollector(), timeout=5).run())
    assert signals is not None
    assert signals["gpu_utilization_ratio"] == pytest.approx(0.17)


def test_hanging_command_times_out_and_is_killed(bin_dir: pathlib.Path) -> None:
    """An ioreg that never answers is unknown after the time limit, and its process is gone."""
    sleep = shutil.which("sleep", path=os.defpath) or "/bin/sleep"
    fake_command(bin_dir, "ioreg", f"exec {sleep} {HANG_SECONDS}")
    runner = CollectorRunner(MacGpuCollector(), timeout=0.5)
    assert asyncio.run(runner.run()) is None
    assert runner.reason == "no answer within 0.5 s"
    assert _hung_commands(bin_dir) == []


def _hung_commands(bin_dir: pathlib.Path) -> list[str]:
    """Our children still running the fake ioreg, before or after its exec of sleep."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if str(bin_dir) in command or HANG_SECONDS in command:
                found.append(command)
    return found


def test_a_reason_is_logged_once_per_change(
    bin_dir: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Failing every interval logs once; recovering logs once; failing again logs again."""
    runner = CollectorRunner(MacPressureCollector(), timeout=5)
    with caplog.at_level(logging.INFO, logger="probe.collectors"):
        for _ in range(3):
            asyncio.run(runner.run())
        fake_command(bin_dir, "sysctl", "echo 2")
        assert asyncio.run(runner.run()) == {"memory_pressure_level": 2.0}
        asyncio.run(runner.run())
        (bin_dir / "sysctl").unlink()
        asyncio.run(runner.run())
    unknown = "collector memory_pressure is unknown: CommandFailed: sysctl is not installed"
    messages = [record.getMessage().removesuffix(" or not on PATH") for record in caplog.records]
    assert messages == [unknown, "collector memory_pressure is back", unknown]


def test_missing_psi_file_is_unknown(tmp_path: pathlib.Path) -> None:
    """A kernel without PSI gives no memory_psi signals, and says why."""
    runner = CollectorRunner(LinuxPressureCollector(tmp_path / "absent"), timeout=5)
    assert asyncio.run(runner.run()) is None
    assert runner.reason is not None
    assert "FileNotFoundError" in runner.reason


def test_psi_file_is_read() -> None:
    """A PSI file is read through the collector."""
    collector = LinuxPressureCollector(FIXTURES / "psi-memory-thrashing.txt")
    assert asyncio.run(collector.collect())["memory_psi_full_avg10"] == 12.80


def test_memory_collector_reads_this_machine() -> None:
    """psutil readings are ratios between 0 and 1, and swap bytes are not negative."""
    signals = asyncio.run(MemoryCollector().collect())
    assert 0 < signals["memory_used_ratio"] < 1
    assert 0 <= signals["cpu_ratio"] <= 1
    assert signals["swap_used_bytes"] >= 0
    assert 0 <= signals.get("swap_used_ratio", 0) <= 1


def test_cpu_ratio_sees_a_busy_core() -> None:
    """CPU use measured across the collector's window includes a core kept busy meanwhile."""
    collector = MemoryCollector()

    def spin(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pass

    async def scenario() -> Signals:
        await asyncio.to_thread(spin, 0.3)
        return await collector.collect()

    assert asyncio.run(scenario())["cpu_ratio"] > 0.5 / (psutil.cpu_count() or 1)
