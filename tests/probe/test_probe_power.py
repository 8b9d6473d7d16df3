"""Power sources: real macmon and powermetrics output, NVML through the real nvidia-ml-py, RAPL
through a sysfs-shaped tree, and the probe's own totals across wraps and restarts."""

from __future__ import annotations

import asyncio
import json
import pathlib
import plistlib
import shlex
import time
from typing import TYPE_CHECKING, Any

import pynvml  # type: ignore[import-untyped]  # no stubs in nvidia-ml-py
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from probe.assembly import resolve_power_source
from probe.collectors.commands import CommandFailed
from probe.collectors.power import Channel, EnergyAccount, PowerCollector, increase
from probe.collectors.power_macos import (
    MacmonPowerSource,
    PowermetricsPowerSource,
    macos_source_name,
    parse_macmon,
    parse_powermetrics,
)
from probe.collectors.power_nvidia import NvidiaPowerSource, nvml_has_gpus
from probe.collectors.power_rapl import RaplPowerSource, find_zones, rapl_readable
from probe.metrics import ProbeMetrics
from probe.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Callable

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
MACMON = FIXTURES / "macmon-pipe-apple-m1-8gb.jsonl"
POWERMETRICS = FIXTURES / "powermetrics-apple-m4max-mac16-5.plist"


def macmon_lines() -> list[dict[str, Any]]:
    """The recorded `macmon pipe` samples as JSON objects."""
    return [json.loads(line) for line in MACMON.read_text().splitlines()]


def collect(collector: PowerCollector) -> dict[str, float]:
    """One reading of a collector, in a loop of its own."""
    return asyncio.run(collector.collect())


# --- macOS: real output -----------------------------------------------------------------------


def test_powermetrics_plist_gives_watts_whose_energy_matches_its_own_counters() -> None:
    """The real M4 Max plist: mW become W, and power x elapsed_ns equals the mJ it reports."""
    sample = parse_powermetrics(POWERMETRICS.read_bytes())
    processor = plistlib.loads(POWERMETRICS.read_bytes())["processor"]
    assert sample.seconds == pytest.approx(1.023685416)
    assert sample.watts["cpu"] * sample.seconds == pytest.approx(
        processor["cpu_energy"] / 1000, rel=1e-3
    )
    assert sample.watts["gpu"] * sample.seconds == pytest.approx(
        processor["gpu_energy"] / 1000, rel=2e-3
    )
    assert sample.watts["ane"] == 0.0
    assert sample.watts["total"] == pytest.approx(3.24807)
    parts = sample.watts["cpu"] + sample.watts["gpu"] + sample.watts["ane"]
    assert sample.watts["total"] == pytest.approx(parts, rel=1e-5)  # rounded as printed


def test_the_key_scan_reads_what_plistlib_reads() -> None:
    """The fast scan of the real sample gives exactly the numbers plistlib finds there."""
    raw = POWERMETRICS.read_bytes()
    whole = plistlib.loads(raw)
    sample = parse_powermetrics(raw)
    assert sample.seconds == whole["elapsed_ns"] / 1e9
    for key, component in (("cpu_power", "cpu"), ("gpu_power", "gpu"), ("ane_power", "ane")):
        assert sample.watts[component] == whole["processor"][key] / 1000
    assert sample.watts["total"] == whole["processor"]["combined_power"] / 1000


def test_a_power_key_twice_is_refused_not_guessed() -> None:
    """A powermetrics whose cores carried a `cpu_power` too: refused, not read wrong."""
    raw = POWERMETRICS.read_bytes()
    twice = raw.replace(b"<key>idle_ratio</key>", b"<key>cpu_power</key><real>1</real>", 1)
    with pytest.raises(ValueError, match="cpu_power appears twice"):
        parse_powermetrics(twice)


