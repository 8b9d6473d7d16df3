"""`GatewayMetrics`: every Prometheus metric of one gateway, in a registry of its own, behind small
methods named for the moment they record (`request_finished`, `first_token`, `breaker_changed`).

The per-host and hosted fallback metrics are in `host_metrics` (`HostMetrics`, mixed in here),
the visitor passes' in `pass_metrics`, the posts' (tool calls, searches, index) in `rag_metrics`.
Label values pass through `bounded` (see `labels`), so no visitor id or free text becomes a label.
Latency histograms carry the trace id as an exemplar when one is given; exemplars are only in the
OpenMetrics exposition, which `exposition` picks when the scraper asks for it.
"""

from __future__ import annotations

import itertools
import math
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from app.telemetry.buckets import (
    QUEUE_WAIT_BUCKETS,
    REDIS_COMMAND_BUCKETS,
    REQUEST_DURATION_BUCKETS,
    TIME_PER_OUTPUT_TOKEN_BUCKETS,
    TIME_TO_FIRST_TOKEN_BUCKETS,
)
from app.telemetry.energy_metrics import EnergyMetrics
from app.telemetry.host_metrics import HostMetrics
from app.telemetry.labels import (
    ADMISSION_PATHS,
    BREAKER_STATES,
    DECISION_ALIASES,
    DECISIONS,
    HOST_NAME,
    LANES,
    MAX_KEY_NAMES,
    MAX_PROBE_HOSTS,
    MODEL_STATES,
    OTHER,
    OUTAGE_CLASSES,
    OUTCOMES,
    PRESSURE_SIGNALS,
    PROBE_SIGNALS,
    QUEUE_RESULTS,
    ROUTES,
    TOKEN_DOORS,
    TOKEN_TYPES,
    bounded,
)
from app.telemetry.pass_metrics import PassMetrics
from app.telemetry.rag_metrics import RagMetrics
from app.telemetry.series import OneHot, observe, replace_series

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

UNKNOWN: Final = math.nan  # an up-gauge nobody has reported on yet: neither up nor down
_NOT_SHOWN: Final = "\0"  # no diagnosis shown yet: the first one is always written


