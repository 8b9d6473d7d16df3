"""The metrics of energy per answer (issue 20), and the per-model traffic the energy report
reads beside them. Part of `GatewayMetrics` (a mixin on its registry, as the host metrics are).

Energy series exist only for a host whose probe has a power source: a host without one has no
series at all (never zeros), so a dashboard can say "no power source". The per-model traffic
(answers, tokens, streaming time, time to first token) is every host's, the fallback's too.
Models and hosts are labels only when configured (the rest share `other`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

from prometheus_client import Counter, Gauge, Histogram

from app.telemetry.buckets import TIME_TO_FIRST_TOKEN_BUCKETS
from app.telemetry.labels import OTHER

if TYPE_CHECKING:
    from collections.abc import Iterable

    from prometheus_client import CollectorRegistry

ANSWER_ENERGY_BUCKETS: Final = (
    *(1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0),
    *(10_000.0, 25_000.0),
)
ENERGY_PER_TOKEN_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0)
FALLBACK: Final = "fallback"


class EnergyMetrics:
    """The energy half of `GatewayMetrics`, on its registry."""

    registry: CollectorRegistry

    def _energy_metrics(self) -> None:
        registry = self.registry
        model_host = ["model", "host"]
        self._energy_models: frozenset[str] = frozenset()
        self._energy_hosts: frozenset[str] = frozenset({FALLBACK})
        self._energy_powered: set[str] = set()
        self._answer_energy = Histogram(
            "llmgw_answer_energy_joules",
            "An answer's share of its host's energy, idle baseline included (issue 20).",
            model_host, buckets=ANSWER_ENERGY_BUCKETS, registry=registry,
        )  # fmt: skip
        self._answer_marginal = Histogram(
            "llmgw_answer_marginal_energy_joules",
            "An answer's share of its host's energy above the idle baseline.",
            model_host, buckets=ANSWER_ENERGY_BUCKETS, registry=registry,
        )  # fmt: skip
        self._answer_per_token = Histogram(
            "llmgw_answer_energy_per_output_token_joules",
            "An answer's energy over its output tokens.",
            model_host, buckets=ENERGY_PER_TOKEN_BUCKETS, registry=registry,
        )  # fmt: skip
        self._energy_attributed = Counter(
            "llmgw_energy_attributed_joules_total",
            "Joules given to answers, idle baseline included.", model_host, registry=registry,
        )  # fmt: skip
        self._energy_marginal = Counter(
            "llmgw_energy_marginal_joules_total",
            "Joules given to answers above the idle baseline.", model_host, registry=registry,
        )  # fmt: skip
        self._energy_tokens = Counter(
            "llmgw_energy_output_tokens_total",
            "Output tokens of the answers given energy (per 1,000 tokens: joules over these).",
            model_host, registry=registry,
        )  # fmt: skip
        self._host_power = Gauge(
            "llmgw_host_power_watts", "The host's power, as its probe last measured it.",
            ["host"], registry=registry,
        )  # fmt: skip
        self._host_idle_power = Gauge(
            "llmgw_host_idle_power_watts", "The host's power while nothing runs (its probe's).",
            ["host"], registry=registry,
        )  # fmt: skip
        self._host_energy = Counter(
            "llmgw_host_energy_joules_total",
            "The host's energy between its probe's snapshots, as this gateway saw them.",
            ["host"], registry=registry,
        )  # fmt: skip
        self._model_answers = Counter(
            "llmgw_model_answers_total", "Answers with a first token, by model and host.",
            model_host, registry=registry,
        )  # fmt: skip
        self._model_tokens = Counter(
            "llmgw_model_tokens_total", "Tokens of those answers (input, output).",
            [*model_host, "type"], registry=registry,
        )  # fmt: skip
        self._model_streaming = Counter(
            "llmgw_model_streaming_seconds_total",
            "Seconds from first token to end of those answers (tokens per second: output over"
            " these).", model_host, registry=registry,
        )  # fmt: skip
        self._model_ttft = Histogram(
            "llmgw_model_time_to_first_token_seconds",
            "Time from admission to the first token, by model and host.",
            model_host, buckets=TIME_TO_FIRST_TOKEN_BUCKETS, registry=registry,
        )  # fmt: skip
        self._model_series: dict[tuple[str, str], tuple[Counter, ...]] = {}
        self._model_ttft_series: dict[tuple[str, str], Histogram] = {}
        self._energy_series: dict[
            tuple[str, str],
            tuple[tuple[Histogram, Histogram], tuple[Counter, Counter], tuple[Counter, Histogram]],
        ] = {}

    def energy_configured(self, hosts: Iterable[str], models: Iterable[str]) -> None:
        """The hosts and models that may be labels (the rest are `other`)."""
        self._energy_hosts = frozenset(hosts) | {FALLBACK}
        self._energy_models = frozenset(models)

    def energy_model_answer(
        self,
        model: str,
        host: str,
        *,
        input_tokens: int,
        output_tokens: int,
        ttft: float,
        streaming: float,
    ) -> None:
        """One answer ended: its model's count, tokens, streaming time and first token."""
        labels = self._energy_labels(model, host)
        if (series := self._model_series.get(labels)) is None:
            series = self._model_series[labels] = (
                self._model_answers.labels(*labels),
                self._model_tokens.labels(*labels, "input"),
                self._model_tokens.labels(*labels, "output"),
                self._model_streaming.labels(*labels),
            )
            self._model_ttft_series[labels] = self._model_ttft.labels(*labels)
        answers, inputs, outputs, streaming_seconds = series
        answers.inc()
        inputs.inc(max(input_tokens, 0))
        outputs.inc(max(output_tokens, 0))
        streaming_seconds.inc(max(streaming, 0.0))
        self._model_ttft_series[labels].observe(max(ttft, 0.0))

    def energy_answer(
        self, model: str, host: str, total: float, marginal: float | None, output_tokens: int
    ) -> None:
        """An answer's energy is settled: `marginal` None while the host's baseline is unknown."""
        labels = self._energy_labels(model, host)
        if (series := self._energy_series.get(labels)) is None:
            series = self._energy_series[labels] = (
                (self._answer_energy.labels(*labels), self._answer_marginal.labels(*labels)),
                (self._energy_attributed.labels(*labels), self._energy_marginal.labels(*labels)),
                (self._energy_tokens.labels(*labels), self._answer_per_token.labels(*labels)),
            )
        (energy, marginal_energy), (attributed, marginal_total), (tokens, per_token) = series
        energy.observe(total)
        attributed.inc(total)
        tokens.inc(max(output_tokens, 0))
        if marginal is not None:
            marginal_energy.observe(marginal)
            marginal_total.inc(marginal)
        if output_tokens > 0:
            per_token.observe(total / output_tokens)

    def energy_host_power(self, host: str, watts: float | None, idle: float | None) -> None:
        """The host's power and idle baseline from its probe's snapshot (None: not measured)."""
        label = self._energy_host(host)
        self._energy_powered.add(label)
        self._host_energy.labels(label)  # at zero from the first snapshot with a source
        _set_or_remove(self._host_power, label, watts)
        _set_or_remove(self._host_idle_power, label, idle)

    def energy_host_joules(self, host: str, joules: float) -> None:
        """The host's energy over one interval between its probe's snapshots."""
        self._host_energy.labels(self._energy_host(host)).inc(max(joules, 0.0))

    def energy_host_gone(self, host: str) -> None:
        """The host's probe has no power source (any more): none of its energy series."""
        label = self._energy_host(host)
        self._energy_powered.discard(label)
        for gauge in (self._host_power, self._host_idle_power, self._host_energy):
            _set_or_remove(gauge, label, None)
        for family in (
            self._answer_energy, self._answer_marginal, self._answer_per_token,
            self._energy_attributed, self._energy_marginal, self._energy_tokens,
        ):  # fmt: skip
            for model in (*self._energy_models, OTHER):
                _remove(family, model, label)
        for labels in [labels for labels in self._energy_series if labels[1] == label]:
            del self._energy_series[labels]

    def _energy_labels(self, model: str, host: str) -> tuple[str, str]:
        return (model if model in self._energy_models else OTHER, self._energy_host(host))

    def _energy_host(self, host: str) -> str:
        return host if host in self._energy_hosts else OTHER


def _set_or_remove(metric: Gauge | Counter, host: str, value: float | None) -> None:
    if value is None:
        _remove(metric, host)
    elif isinstance(metric, Gauge):
        metric.labels(host).set(value)


def _remove(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never had that series
        metric.remove(*labels)