def test_powermetrics_plist_with_leading_nul_between_samples_parses() -> None:
    """powermetrics separates its documents with NUL: the second one starts with it."""
    sample = parse_powermetrics(b"\0\n" + POWERMETRICS.read_bytes())
    assert sample.watts["cpu"] == pytest.approx(2.97845)


def test_macmon_lines_take_the_system_total_and_dram() -> None:
    """Each real `macmon pipe` line: components in W, `total` is the SMC's system power."""
    for line, recorded in zip(MACMON.read_bytes().splitlines(), macmon_lines(), strict=True):
        sample = parse_macmon(line, seconds=0.5)
        assert sample.seconds == 0.5
        assert sample.watts["cpu"] == pytest.approx(recorded["cpu_power"])
        assert sample.watts["gpu"] == pytest.approx(recorded["gpu_power"])
        assert sample.watts["dram"] == recorded["ram_power"]
        assert sample.watts["total"] == pytest.approx(recorded["sys_power"])


def test_macmon_without_a_system_reading_sums_its_parts() -> None:
    """A Mac whose SMC gives no system power (sys_power 0): total = CPU + GPU + ANE + DRAM."""
    recorded = macmon_lines()[6] | {"sys_power": 0.0, "ram_power": 0.25}
    sample = parse_macmon(json.dumps(recorded).encode(), seconds=1.0)
    expected = recorded["all_power"] + 0.25
    assert sample.watts["total"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "line",
    [b"not json", b'{"gpu_power": 1.0}', b'{"cpu_power": -1, "gpu_power": 1}', b"[]"],
)
def test_macmon_garbage_is_refused(line: bytes) -> None:
    """Not a sample, no CPU power, or negative power: refused, never read as 0."""
    with pytest.raises((ValueError, TypeError, KeyError)):
        parse_macmon(line, seconds=1.0)


def test_powermetrics_garbage_is_refused() -> None:
    """Something that is not a powermetrics plist is refused."""
    with pytest.raises((ValueError, KeyError, plistlib.InvalidFileException)):
        parse_powermetrics(b"<?xml version='1.0'?><plist version='1.0'><dict/></plist>")


# --- macOS: the samplers run as processes -----------------------------------------------------


