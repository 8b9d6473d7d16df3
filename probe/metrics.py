"""The probe's own `/metrics`: the latest signals as gauges, and how collecting and publishing go.

Built at scrape time from the latest tick, so a signal that became unknown has no sample
(it is never exported as 0). No labels but `collector`, and `component` for the energy
counters and power: the scrape target says which host. `power_source_info` is there always,
with `source="none"` on a host that cannot measure power (then no energy series at all).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator, Mapping
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

    from probe.collectors import Signals

PREFIX = "llmgw_probe_"
DESCRIPTIONS = {
    "memory_used_ratio": "Share of system memory in use (total minus available).",
    "swap_used_bytes": "Swap in use.",
    "swap_used_ratio": "Share of swap in use.",
    "cpu_ratio": "CPU use over the last interval, all cores.",
    "memory_pressure_level": "macOS memory pressure level: 1 normal, 2 warn, 4 critical.",
    "memory_psi_some_avg10": "Linux PSI: percent of time some tasks stalled on memory, 10 s.",
    "memory_psi_full_avg10": "Linux PSI: percent of time all tasks stalled on memory, 10 s.",
    "gpu_utilization_ratio": "GPU utilisation of the busiest GPU.",
    "gpu_memory_used_bytes": "GPU memory in use.",
    "gpu_memory_alloc_bytes": "System memory allocated by the Apple GPU driver.",
    "gpu_memory_total_bytes": "GPU memory in total.",
    "gpu_memory_used_ratio": "Share of GPU memory in use.",
    "sim_queued": "Requests waiting for a slot in the simulated model server.",
    "model_server_up": "1 if the model server answers (a refused token included), else 0.",
    "model_server_busy": "Checks in a row the model server did not answer in time, or said 503.",
    "model_server_latency_seconds": "Time the model server took to list its models.",
    "model_token_ok": "1 if the model server takes LLMGW_PROBE_MODEL_TOKEN, 0 on 401 or 403.",
    "model_loaded": "1 if the served model (LLMGW_MODEL), an LLM, is loaded, else 0.",
    "model_available": "1 if the served model is downloaded and an LLM, loaded or not, else 0.",
    "model_context_length": "Context length, in tokens, the served model is loaded with.",
    "synthetic_ttft_seconds": "Time to first token of the latest synthetic generation.",
    "synthetic_tokens_per_second": "Decode speed of the latest synthetic generation.",
    "synthetic_age_seconds": "Age of the latest synthetic generation.",
    "idle_power_watts": "The host's power while nothing runs (mean over idle intervals).",
}
ENERGY = re.compile(r"^energy_(?P<component>[a-z0-9]+)_joules$")
POWER = re.compile(r"^power_(?P<component>[a-z0-9]+)_watts$")
ENERGY_SINCE = "energy_since"


class ProbeMetrics:
    """A Prometheus collector over the agent's latest state; register it in a registry."""

    def __init__(self, power_source: str = "none") -> None:
        self.power_source = power_source
        self.signals: Signals = {}
        self.collectors_up: dict[str, bool] = {}
        self.last_publish: float | None = None
        self.publish_errors = 0

    def record(self, signals: Signals, collectors_up: Mapping[str, bool]) -> None:
        """Keep one tick's signals and collector states (replaced whole, read by scrapes)."""
        self.signals = dict(signals)
        self.collectors_up = dict(collectors_up)

    def collect(self) -> Iterator[Metric]:
        """The metric families of the latest state."""
        for name, value in sorted(self.signals.items()):
            if name == ENERGY_SINCE or ENERGY.match(name) or POWER.match(name):
                continue  # labelled by component below
            help_text = DESCRIPTIONS.get(name, f"Probe signal {name}.")
            yield GaugeMetricFamily(PREFIX + name, help_text, value=value)
        yield from self._power()
        yield self._collector_up()
        if self.last_publish is not None:
            yield GaugeMetricFamily(
                PREFIX + "last_publish_timestamp_seconds",
                "Unix time of the last snapshot written to Redis.",
                value=self.last_publish,
            )
        yield CounterMetricFamily(
            PREFIX + "publish_errors", "Snapshots Redis did not take.", value=self.publish_errors
        )

    def _power(self) -> Iterator[Metric]:
        yield InfoMetricFamily(
            PREFIX + "power_source",
            "Where the probe reads the host's power; none: no energy series.",
            value={"source": self.power_source},
        )
        energy = CounterMetricFamily(
            PREFIX + "energy_joules",
            "Energy the host used since the probe started counting, by component.",
            labels=["component"],
        )
        power = GaugeMetricFamily(
            PREFIX + "power_watts",
            "The host's power over the last measured interval, by component.",
            labels=["component"],
        )
        since = self.signals.get(ENERGY_SINCE)
        for name, value in sorted(self.signals.items()):
            if found := ENERGY.match(name):
                energy.add_metric([found["component"]], value, created=since)
            elif found := POWER.match(name):
                power.add_metric([found["component"]], value)
        yield from (family for family in (energy, power) if family.samples)

    def _collector_up(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            PREFIX + "collector_up", "1 if the collector answered last time.", labels=["collector"]
        )
        for name, up in sorted(self.collectors_up.items()):
            family.add_metric([name], 1.0 if up else 0.0)
        return family


def serve_metrics(
    metrics: ProbeMetrics, host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """Serve `/metrics` from a daemon thread, on a registry of our own (no process metrics)."""
    registry = CollectorRegistry()
    registry.register(metrics)
    return start_http_server(port, addr=host, registry=registry)
