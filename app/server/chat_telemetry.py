"""The telemetry of one chat request: its server span, its outcome in the metrics, and the
one structured log line it leaves behind."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry.trace import INVALID_SPAN, SpanKind, StatusCode

from app.errors import (
    BreakerOpen,
    ModelNotFound,
    PassInvalid,
    PassRequired,
    Shed,
    Unauthorized,
    UpstreamBusy,
    UpstreamError,
    UpstreamIncompatible,
    UpstreamTimeout,
    VisitorsError,
)
from app.telemetry.logs import REQUEST_LOGGER, log_request
from app.telemetry.tracing import incoming_context, trace_id_of, tracer, tracing_on

if TYPE_CHECKING:
    from collections.abc import Iterable

    from opentelemetry import trace

    from app.server.services import Services
    from app.upstream.relay import StreamRecord

ROUTE = "/api/chat"
REQUEST_LOG = logging.getLogger(REQUEST_LOGGER)
HOSTS_LOG = logging.getLogger("llmgw.hosts")


# Refusals and failures by their outcome label, each class before the ones it refines.
_OUTCOMES: tuple[tuple[type[Exception], str], ...] = (
    (BreakerOpen, "breaker_open"),
    (Unauthorized, "unauthorized"),
    (PassRequired, "unauthorized"),  # a visitor pass needed, or a bad one: 401 as a bad key is
    (PassInvalid, "unauthorized"),
    (ModelNotFound, "model_not_found"),
    (Shed, "shed"),
    (UpstreamBusy, "shed"),
    (UpstreamTimeout, "timeout"),
    (UpstreamIncompatible, "upstream_incompatible"),  # a server without the Responses API
    (UpstreamError, "upstream_error"),
)


def outcome_of(exc: Exception) -> str:
    """The outcome label of a refusal or failure that happened before the stream."""
    if isinstance(exc, VisitorsError):
        return exc.code  # context_full, conversation_expired or upstream_rejected
    return next((label for kind, label in _OUTCOMES if isinstance(exc, kind)), "bad_request")


def server_span(headers: Iterable[tuple[bytes, bytes]], route: str) -> trace.Span:
    """The request's server span, continuing the caller's trace; none when not tracing (it is
    asked once per request: off, no span, context or attributes are made)."""
    if not tracing_on():
        return INVALID_SPAN
    return tracer().start_span(
        f"POST {route}",
        context=incoming_context(headers),  # type: ignore[arg-type]
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "http.route": route},
    )


@dataclass(slots=True)
class Call:
    """One request's telemetry: its span, when it arrived, and its one log line; its route,
    its lane, and for a keyed client the key's name (never the key)."""

    services: Services
    span: trace.Span
    route: str = ROUTE
    lane: str = "public"
    key: str | None = None
    arrived: float = field(default_factory=time.monotonic)
    visitor: str | None = None
    refused_by: str | None = None
    content: str | None = None
    host: str | None = None  # the model host its admission picked

    def retried(self, outage: object) -> None:
        """Its host failed before the stream started: it goes to another."""
        HOSTS_LOG.warning(
            "host %s failed before the stream (%s): trying another", self.host, outage
        )
        if self.tracing:
            self.span.add_event("llmgw.host_failed", {"llmgw.host": self.host or ""})

    def routed(self, host: str, reason: str) -> None:
        """The admission picked `host` (for a new conversation, a follow-up, a move...)."""
        self.host = host
        self.services.metrics.host_routed(host, reason)
        if self.tracing:
            self.span.set_attribute("llmgw.host", host)

    @property
    def tracing(self) -> bool:
        """Whether this request is traced (its server span is a real one)."""
        return self.span is not INVALID_SPAN

    @property
    def trace_id(self) -> str | None:
        return trace_id_of(self.span)

    def done(self, outcome: str, status: int, record: StreamRecord | None = None) -> None:
        """Record the outcome in metrics, the log line and the span, and end the span."""
        seconds = time.monotonic() - self.arrived
        trace_id = self.trace_id
        metrics = self.services.metrics
        metrics.request_finished(self.route, outcome, seconds, trace_id)
        metrics.lane_request(self.lane, outcome, self.key)
        if self.host is not None:
            metrics.host_request(self.host, outcome)
        if REQUEST_LOG.isEnabledFor(logging.INFO):
            self._log(outcome, status, seconds, record)
        if self.tracing:
            self._end_span(outcome, status)

    def _end_span(self, outcome: str, status: int) -> None:
        self.span.set_attribute("http.response.status_code", status)
        self.span.set_attribute("llmgw.outcome", outcome)
        if outcome not in ("ok", "client_cancelled") and not outcome.startswith("rate_limited"):
            self.span.set_status(StatusCode.ERROR, outcome)
        self.span.end()

    def _log(self, outcome: str, status: int, seconds: float, record: StreamRecord | None) -> None:
        ttft = None if record is None else record.ttft
        usage = (record.usage if record else None) or {}
        log_request(
            route=self.route,
            lane=self.lane,
            key=self.key,
            host=self.host,
            status=status,
            outcome=outcome,
            duration_ms=round(seconds * 1000, 2),
            ttft_ms=None if ttft is None else round(ttft * 1000, 2),
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            visitor=self.visitor,
            trace_id=self.trace_id,
            response_id=record.response_id if record else None,
            input=self.content,
        )