@pytest.fixture
def bin_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A directory that is the whole PATH (with /bin for the scripts' sh, cat and sleep)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    return folder


def fake_command(folder: pathlib.Path, name: str, body: str) -> None:
    """An executable shell script `name` in `folder`."""
    script = folder / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until `check()` holds."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


async def readings_until(
    collector: PowerCollector, done: Callable[[dict[str, float]], bool], seconds: float = 10.0
) -> dict[str, float]:
    """Read every 50 ms until `done(signals)`."""
    deadline = time.monotonic() + seconds
    while not done(signals := await collector.collect()):
        assert time.monotonic() < deadline, f"never done; last: {signals}"
        await asyncio.sleep(0.05)
    return signals


def energy_reaching(
    source: MacmonPowerSource | PowermetricsPowerSource, joules: float
) -> dict[str, float]:
    """A collector on `source`, read until its total energy reaches `joules`; its signals."""

    async def scenario() -> dict[str, float]:
        collector = PowerCollector(source)
        try:
            done = lambda s: s.get("energy_total_joules", 0) >= joules - 1e-9  # noqa: E731
            return await readings_until(collector, done)
        finally:
            await collector.aclose()

    return asyncio.run(scenario())


async def first_failure(collector: PowerCollector, seconds: float = 10.0) -> str:
    """Read every 50 ms until a reading fails; its reason."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await collector.collect()
        except CommandFailed as failure:
            return str(failure)
        await asyncio.sleep(0.05)
    raise AssertionError("no reading failed")


def test_macmon_process_is_counted_sample_by_sample(bin_dir: pathlib.Path) -> None:
    """A stand-in macmon printing the recorded lines: total joules = sum of sys_power x 0.1 s."""
    body = f'while read -r line; do echo "$line"; sleep 0.02; done < {shlex.quote(str(MACMON))}'
    fake_command(bin_dir, "macmon", body + "\nexec sleep 60")
    expected = sum(line["sys_power"] * 0.1 for line in macmon_lines())

    signals = energy_reaching(MacmonPowerSource(interval=0.1), expected)
    assert signals["energy_total_joules"] == pytest.approx(expected)
    assert signals["energy_cpu_joules"] == pytest.approx(
        sum(line["cpu_power"] * 0.1 for line in macmon_lines())
    )
    assert signals["energy_dram_joules"] == 0.0


def test_a_dying_sampler_is_reported_restarted_and_its_totals_keep_growing(
    bin_dir: pathlib.Path,
) -> None:
    """macmon exits with a message: one reading says why, the next restarts it, the joules
    counted before stay counted (monotonic across restarts of the source)."""
    first_two = "head -n 2 " + shlex.quote(str(MACMON))
    marker = shlex.quote(str(bin_dir / "ran-once"))
    dies_once = (
        f"if [ -e {marker} ]; then {first_two}; exec sleep 60; fi\n"
        f"touch {marker}; {first_two}; echo 'IOReport went away' >&2; exit 3"
    )
    fake_command(bin_dir, "macmon", dies_once)
    per_run = sum(line["sys_power"] * 0.1 for line in macmon_lines()[:2])

    async def scenario() -> tuple[str, float]:
        collector = PowerCollector(MacmonPowerSource(interval=0.1))
        try:
            reason = await first_failure(collector)  # it printed two samples and died
            done = lambda s: s.get("energy_total_joules", 0) >= 2 * per_run - 1e-9  # noqa: E731
            signals = await readings_until(collector, done)
            return reason, signals["energy_total_joules"]
        finally:
            await collector.aclose()

    reason, joules = asyncio.run(scenario())
    assert reason == "macmon exited with 3: IOReport went away"
    assert joules == pytest.approx(2 * per_run)


def test_a_silent_sampler_is_unknown_not_flat(bin_dir: pathlib.Path) -> None:
    """A macmon that prints nothing valid fails after a few windows, saying what it printed."""
    fake_command(bin_dir, "macmon", "while true; do echo 'not json'; sleep 0.05; done")

    async def scenario() -> str:
        collector = PowerCollector(MacmonPowerSource(interval=0.2))
        try:
            assert await collector.collect() == {"energy_since": pytest.approx(time.time(), abs=5)}
            return await first_failure(collector)  # after 5 windows of 0.2 s plus the interval
        finally:
            await collector.aclose()

    reason = asyncio.run(scenario())
    assert reason.startswith("no sample from macmon for 1.2 s; last sample: JSONDecodeError")


def test_powermetrics_process_documents_split_on_nul(bin_dir: pathlib.Path) -> None:
    """A stand-in powermetrics printing the real plist twice, NUL between: two samples."""
    plist = shlex.quote(str(POWERMETRICS))
    fake_command(bin_dir, "powermetrics", f"cat {plist}; printf '\\0'; cat {plist}; exec sleep 60")
    one = parse_powermetrics(POWERMETRICS.read_bytes())
    expected = 2 * one.watts["total"] * one.seconds

    signals = energy_reaching(PowermetricsPowerSource(interval=1.0), expected)
    assert signals["energy_total_joules"] == pytest.approx(expected)
    assert signals["energy_ane_joules"] == 0.0


def test_missing_sampler_says_so(bin_dir: pathlib.Path) -> None:
    """No macmon on PATH: the reading fails with that reason."""
    collector = PowerCollector(MacmonPowerSource(interval=1.0))
    with pytest.raises(CommandFailed, match="macmon is not installed"):
        collect(collector)


def test_auto_on_a_mac_prefers_macmon_then_powermetrics_as_root() -> None:
    """macmon needs no root: chosen when installed; powermetrics only as root; else none."""
    assert macos_source_name(has_macmon=lambda: True, is_root=lambda: True) == "macmon"
    assert macos_source_name(has_macmon=lambda: False, is_root=lambda: True) == "powermetrics"
    assert macos_source_name(has_macmon=lambda: False, is_root=lambda: False) == "none"


# --- NVIDIA through the real nvidia-ml-py -----------------------------------------------------


class FakeGpus:
    """What two GPUs answer: GPU 0 has the energy counter, GPU 1 (pre-Volta) only power."""

    def __init__(self) -> None:
        self.millijoules = 5_000_000  # since the driver loaded
        self.milliwatts = [150_000, 250_000]
        self.reads = 0

    def energy(self, handle: int) -> int:
        if handle == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self.millijoules

    def power(self, handle: int) -> int:
        assert handle == 1, "GPU 0 has a counter: its power is never sampled"
        self.reads += 1
        return self.milliwatts[min(self.reads - 1, len(self.milliwatts) - 1)]


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> FakeGpus:
    """pynvml with its C calls faked: init, count, handles, energy, power."""
    fake = FakeGpus()
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 2)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda index: index)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", fake.energy)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", fake.power)
    return fake


class StepClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_nvml_counter_and_sampled_power_add_up(gpus: FakeGpus) -> None:
    """GPU 0's mJ counter and GPU 1's integrated power (trapezoid) make `gpu` and `total`."""
    clock = StepClock()
    collector = PowerCollector(NvidiaPowerSource(clock=clock))

    async def scenario() -> dict[str, float]:
        first = await collector.collect()
        assert first["energy_gpu_joules"] == 0.0
        assert "power_gpu_watts" not in first  # GPU 0 has no interval yet
        clock.now += 2.0
        gpus.millijoules += 600_000  # 600 J in 2 s: 300 W
        return await collector.collect()

    signals = asyncio.run(scenario())
    sampled = (150 + 250) / 2 * 2.0  # the trapezoid between GPU 1's two samples
    assert signals["energy_gpu_joules"] == pytest.approx(600 + sampled)
    assert signals["energy_total_joules"] == signals["energy_gpu_joules"]
    assert signals["power_gpu_watts"] == pytest.approx(300 + sampled / 2.0)


def test_nvml_counter_reset_by_a_driver_reload_is_not_negative(gpus: FakeGpus) -> None:
    """The counter falls (driver reloaded): what it reads now is counted, never a negative."""
    clock = StepClock()
    collector = PowerCollector(NvidiaPowerSource(clock=clock))

    async def scenario() -> float:
        await collector.collect()
        clock.now += 2.0
        gpus.millijoules = 40_000  # 40 J since the reload
        return (await collector.collect())["energy_gpu_joules"]

    assert asyncio.run(scenario()) == pytest.approx(40 + 400)


def test_nvml_without_gpus_is_not_a_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` takes NVIDIA only where NVML starts and sees a GPU."""
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 0)
    assert nvml_has_gpus() is False

    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    assert nvml_has_gpus() is False


