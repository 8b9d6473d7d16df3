"""`llmgw report energy`: per model served in a period, its answers, speed and energy, what the
energy cost, what the hosted fallback would have charged for the same tokens, and whether a
lighter model would save energy (issue 20).

It reads Prometheus (LLMGW_PROMETHEUS_URL) over the period when one is configured, else the
gateway's own /metrics, whose counters run since that gateway started (the period is then that).
Both carry the same series (app/telemetry/energy_metrics.py); the figures are the same sums.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import httpx
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from collections.abc import Iterable

JOULES_PER_KWH: Final = 3_600_000.0
JOULES_PER_WH: Final = 3_600.0
TTFT: Final = "llmgw_model_time_to_first_token_seconds"
# The counters summed by model, and the name each goes by in a `Usage`.
COUNTERS: Final = {
    "llmgw_model_answers_total": "answers",
    "llmgw_model_streaming_seconds_total": "streaming_seconds",
    "llmgw_energy_attributed_joules_total": "joules",
    "llmgw_energy_marginal_joules_total": "marginal_joules",
    "llmgw_energy_output_tokens_total": "energy_tokens",
    "llmgw_answer_energy_joules_count": "energy_answers",
}
_SINCE: Final = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


class ReportError(Exception):
    """The metrics could not be read; the message says where and why."""


@dataclass
class Usage:
    """One model's figures over the period."""

    model: str
    answers: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    streaming_seconds: float = 0.0
    joules: float = 0.0
    marginal_joules: float = 0.0
    energy_tokens: float = 0.0
    energy_answers: float = 0.0
    ttft_buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    ttft_p50: float | None = None
    ttft_p95: float | None = None

    @property
    def measured(self) -> bool:
        return self.energy_answers > 0

    @property
    def joules_per_answer(self) -> float | None:
        return self.joules / self.energy_answers if self.measured else None

    @property
    def joules_per_1k_tokens(self) -> float | None:
        return 1_000 * self.joules / self.energy_tokens if self.energy_tokens > 0 else None

    @property
    def tokens_per_second(self) -> float | None:
        return self.output_tokens / self.streaming_seconds if self.streaming_seconds > 0 else None

    def energy_cost(self, price_per_kwh: float) -> float | None:
        """The energy of all its answers (those not measured at the measured ones' mean)."""
        per_answer = self.joules_per_answer
        return (
            None
            if per_answer is None
            else per_answer * self.answers / JOULES_PER_KWH * price_per_kwh
        )


@dataclass(frozen=True)
class Prices:
    """What a kWh costs, and the hosted fallback's prices per million tokens (0: none set)."""

    per_kwh: float
    currency: str
    fallback_input_per_mtok: float = 0.0
    fallback_output_per_mtok: float = 0.0

    @property
    def fallback(self) -> bool:
        return self.fallback_input_per_mtok > 0 or self.fallback_output_per_mtok > 0

    def fallback_cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.fallback_input_per_mtok
            + usage.output_tokens * self.fallback_output_per_mtok
        ) / 1_000_000


def since_seconds(text: str) -> int:
    """`7d`, `24h`, `90m`, `2w`, `30s` in seconds; ValueError otherwise."""
    match = _SINCE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"--since: {text!r} is not a period like 7d, 24h or 30m")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# -- reading -----------------------------------------------------------------------------------


def from_exposition(text: str) -> dict[str, Usage]:
    """Each model's figures from a /metrics text (counters since the gateway started)."""
    usages: dict[str, Usage] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            usage = usages.setdefault(model, Usage(model))
            _take(usage, sample.name, sample.labels, sample.value)
    for usage in usages.values():
        usage.ttft_p50 = quantile(0.5, usage.ttft_buckets)
        usage.ttft_p95 = quantile(0.95, usage.ttft_buckets)
    return usages


def _take(usage: Usage, name: str, labels: dict[str, str], value: float) -> None:
    if name in COUNTERS:
        setattr(usage, COUNTERS[name], getattr(usage, COUNTERS[name]) + value)
    elif name == "llmgw_model_tokens_total":
        kind = "input_tokens" if labels.get("type") == "input" else "output_tokens"
        setattr(usage, kind, getattr(usage, kind) + value)
    elif name == f"{TTFT}_bucket":
        le = float(labels["le"])
        usage.ttft_buckets[le] = usage.ttft_buckets.get(le, 0.0) + value


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus's `histogram_quantile` over cumulative buckets: linear within a bucket."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank, below, lower = q * buckets[bounds[-1]], 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return bound if inside <= 0 else lower + (bound - lower) * (rank - below) / inside
        below, lower = count, bound
    return lower


def read_gateway(url: str) -> dict[str, Usage]:
    """The gateway's own counters, from its /metrics."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=10, trust_env=False)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ReportError(f"could not read {url}/metrics: {exc}") from None
    return from_exposition(response.text)


def read_prometheus(url: str, seconds: int) -> dict[str, Usage]:
    """Each model's figures over the last `seconds`, from Prometheus's increases."""
    window = f"{seconds}s"
    usages: dict[str, Usage] = {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=20, trust_env=False) as client:
        for name, attribute in COUNTERS.items():
            for model, value in _by_model(client, f"sum by (model) (increase({name}[{window}]))"):
                setattr(usages.setdefault(model, Usage(model)), attribute, value)
        for kind in ("input", "output"):
            expr = f'sum by (model) (increase(llmgw_model_tokens_total{{type="{kind}"}}[{window}]))'
            for model, value in _by_model(client, expr):
                setattr(usages.setdefault(model, Usage(model)), f"{kind}_tokens", value)
        for q, attribute in ((0.5, "ttft_p50"), (0.95, "ttft_p95")):
            buckets = f"sum by (model, le) (increase({TTFT}_bucket[{window}]))"
            for model, value in _by_model(client, f"histogram_quantile({q}, {buckets})"):
                setattr(usages.setdefault(model, Usage(model)), attribute, value)
    return {model: usage for model, usage in usages.items() if usage.answers > 0}


def _by_model(client: httpx.Client, expr: str) -> Iterable[tuple[str, float]]:
    try:
        body = client.get("/api/v1/query", params={"query": expr}).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ReportError(f"Prometheus query failed ({expr}): {exc}") from None
    if body.get("status") != "success":
        raise ReportError(f"Prometheus query failed ({expr}): {body.get('error')}")
    for series in body["data"]["result"]:
        value = float(series["value"][1])
        if "model" in series["metric"] and math.isfinite(value):
            yield series["metric"]["model"], value
