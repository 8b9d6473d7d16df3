"""What the probe's power sampling costs its own process, per source (issue 20's goal: at most
1 % of one core at a 1 s interval). Each source is read the way the agent reads it, many times
in a row, and the process CPU time (every thread: NVML and RAPL read in worker threads) is
divided by the readings: at one reading a second, that is the share of a core.

- sim: `GET /_sim/stats` of a real sim process;
- rapl: a sysfs-shaped tree of four zones in a temporary folder (real sysfs reads cost about
  the same: small files);
- macmon / powermetrics: a stand-in command prints the recorded samples (tests/probe/fixtures)
  as fast as the pipe takes them, and the probe's sampler reads, parses and counts each; a real
  sampler prints one a second, plus one reading of the totals a second. powermetrics is shown
  with the samplers the probe asks for (`cpu_power,gpu_power`: the recorded plist without its
  tasks, disk and thermal parts) and as recorded with every sampler;
- nvidia: the NVML calls faked (no GPU here): the probe's side of it only.

The samplers' own processes (macmon, powermetrics) are not the probe's and are not counted.

    PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/probe_power.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import plistlib
import shlex
import tempfile
import time
from typing import TYPE_CHECKING

import httpx
import pynvml  # type: ignore[import-untyped]  # no stubs in nvidia-ml-py
from goals import Goal
from processes import GATEWAY_CPU, sim_server

from probe.collectors.power import PowerCollector
from probe.collectors.power_macos import MacmonPowerSource, PowermetricsPowerSource
from probe.collectors.power_nvidia import NvidiaPowerSource
from probe.collectors.power_rapl import RaplPowerSource
from probe.collectors.power_sim import SimPowerSource

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator


FIXTURES = pathlib.Path(__file__).parents[1] / "probe" / "fixtures"
MACMON = FIXTURES / "macmon-pipe-apple-m1-8gb.jsonl"
POWERMETRICS = FIXTURES / "powermetrics-apple-m4max-mac16-5.plist"
READINGS = 500
SAMPLES = 1_000
GOAL_SHARE = 0.01  # of one core, at one reading (and one sample) a second


def cpu_seconds_per_call(calls: int, call: Callable[[], Awaitable[object]]) -> float:
    """Process CPU seconds per awaited call, after a few to warm up."""

    async def run() -> float:
        for _ in range(10):
            await call()
        started = time.process_time()
        for _ in range(calls):
            await call()
        return (time.process_time() - started) / calls

    return asyncio.run(run())


def sim_reading() -> float:
    """One `GET /_sim/stats` and its count."""
    with sim_server() as server:

        async def run() -> float:
            async with httpx.AsyncClient(base_url=server.url, trust_env=False) as client:
                collector = PowerCollector(SimPowerSource(client))
                started = time.process_time()
                for _ in range(READINGS):
                    await collector.collect()
                return (time.process_time() - started) / READINGS

        return asyncio.run(run())


def rapl_reading(folder: pathlib.Path) -> float:
    """Four zones read in a worker thread, and counted."""
    for name, label in (
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:0:0", "core"),
        ("intel-rapl:0:1", "uncore"),
        ("intel-rapl:0:2", "dram"),
    ):
        zone = folder / name
        zone.mkdir(parents=True)
        (zone / "name").write_text(label + "\n")
        (zone / "energy_uj").write_text("123456789\n")
        (zone / "max_energy_range_uj").write_text("262143328850\n")
    collector = PowerCollector(RaplPowerSource(folder))
    return cpu_seconds_per_call(READINGS, collector.collect)


def nvidia_reading() -> float:
    """Two GPUs through pynvml with the C calls faked: the probe's own share."""
    faked = {
        "nvmlInit": lambda: None,
        "nvmlDeviceGetCount": lambda: 2,
        "nvmlDeviceGetHandleByIndex": lambda index: index,
        "nvmlDeviceGetTotalEnergyConsumption": lambda handle: 5_000_000 + handle,
    }
    saved = {name: getattr(pynvml, name) for name in faked}
    for name, value in faked.items():
        setattr(pynvml, name, value)
    try:
        return cpu_seconds_per_call(READINGS, PowerCollector(NvidiaPowerSource()).collect)
    finally:
        for name, value in saved.items():
            setattr(pynvml, name, value)


def stand_in(folder: pathlib.Path, name: str, body: str) -> None:
    """An executable `name` in `folder` that runs `body`."""
    script = folder / name
    script.write_text("#!/bin/sh\n" + body + "\nexec sleep 600\n")
    script.chmod(0o755)