# --- RAPL through a sysfs-shaped tree ---------------------------------------------------------


def zone(root: pathlib.Path, name: str, label: str, microjoules: int, wraps: int) -> None:
    """One powercap zone as Linux lays it out (flat entries under /sys/class/powercap)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "name").write_text(label + "\n")
    (folder / "energy_uj").write_text(f"{microjoules}\n")
    (folder / "max_energy_range_uj").write_text(f"{wraps}\n")


def set_energy(root: pathlib.Path, name: str, microjoules: int) -> None:
    """The counter moves on."""
    (root / name / "energy_uj").write_text(f"{microjoules}\n")


@pytest.fixture
def powercap(tmp_path: pathlib.Path) -> pathlib.Path:
    """A desktop's RAPL: package 0 with its cores and DRAM, the MMIO twin, and a control dir."""
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 262_000_000_000, 262_143_328_850)
    zone(root, "intel-rapl:0:0", "core", 100_000_000, 262_143_328_850)
    zone(root, "intel-rapl:0:1", "dram", 5_000_000, 65_712_999_613)
    zone(root, "intel-rapl-mmio:0", "package-0", 1_000, 262_143_328_850)
    (root / "intel-rapl").mkdir()  # the control type: no counter
    return root


def test_rapl_counts_across_the_wrap(powercap: pathlib.Path) -> None:
    """Package 0 wraps past max_energy_range_uj: 143.3 J up to the range plus 56.7 J after."""
    collector = PowerCollector(RaplPowerSource(powercap))
    first = collect(collector)
    assert first["energy_package_joules"] == 0.0
    set_energy(powercap, "intel-rapl:0", 56_671_150)  # wrapped
    set_energy(powercap, "intel-rapl:0:0", 160_000_000)
    set_energy(powercap, "intel-rapl:0:1", 15_000_000)
    signals = collect(collector)
    assert signals["energy_package_joules"] == pytest.approx(143.32885 + 56.67115)
    assert signals["energy_cpu_joules"] == pytest.approx(60.0)
    assert signals["energy_dram_joules"] == pytest.approx(10.0)
    assert signals["energy_total_joules"] == pytest.approx(200.0 + 10.0)  # package + DRAM
    assert signals["power_total_watts"] > 0


