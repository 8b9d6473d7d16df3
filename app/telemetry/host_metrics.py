"""The metrics of several model hosts and the hosted fallback (issue 15): each host's state as
the router sees it (`llmgw_host_up`, breaker, outage, model, pressure, cap), every host's
streams, routing, requests and first tokens, and the fallback's tokens against its daily budget.

They are part of `GatewayMetrics` (a mixin on its registry, so that metrics.py stays one
concern per screen). The host label is bounded to the configured home hosts and `fallback`:
the names come from the settings, and any other value is `other`. Every host's series exist
from `hosts_configured` on, at zero or unknown, so rates and alerts see the first event.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Final

from prometheus_client import Counter, Gauge, Histogram

from app.settings import FALLBACK_HOST
from app.telemetry.buckets import TIME_TO_FIRST_TOKEN_BUCKETS
from app.telemetry.labels import (
    BREAKER_STATES,
    MODEL_STATES,
    OUTAGE_CLASSES,
    OUTCOMES,
    ROUTE_REASONS,
    bounded,
)
from app.telemetry.series import OneHot, observe

if TYPE_CHECKING:
    from collections.abc import Sequence

    from prometheus_client import CollectorRegistry

_NOT_REPORTED: Final = math.nan  # a host's state before its first report


class _Families:
    """The host metrics' families, made once on the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        counter = partial(Counter, registry=registry)
        gauge = partial(Gauge, registry=registry)
        self.up = gauge(
            "llmgw_host_up",
            "1 when the host can take new conversations (breaker not open, no outage).",
            ["host"],
        )
        self.breaker = gauge(
            "llmgw_host_breaker_state", "1 for the host's breaker state.", ["host", "state"]
        )
        self.outage = gauge(
            "llmgw_host_outage", "1 for the host's diagnosed outage.", ["host", "class"]
        )
        self.model_state = gauge(
            "llmgw_host_model_state",
            "1 for what the host's model server says of its model.",
            ["host", "state"],
        )
        self.pressure = gauge(
            "llmgw_host_pressure", "Pressure the host's governor uses, 0..1.", ["host"]
        )
        self.factor = gauge(
            "llmgw_host_governor_factor", "The host's effective cap over its base.", ["host"]
        )
        self.cap = gauge(
            "llmgw_host_inflight_cap",
            "Streams at once the host's public lane may reach now.",
            ["host"],
        )
        self.inflight = gauge(
            "llmgw_host_inflight", "Streams this replica holds on the host now.", ["host"]
        )
        self.routed = counter(
            "llmgw_host_routed_total",
            "Conversations sent to a host, by why: new, follow_up, moved, waker, fallback.",
            ["host", "reason"],
        )
        self.requests = counter(
            "llmgw_host_requests_total",
            "Requests finished, by host and outcome.",
            ["host", "outcome"],
        )
        self.ttft = Histogram(
            "llmgw_host_time_to_first_token_seconds",
            "Time from admission to the first token, by host.",
            ["host"],
            buckets=TIME_TO_FIRST_TOKEN_BUCKETS,
            registry=registry,
        )


class _HostTraffic:
    """One host's streams, routing, requests and first tokens, home host or fallback: its
    children looked up once (`labels()` takes a lock and builds a tuple on every call)."""

    def __init__(self, families: _Families, host: str) -> None:
        self._families, self._host = families, host
        self.inflight = families.inflight.labels(host)
        self.inflight.set(0)
        self.ttft = families.ttft.labels(host)
        self._routed = {reason: families.routed.labels(host, reason) for reason in ROUTE_REASONS}
        self._requests = {outcome: families.requests.labels(host, outcome) for outcome in OUTCOMES}

    def routed(self, reason: str) -> None:
        if (series := self._routed.get(reason)) is None:  # only ever `other`
            series = self._routed[reason] = self._families.routed.labels(self._host, reason)
        series.inc()

    def request(self, outcome: str) -> None:
        if (series := self._requests.get(outcome)) is None:  # only ever `other`
            series = self._requests[outcome] = self._families.requests.labels(self._host, outcome)
        series.inc()


class _HostHealth:
    """One host's state gauges (every home host's from the start, the fallback's once reported):
    breaker closed, no outage and the model unknown at start, as the site's are; up, pressure,
    factor and cap unknown until its first report."""

    def __init__(self, families: _Families, host: str) -> None:
        self.up = families.up.labels(host)
        self.pressure = families.pressure.labels(host)
        self.factor = families.factor.labels(host)
        self.cap = families.cap.labels(host)
        for gauge in (self.up, self.pressure, self.factor, self.cap):
            gauge.set(_NOT_REPORTED)
        self.breaker = OneHot(families.breaker, BREAKER_STATES, (host,))
        self.outage = OneHot(families.outage, OUTAGE_CLASSES, (host,))
        self.model_state = OneHot(families.model_state, MODEL_STATES, (host,))
        self.breaker.set("closed")
        self.outage.set(None)
        self.model_state.set("unknown")