class GatewayMetrics(HostMetrics, PassMetrics, RagMetrics, EnergyMetrics):
    """The gateway's metrics in their own registry: one per app, and a clean slate per test."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        histogram = partial(Histogram, registry=self.registry)

        self._requests = counter(
            "llmgw_requests_total", "Requests finished, by route and outcome.", ["route", "outcome"]
        )
        self._request_duration = histogram(
            "llmgw_request_duration_seconds",
            "Time from arrival to the last byte, by route and outcome.",
            ["route", "outcome"],
            buckets=REQUEST_DURATION_BUCKETS,
        )
        self._ttft = histogram(
            "llmgw_time_to_first_token_seconds",
            "Time from admission to the first text or reasoning token (gen_ai TTFT).",
            buckets=TIME_TO_FIRST_TOKEN_BUCKETS,
        )
        self._tpot = histogram(
            "llmgw_time_per_output_token_seconds",
            "Time per output token after the first one (gen_ai time per output token).",
            buckets=TIME_PER_OUTPUT_TOKEN_BUCKETS,
        )
        self._tokens = counter(
            "llmgw_tokens_total",
            "Tokens as the model reported them; output includes reasoning, reasoning is its share.",
            ["type"],
        )
        self._active_streams = gauge("llmgw_active_streams", "Answers being streamed right now.")
        self._tokens_reserved = counter(
            "llmgw_tokens_reserved_total",
            "Tokens reserved by admissions: input estimate, conversation on record, answer cap.",
        )
        self._tokens_refunded = counter(
            "llmgw_tokens_refunded_total",
            "Reserved tokens given back at the stream's end: what the answer did not use.",
        )
        self._tokens_spent = counter(
            "llmgw_tokens_spent_total",
            "Tokens charged at the stream's end: the model's usage, else what was relayed.",
        )

        self._admissions = counter(
            "llmgw_admission_decisions_total",
            "Admission decisions, by decision and by the path that decided.",
            ["decision", "path"],
        )
        self._queue_wait = histogram(
            "llmgw_queue_wait_seconds",
            "Time a shed request waited in line for an in-flight place, by whether it got one.",
            ["result"],
            buckets=QUEUE_WAIT_BUCKETS,
        )
        self._global_limit = gauge(
            "llmgw_global_limit", "Chats admitted per window for everyone.", ["kind"]
        )
        self._inflight_cap = gauge("llmgw_inflight_cap", "Streams allowed at once.", ["kind"])
        self._global_token_limit = gauge(
            "llmgw_global_token_limit",
            "Tokens admissions may reserve per window for everyone (0: no token window).",
            ["kind"],
        )
        self._pressure = gauge(
            "llmgw_pressure", "Normalised pressure per signal, 0..1.", ["signal"]
        )
        self._pressure_combined = gauge("llmgw_pressure_combined", "Pressure the governor uses.")
        self._governor_factor = gauge("llmgw_governor_factor", "Effective limit over base limit.")

        self._breaker_state = OneHot(
            gauge("llmgw_breaker_state", "1 for the breaker's current state.", ["state"]),
            BREAKER_STATES,
        )
        self._breaker_transitions = counter(
            "llmgw_breaker_transitions_total", "Breaker transitions.", ["from_state", "to_state"]
        )
        self._upstream_up = gauge("llmgw_upstream_up", "1 when the model path is healthy.")
        self._upstream_failures = counter(
            "llmgw_upstream_failures_total", "Upstream failures, by diagnosed class.", ["class"]
        )
        self._upstream_outage = OneHot(
            gauge("llmgw_upstream_outage", "1 for the currently diagnosed outage.", ["class"]),
            OUTAGE_CLASSES,
        )

        self._token_invalid = gauge(
            "llmgw_upstream_token_invalid",
            "1 while a token on the model path is refused, by which door.",
            ["door"],
        )
        self._model_state = OneHot(
            gauge(
                "llmgw_model_state", "1 for what the model server says of LLMGW_MODEL.", ["state"]
            ),
            MODEL_STATES,
        )

        self._redis_up = gauge("llmgw_redis_up", "1 when Redis answers.")
        self._redis_duration = histogram(
            "llmgw_redis_command_duration_seconds",
            "Round trip of the gateway's Redis commands.",
            buckets=REDIS_COMMAND_BUCKETS,
        )
        self._redis_errors = counter("llmgw_redis_errors_total", "Redis commands that failed.")
        self._redis_fallback = gauge(
            "llmgw_redis_fallback_active", "1 while the in-process fallback limiter admits."
        )

        self._probe_seen = gauge(
            "llmgw_probe_last_seen_timestamp_seconds",
            "When the model host's probe last reported, by its clock.",
            ["host"],
        )
        self._probe_signal = gauge(
            "llmgw_probe_signal", "The probe's latest signals, re-exported.", ["host", "signal"]
        )
        self._lane_metrics()
        self._host_metrics()
        self._pass_metrics()
        self._rag_metrics()
        self._energy_metrics()
        self._pressure_signals: set[str] = set()
        self._probe_hosts: dict[str, set[str]] = {}
        # Children of the per-request metrics, by their (bounded) label values: `labels()`
        # takes a lock and builds a tuple on every call, a dict lookup does neither.
        self._request_series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._admission_series: dict[tuple[str, str], Counter] = {}
        self._token_series = {
            token_type: self._tokens.labels(token_type) for token_type in TOKEN_TYPES
        }
        self._outage_shown: str | None = _NOT_SHOWN
        self._initialise()

    def _lane_metrics(self) -> None:
        """Each lane's requests, first tokens, tokens and places, and each key's requests."""
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        self._lane_requests = counter(
            "llmgw_lane_requests_total",
            "Requests finished, by lane (owner, member, public) and outcome.",
            ["lane", "outcome"],
        )
        self._lane_ttft = Histogram(
            "llmgw_lane_time_to_first_token_seconds",
            "Time from admission to the first token, by lane.",
            ["lane"],
            buckets=TIME_TO_FIRST_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self._lane_tokens = counter(
            "llmgw_lane_tokens_total",
            "Tokens as the model reported them (input, output), by lane.",
            ["lane", "type"],
        )
        self._lane_inflight = gauge(
            "llmgw_lane_inflight",
            "Streams this replica holds now, by lane.",
            ["lane"],
        )
        self._lane_cap = gauge(
            "llmgw_lane_inflight_cap",
            "Streams at once a lane may reach now (all lanes' streams count against it).",
            ["lane"],
        )
        self._lane_queued = gauge(
            "llmgw_lane_queued",
            "Requests waiting in this replica's line for a place, by lane.",
            ["lane"],
        )
        self._key_requests = counter(
            "llmgw_key_requests_total",
            "Keyed requests finished, by the key's name (never the key) and outcome.",
            ["key", "outcome"],
        )
        self._key_names: set[str] = set()
        for lane in LANES:
            for outcome in OUTCOMES:
                self._lane_requests.labels(lane, outcome)
            for token_type in TOKEN_TYPES[:2]:
                self._lane_tokens.labels(lane, token_type)
            self._lane_ttft.labels(lane)
            self._lane_inflight.labels(lane).set(0)
            self._lane_queued.labels(lane).set(0)

    def _initialise(self) -> None:
        """Series that alerts and rates need from the start, at zero; up-gauges unknown."""
        for outcome in OUTCOMES:
            self._requests.labels("/api/chat", outcome)
        for decision in DECISIONS:
            for path in ADMISSION_PATHS:
                self._admissions.labels(decision, path)
        for token_type in TOKEN_TYPES:
            self._tokens.labels(token_type)
        for result in QUEUE_RESULTS:
            self._queue_wait.labels(result)
        for outage_class in OUTAGE_CLASSES:
            self._upstream_failures.labels(outage_class)
        for old, new in itertools.permutations(BREAKER_STATES, 2):
            self._breaker_transitions.labels(old, new)
        self._breaker_state.set("closed")
        self._upstream_outage.set(None)
        for door in TOKEN_DOORS:
            self._token_invalid.labels(door).set(0)
        self._model_state.set("unknown")
        self._upstream_up.set(UNKNOWN)
        self._redis_up.set(UNKNOWN)

    # -- the chat request ---------------------------------------------------------------------

    def request_finished(
        self, route: str, outcome: str | Enum, seconds: float, trace_id: str | int | None = None
    ) -> None:
        """One request is done (answered, refused or cut off): count it and time it."""
        labels = (bounded(route, ROUTES), bounded(outcome, OUTCOMES))
        if (series := self._request_series.get(labels)) is None:
            series = (self._requests.labels(*labels), self._request_duration.labels(*labels))
            self._request_series[labels] = series
        count, duration = series
        count.inc()
        observe(duration, seconds, trace_id)

    def first_token(self, seconds: float, trace_id: str | int | None = None) -> None:
        """The first text or reasoning token reached the relay, `seconds` after admission."""
        observe(self._ttft, seconds, trace_id)

    def time_per_output_token(
        self, seconds_after_first: float, output_tokens: int, trace_id: str | int | None = None
    ) -> None:
        """Decode speed as GenAI defines it: time after the first token over the tokens after it."""
        if output_tokens > 1:
            observe(self._tpot, seconds_after_first / (output_tokens - 1), trace_id)

    def tokens(self, *, input_tokens: int, output_tokens: int, reasoning_tokens: int = 0) -> None:
        """Usage of one answer, as the model reported it."""
        for token_type, count in zip(
            TOKEN_TYPES, (input_tokens, output_tokens, reasoning_tokens), strict=True
        ):
            if count > 0:
                self._token_series[token_type].inc(count)

    def tokens_reserved(self, tokens: int) -> None:
        """An admission reserved `tokens` in its token windows."""
        self._tokens_reserved.inc(tokens)

    def tokens_settled(self, *, reserved: int, spent: int) -> None:
        """A stream's end settled its reservation: `spent` charged, the unused rest refunded
        (an answer that used more than reserved is charged the difference, refunds nothing)."""
        self._tokens_spent.inc(max(spent, 0))
        self._tokens_refunded.inc(max(reserved - spent, 0))

    def stream_started(self) -> None:
        """An answer began streaming to a visitor."""
        self._active_streams.inc()

    def stream_ended(self) -> None:
        """An answer stopped streaming, however it ended."""
        self._active_streams.dec()

    # -- lanes and keys ---------------------------------------------------------------------

    def lane_request(self, lane: str | Enum, outcome: str | Enum, key: str | None = None) -> None:
        """One request of a lane is done; a keyed one counts for its key's name too."""
        outcome_label = bounded(outcome, OUTCOMES)
        self._lane_requests.labels(bounded(lane, LANES), outcome_label).inc()
        if key is not None:
            self._key_requests.labels(self._key_label(key), outcome_label).inc()

    def lane_first_token(self, lane: str | Enum, seconds: float) -> None:
        """A lane's answer reached its first token `seconds` after admission."""
        self._lane_ttft.labels(bounded(lane, LANES)).observe(seconds)

    def lane_tokens(self, lane: str | Enum, *, input_tokens: int, output_tokens: int) -> None:
        """Usage of one answer of a lane."""
        label = bounded(lane, LANES)
        self._lane_tokens.labels(label, "input").inc(max(input_tokens, 0))
        self._lane_tokens.labels(label, "output").inc(max(output_tokens, 0))

    def lane_stream(self, lane: str | Enum, change: int) -> None:
        """A lane's stream began (+1) or ended (-1) on this replica."""
        self._lane_inflight.labels(bounded(lane, LANES)).inc(change)

    def lane_caps(self, caps: Mapping[str, int]) -> None:
        """The in-flight cap each lane is held to now."""
        for lane, cap in caps.items():
            self._lane_cap.labels(bounded(lane, LANES)).set(cap)

    def lane_queued(self, queued: Mapping[str, int]) -> None:
        """How many requests of each lane wait in this replica's line now."""
        for lane, count in queued.items():
            self._lane_queued.labels(bounded(lane, LANES)).set(count)

    def _key_label(self, name: str) -> str:
        if name in self._key_names:
            return name
        if len(self._key_names) < MAX_KEY_NAMES and HOST_NAME.fullmatch(name):
            self._key_names.add(name)
            return name
        return OTHER

    # -- admission and the governor -----------------------------------------------------------

    def admission(self, decision: str | Enum, path: str | Enum) -> None:
        """Admission decided: admitted, or refused by the visitor, global, token, in-flight
        (`shed`, also accepted as `inflight`) or conversation check; by Redis, locally or the
        fallback."""
        name = decision.value if isinstance(decision, Enum) else decision
        labels = (
            bounded(DECISION_ALIASES.get(name, name), DECISIONS),
            bounded(path, ADMISSION_PATHS),
        )
        if (series := self._admission_series.get(labels)) is None:
            series = self._admission_series[labels] = self._admissions.labels(*labels)
        series.inc()

    def queue_wait(self, seconds: float, *, admitted: bool) -> None:
        """A shed request left the waiting room, with a place or without one."""
        self._queue_wait.labels(QUEUE_RESULTS[0] if admitted else QUEUE_RESULTS[1]).observe(seconds)

    def limits(
        self,
        *,
        base_global: float,
        effective_global: float,
        base_cap: float,
        effective_cap: float,
        base_global_tokens: float = 0,
        effective_global_tokens: float = 0,
    ) -> None:
        """The configured limits and what the governor makes of them now."""
        self._global_limit.labels("base").set(base_global)
        self._global_limit.labels("effective").set(effective_global)
        self._inflight_cap.labels("base").set(base_cap)
        self._inflight_cap.labels("effective").set(effective_cap)
        self._global_token_limit.labels("base").set(base_global_tokens)
        self._global_token_limit.labels("effective").set(effective_global_tokens)

    def pressure(self, signals: Mapping[str, float], combined: float, factor: float) -> None:
        """The governor's inputs and result; a signal missing from `signals` is removed."""
        current: dict[str, float] = {}
        for name, value in signals.items():
            if math.isfinite(value):
                label = bounded(name, PRESSURE_SIGNALS)  # unknown ones share `other`, at their max
                current[label] = max(value, current.get(label, value))
        replace_series(self._pressure, (), self._pressure_signals, current)
        self._pressure_signals = set(current)
        self._pressure_combined.set(combined)
        self._governor_factor.set(factor)

    # -- upstream health ----------------------------------------------------------------------

    def breaker_changed(self, old: str | Enum, new: str | Enum) -> None:
        """The breaker moved from `old` to `new` (closed, open, half_open)."""
        old_state, new_state = bounded(old, BREAKER_STATES), bounded(new, BREAKER_STATES)
        self._breaker_state.set(new_state)
        if old_state != new_state:
            self._breaker_transitions.labels(old_state, new_state).inc()

    def upstream_outage(self, outage_class: str | Enum | None) -> None:
        """The current diagnosis of the model path: a class, or None when it is healthy."""
        label = None if outage_class is None else _outage(outage_class)
        if label == self._outage_shown:  # set again on every answered chat: mostly no change
            return
        self._upstream_up.set(0 if label is not None else 1)
        self._upstream_outage.set(label)
        self._outage_shown = label

    def token_doors(self, refused: Iterable[str | Enum]) -> None:
        """The doors whose token is refused now (the others are fine)."""
        shut = {bounded(door, TOKEN_DOORS) for door in refused}
        for door in TOKEN_DOORS:
            self._token_invalid.labels(door).set(1 if door in shut else 0)

    def model_state(self, state: str | Enum) -> None:
        """What the health check last said of LLMGW_MODEL."""
        self._model_state.set(bounded(state, MODEL_STATES))

    def upstream_failure(self, outage_class: str | Enum) -> None:
        """One upstream call failed, for the diagnosed reason."""
        self._upstream_failures.labels(_outage(outage_class)).inc()

    # -- Redis ----------------------------------------------------------------------------------

    def redis_state(self, *, up: bool, fallback_active: bool) -> None:
        """Whether Redis answers, and whether the in-process fallback limiter is admitting."""
        self._redis_up.set(1 if up else 0)
        self._redis_fallback.set(1 if fallback_active else 0)

    def redis_command(self, seconds: float, *, ok: bool) -> None:
        """One Redis round trip took `seconds` and did or did not succeed."""
        self._redis_duration.observe(max(seconds, 0.0))
        if not ok:
            self._redis_errors.inc()

    # -- the probe on the model host ------------------------------------------------------------

    def probe_snapshot(
        self, host: str, timestamp: float, signals: Mapping[str, float | None]
    ) -> None:
        """A probe snapshot: re-export its known signals; unknown, missing or None ones vanish."""
        label = self._host_label(host)
        self._probe_seen.labels(label).set(timestamp)
        current = {
            name: float(value)
            for name, value in signals.items()
            if name in PROBE_SIGNALS and value is not None and math.isfinite(value)
        }
        replace_series(self._probe_signal, (label,), self._probe_hosts.get(label, set()), current)
        self._probe_hosts[label] = set(current)

    def probe_gone(self, host: str) -> None:
        """The host's snapshot expired: drop its signals, keep its last-seen time for alerts."""
        label = self._host_label(host)
        replace_series(self._probe_signal, (label,), self._probe_hosts.get(label, set()), {})
        self._probe_hosts[label] = set()

    def _host_label(self, host: str) -> str:
        if host in self._probe_hosts:
            return host
        fits = len(self._probe_hosts) < MAX_PROBE_HOSTS
        return host if fits and HOST_NAME.fullmatch(host) else OTHER

    # -- exposition -----------------------------------------------------------------------------

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and content type for a scrape: OpenMetrics (with exemplars) when asked."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _outage(outage_class: str | Enum) -> str:
    return bounded(outage_class, OUTAGE_CLASSES)