def test_rapl_skips_the_mmio_twin_and_totals_psys_where_there_is_one(
    powercap: pathlib.Path,
) -> None:
    """MMIO package 0 is the same energy twice: skipped. A laptop's psys is the total."""
    keys = {z.key: z.components for z in find_zones(powercap)}
    assert "intel-rapl-mmio:0" not in keys
    assert keys["intel-rapl:0"] == ("package", "total")
    assert keys["intel-rapl:0:0"] == ("cpu",)
    zone(powercap, "intel-rapl:1", "psys", 0, 262_143_328_850)
    keys = {z.key: z.components for z in find_zones(powercap)}
    assert keys["intel-rapl:1"] == ("psys", "total")
    assert keys["intel-rapl:0"] == ("package",)
    assert keys["intel-rapl:0:1"] == ("dram",)


def test_no_rapl_tree_is_no_source(tmp_path: pathlib.Path) -> None:
    """No powercap folder: `auto` does not take RAPL, and reading it says why."""
    assert rapl_readable(tmp_path / "missing") is False
    collector = PowerCollector(RaplPowerSource(tmp_path / "missing"))
    with pytest.raises(Exception, match="cannot list"):
        collect(collector)


def test_auto_on_linux_reads_what_is_there(
    powercap: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux `auto`: RAPL where readable, NVIDIA where NVML sees a GPU, both together."""
    monkeypatch.setattr("probe.assembly.nvml_has_gpus", lambda: False)
    settings = load_settings(probe_rapl_root=powercap)
    assert resolve_power_source(settings, "Linux") == "rapl"
    monkeypatch.setattr("probe.assembly.nvml_has_gpus", lambda: True)
    assert resolve_power_source(settings, "Linux") == "nvidia+rapl"
    bare = load_settings(probe_rapl_root=tmp_path / "missing")
    monkeypatch.setattr("probe.assembly.nvml_has_gpus", lambda: False)
    assert resolve_power_source(bare, "Linux") == "none"
    assert resolve_power_source(load_settings(probe_power_source="sim"), "Linux") == "sim"


# --- the probe's own totals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "wraps_at", "expected"),
    [
        (10.0, 12.5, None, 2.5),
        (990.0, 5.0, 1000.0, 15.0),  # wrapped at the range
        (990.0, 5.0, None, 5.0),  # no range: the source started again
        (1500.0, 5.0, 1000.0, 5.0),  # above the range it claims: started again, not wrapped
    ],
)
def test_increase(previous: float, current: float, wraps_at: float | None, expected: float) -> None:
    """What a counter counted between two readings is never negative."""
    assert increase(previous, current, wraps_at) == pytest.approx(expected)


def test_totals_never_fall_whatever_the_source_does() -> None:
    """A restarted sim, a wrapping counter: every total only grows, power is never negative."""
    account = EnergyAccount()
    restarts = [100.0, 150.0, 10.0, 60.0, 60.0]  # a sim started again after 150 J
    wraps = [900.0, 950.0, 995.0, 3.0, 40.0]  # a counter of range 1000 J wrapping after 995
    totals = []
    for at, (sim, rapl) in enumerate(zip(restarts, wraps, strict=True)):
        signals = account.update(
            [
                Channel("sim", ("total",), sim, float(at)),
                Channel("rapl", ("total",), rapl, float(at), wraps_at=1000.0),
            ]
        )
        totals.append(signals["energy_total_joules"])
        assert signals.get("power_total_watts", 0.0) >= 0
    assert totals == sorted(totals)
    assert totals[-1] == pytest.approx((50 + 10 + 50 + 0) + (50 + 45 + 8 + 37))


def test_power_of_a_sum_is_unknown_until_every_part_is_measured() -> None:
    """Two channels of `total`, the second seen late: no total power until it has an interval."""
    account = EnergyAccount()
    account.update([Channel("a", ("gpu", "total"), 0.0, 0.0)])
    second = account.update(
        [Channel("a", ("gpu", "total"), 10.0, 1.0), Channel("b", ("cpu", "total"), 0.0, 1.0)]
    )
    assert second["power_gpu_watts"] == 10.0
    assert "power_total_watts" not in second
    third = account.update(
        [Channel("a", ("gpu", "total"), 20.0, 2.0), Channel("b", ("cpu", "total"), 5.0, 2.0)]
    )
    assert third["power_total_watts"] == 15.0
    assert third["energy_total_joules"] == 25.0


# --- /metrics ---------------------------------------------------------------------------------


def scrape(metrics: ProbeMetrics) -> str:
    """/metrics text of a fresh registry holding only these metrics."""
    registry = CollectorRegistry()
    registry.register(metrics)
    return generate_latest(registry).decode()


def test_energy_is_a_counter_by_component_and_power_a_gauge() -> None:
    """llmgw_probe_energy_joules_total{component}, _created from energy_since, power_watts."""
    metrics = ProbeMetrics(power_source="rapl")
    signals = {
        "energy_since": 1_700_000_000.0,
        "energy_total_joules": 210.0,
        "energy_cpu_joules": 60.0,
        "power_total_watts": 105.0,
        "idle_power_watts": 40.0,
        "cpu_ratio": 0.5,
    }
    metrics.record(signals, {"power": True})
    text = scrape(metrics)
    assert 'llmgw_probe_energy_joules_total{component="total"} 210.0' in text
    assert 'llmgw_probe_energy_joules_total{component="cpu"} 60.0' in text
    assert 'llmgw_probe_energy_joules_created{component="total"} 1.7e+09' in text
    assert 'llmgw_probe_power_watts{component="total"} 105.0' in text
    assert "llmgw_probe_idle_power_watts 40.0" in text
    assert 'llmgw_probe_power_source_info{source="rapl"} 1.0' in text
    assert "llmgw_probe_energy_since" not in text
    assert "llmgw_probe_energy_total_joules" not in text


def test_a_host_without_power_has_no_energy_series_but_says_why() -> None:
    """source="none": no energy or power series (never 0), the other gauges as before."""
    metrics = ProbeMetrics()
    metrics.record({"cpu_ratio": 0.25}, {"memory": True})
    text = scrape(metrics)
    assert 'llmgw_probe_power_source_info{source="none"} 1.0' in text
    assert "energy_joules" not in text
    assert "power_watts" not in text
    assert "llmgw_probe_cpu_ratio 0.25" in text