class HostMetrics:
    """The per-host and fallback half of `GatewayMetrics`, on its registry."""

    registry: CollectorRegistry

    def _host_metrics(self) -> None:
        self._host_families = _Families(self.registry)
        self._host_names: frozenset[str] = frozenset({FALLBACK_HOST})
        self._hosts_traffic: dict[str, _HostTraffic] = {}
        self._hosts_health: dict[str, _HostHealth] = {}
        gauge = partial(Gauge, registry=self.registry)
        self._fallback_tokens = Counter(
            "llmgw_fallback_tokens_total",
            "Tokens the hosted fallback spent, from its usage.",
            registry=self.registry,
        )
        self._fallback_used = gauge(
            "llmgw_fallback_budget_used_tokens",
            "Tokens the fallback spent today, across replicas (0 with no fallback configured).",
        )
        self._fallback_limit = gauge(
            "llmgw_fallback_budget_tokens",
            "The fallback's daily token budget (0: no fallback configured).",
        )

    def hosts_configured(self, hosts: Sequence[str]) -> None:
        """The home hosts' names, once at start: the host label takes these and `fallback`
        (anything else is `other`), and each host's series start at zero or unknown."""
        self._host_names = frozenset(hosts) | {FALLBACK_HOST}
        for host in (*hosts, FALLBACK_HOST):
            self._host_traffic(host)
        for host in hosts:
            self._host_health(host)

    def host_state(
        self,
        host: str,
        *,
        serving: bool,
        breaker: str,
        outage: str | None,
        model_state: str,
        pressure: float,
        factor: float,
        inflight_cap: int,
    ) -> None:
        """A host's state now, once a second: whether it can take new conversations, its
        breaker, diagnosed outage (None: healthy), model, pressure, governor factor and the
        public lane's cap on it."""
        health = self._host_health(self._bounded_host(host))
        health.up.set(1 if serving else 0)
        health.breaker.set(bounded(breaker, BREAKER_STATES))
        health.outage.set(None if outage is None else bounded(outage, OUTAGE_CLASSES))
        health.model_state.set(bounded(model_state, MODEL_STATES))
        health.pressure.set(pressure)
        health.factor.set(factor)
        health.cap.set(inflight_cap)

    def host_stream(self, host: str, change: int) -> None:
        """A stream on the host began (+1) or ended (-1) on this replica."""
        self._host_traffic(self._bounded_host(host)).inflight.inc(change)

    def host_inflight(self, host: str) -> int:
        """Streams this replica holds on the host now (what `host_stream` counted)."""
        traffic = self._hosts_traffic.get(self._bounded_host(host))
        return 0 if traffic is None else int(traffic.inflight._value.get())  # noqa: SLF001

    def host_routed(self, host: str, reason: str) -> None:
        """A conversation went to the host, for this reason (ROUTE_REASONS)."""
        self._host_traffic(self._bounded_host(host)).routed(bounded(reason, ROUTE_REASONS))

    def host_request(self, host: str, outcome: str) -> None:
        """A request the host served is done, with this outcome."""
        self._host_traffic(self._bounded_host(host)).request(bounded(outcome, OUTCOMES))

    def host_first_token(self, host: str, seconds: float) -> None:
        """The host's answer reached its first token `seconds` after admission."""
        observe(self._host_traffic(self._bounded_host(host)).ttft, seconds, None)

    def fallback_tokens(self, tokens: int) -> None:
        """The fallback spent `tokens` on one answer, by its usage."""
        self._fallback_tokens.inc(max(tokens, 0))

    def fallback_budget(self, *, used: int, limit: int) -> None:
        """Today's fallback tokens across replicas and the day's budget; with no fallback
        configured (`limit` 0) both read 0, which the alert and the dashboard read as none."""
        configured = limit > 0
        self._fallback_used.set(max(used, 0) if configured else 0)
        self._fallback_limit.set(limit if configured else 0)

    def _bounded_host(self, host: str) -> str:
        return bounded(host, self._host_names)

    def _host_traffic(self, label: str) -> _HostTraffic:
        if (traffic := self._hosts_traffic.get(label)) is None:
            traffic = self._hosts_traffic[label] = _HostTraffic(self._host_families, label)
        return traffic

    def _host_health(self, label: str) -> _HostHealth:
        if (health := self._hosts_health.get(label)) is None:
            health = self._hosts_health[label] = _HostHealth(self._host_families, label)
        return health