def sampler_second(source: MacmonPowerSource | PowermetricsPowerSource, samples: int) -> float:
    """CPU seconds of one sample plus one reading of the totals: what a second costs."""
    collector = PowerCollector(source)

    async def run() -> float:
        started = time.process_time()
        await collector.collect()  # starts the stand-in
        while source.sampler.energy.samples < samples:
            await asyncio.sleep(0.01)
        per_sample = (time.process_time() - started) / samples
        started = time.process_time()
        for _ in range(READINGS):
            await collector.collect()
        per_reading = (time.process_time() - started) / READINGS
        await collector.aclose()
        return per_sample + per_reading

    return asyncio.run(run())


def macmon_second(folder: pathlib.Path) -> float:
    """`macmon pipe` lines read, parsed and counted, and the totals read."""
    lines = len(MACMON.read_text().splitlines())
    repeats = SAMPLES // lines
    quoted = shlex.quote(str(MACMON))
    stand_in(
        folder, "macmon", f"i=0; while [ $i -lt {repeats} ]; do cat {quoted}; i=$((i+1)); done"
    )
    return sampler_second(MacmonPowerSource(interval=1.0), repeats * lines)


def powermetrics_second(folder: pathlib.Path, document: bytes, samples: int) -> float:
    """powermetrics plists, NUL between them, read, parsed and counted, and the totals read."""
    plist = folder / "sample.plist"
    plist.write_bytes(document)
    quoted = shlex.quote(str(plist))
    loop = f"i=0; while [ $i -lt {samples} ]; do cat {quoted}; printf '\\0'; i=$((i+1)); done"
    stand_in(folder, "powermetrics", loop)
    return sampler_second(PowermetricsPowerSource(interval=1.0), samples)


def probes_samplers_only() -> bytes:
    """The recorded plist as `--samplers cpu_power,gpu_power` prints it: without the parts of
    the other samplers (tasks, disk, thermal)."""
    sample = plistlib.loads(POWERMETRICS.read_bytes())
    for other in ("tasks", "all_tasks", "disk", "thermal_pressure"):
        sample.pop(other, None)
    return plistlib.dumps(sample)


@contextlib.contextmanager
def on_path() -> Iterator[pathlib.Path]:
    """A temporary folder first on PATH, for the stand-in samplers."""
    saved = os.environ["PATH"]
    with tempfile.TemporaryDirectory() as folder:
        os.environ["PATH"] = f"{folder}:{saved}"
        try:
            yield pathlib.Path(folder)
        finally:
            os.environ["PATH"] = saved


def measure() -> dict[str, float]:
    """CPU seconds per reading (polled sources) or per sample (samplers), by source."""
    results: dict[str, float] = {"sim": sim_reading(), "nvidia (calls faked)": nvidia_reading()}
    with tempfile.TemporaryDirectory() as folder:
        results["rapl"] = rapl_reading(pathlib.Path(folder) / "powercap")
    with on_path() as folder:
        results["macmon"] = macmon_second(folder)
        ours = probes_samplers_only()
        results["powermetrics (cpu_power,gpu_power)"] = powermetrics_second(folder, ours, 200)
        whole = POWERMETRICS.read_bytes()
        results["powermetrics (every sampler, as recorded)"] = powermetrics_second(
            folder, whole, 50
        )
    return results


def probe_power_goals(result: dict[str, float]) -> list[Goal]:
    """Issue 20's goal, per source: at most 1 % of one core at a 1 s interval."""
    return [
        Goal(f"probe power: {name}", GOAL_SHARE * 100, seconds * 100, "% of a core", "1 s")
        for name, seconds in result.items()
        if "every sampler" not in name  # the probe never asks for those
    ]


def table(result: dict[str, float]) -> str:
    """The results as a Markdown table."""
    header = "| source | CPU a second (a reading, or a sample and a reading) | share of a core |"
    rows = [header + " goal <= 1 % |", "|---|---|---|---|"]
    for name, seconds in result.items():
        share = seconds / 1.0
        verdict = "met" if share <= GOAL_SHARE else "**missed**"
        if "every sampler" in name:
            verdict = "(not what the probe runs)"
        rows.append(f"| {name} | {seconds * 1e3:.3f} ms | {share:.3%} | {verdict} |")
    return "\n".join(rows)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {GATEWAY_CPU})  # one core
    print(table(measure()))


if __name__ == "__main__":
    main()
