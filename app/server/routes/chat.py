"""POST /api/chat: validate, identify, ask the breaker, admit in one Redis round trip, relay."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litestar import Request, post
from litestar.exceptions import HTTPException
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from app.admission.decision import Conversation, Decision, Limit
from app.chat.request import parse_chat_request
from app.errors import (
    BreakerOpen,
    GatewayError,
    NotFound,
    Shed,
    UpstreamError,
    UpstreamTimeout,
    VisitorsError,
)
from app.server.chat_telemetry import ROUTE, Call, outcome_of
from app.server.routes.raw_responses import EventStream, JsonAnswer
from app.telemetry.tracing import (
    current_span,
    incoming_context,
    outgoing_headers,
    span_in_use,
    tracer,
    tracing_on,
)
from app.upstream.client import build_payload, open_stream
from app.upstream.relay import StreamRecord, relay

if TYPE_CHECKING:
    from litestar.types import ASGIApp

    from app.chat.visitor import Visitor
    from app.protection.breaker import Permit
    from app.server.services import Services
    from app.upstream.client import StreamedAnswer

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Outcomes after which the upstream counts as failing, for the breaker.
UPSTREAM_FAILURES = frozenset({"upstream_error", "timeout"})


@post(ROUTE, status_code=200, summary="Chat with the model (SSE stream)")
async def chat(request: Request[Any, Any, Any]) -> ASGIApp:
    """Stream the model's answer as Server-Sent Events, or refuse with a JSON error."""
    services: Services = request.app.state.services
    span: trace.Span = trace.INVALID_SPAN
    if tracing_on():  # asked once per request; off, no span, context or attributes are made
        span = tracer().start_span(
            f"POST {ROUTE}",
            context=incoming_context(request.scope["headers"]),  # type: ignore[arg-type]
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "POST", "http.route": ROUTE},
        )
    call = Call(services, span)
    try:
        with span_in_use(span):
            response = await _chat(request, call)
    except (GatewayError, HTTPException) as exc:
        status = exc.status_code
        call.done(outcome_of(exc), status)
        raise
    if isinstance(response, JsonAnswer):
        call.done(f"rate_limited_{call.refused_by}", response.status_code)
    return response


async def _chat(request: Request[Any, Any, Any], call: Call) -> EventStream | JsonAnswer:
    services = call.services
    chat_request = parse_chat_request(await request.body(), services.bounds)
    visitor = services.identifier.identify(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        request.headers.get("x-thumbmark-id"),
    )
    call.visitor = visitor.owner[:12]  # a short prefix of the keyed hash: enough to follow one
    if services.settings.log_content:
        call.content = str(chat_request.input)[:500]
    permit = services.breaker.permit()
    if permit is None:  # the local fast path: no Redis, no upstream
        wait = max(1, round(services.breaker.retry_after()))
        raise BreakerOpen("the model is unavailable right now, try again soon", retry_after=wait)

    async def attempt() -> Decision:
        return await services.limiter.admit(
            visitor.ids,
            services.governor.limits(),
            continues=chat_request.previous_response_id,
            owner=visitor.owner,
        )

    with current_span("admission", on=call.tracing) as admission_span:
        decision = await attempt()
        if decision.limit is Limit.INFLIGHT:  # shed: wait briefly in line for a place
            decision, waited = await services.waiting_room.admit(attempt, decision)
            if waited is not None:
                services.metrics.queue_wait(waited, admitted=decision.admitted)
                admission_span.set_attribute("llmgw.admission.queued_seconds", waited)
        admission_span.set_attribute("llmgw.admission.admitted", decision.admitted)
        admission_span.set_attribute("llmgw.admission.path", decision.path)
    services.metrics.admission("admitted" if decision.admitted else decision.limit, decision.path)
    headers = rate_limit_headers(decision, services.settings.window_seconds)
    if not decision.admitted:
        services.breaker.give_back(permit)
        call.refused_by = str(decision.limit)
        return rejection(decision, headers)
    exchange = Exchange(call, permit, decision, visitor)
    upstream = await exchange.open(build_payload(chat_request, services.settings))
    return EventStream(
        relay(upstream, services.timeouts, exchange.record, exchange.finish, exchange.started),
        SSE_HEADERS | headers,
    )


@dataclass(slots=True)
class Exchange:
    """One admitted chat: what it holds (a breaker permit, a lease) and how it ends."""

    call: Call
    permit: Permit
    decision: Decision
    visitor: Visitor
    record: StreamRecord = field(default_factory=lambda: StreamRecord(started=time.monotonic()))
    genai: trace.Span = field(default=trace.INVALID_SPAN)

    @property
    def services(self) -> Services:
        return self.call.services

    async def open(self, payload: bytes) -> StreamedAnswer:
        """Open the upstream stream; on failure give back what was taken and say why."""
        services = self.services
        model = services.settings.model
        if self.call.tracing:  # off: no span, not even the no-op tracer's (it costs a lookup)
            self.genai = tracer().start_span(
                f"chat {model}",
                kind=SpanKind.CLIENT,
                attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": model},
            )
        try:
            with span_in_use(self.genai):
                return await self._send(payload)
        except VisitorsError as exc:  # the request's own fault: the host is fine
            self.genai.set_status(StatusCode.ERROR, exc.code)
            self.genai.end()
            await services.limiter.release(self.decision)
            services.breaker.give_back(self.permit)
            raise
        except (UpstreamError, TimeoutError) as exc:
            self.genai.set_status(StatusCode.ERROR, type(exc).__name__)
            self.genai.end()
            await services.limiter.release(self.decision)
            services.breaker.failure(self.permit)
            if isinstance(exc, UpstreamError):
                if exc.outage is not None:
                    services.monitor.observe(exc.outage)
                raise
            raise UpstreamTimeout("the model server did not answer in time") from None

    async def _send(self, payload: bytes) -> StreamedAnswer:
        timeouts = self.services.timeouts
        with current_span("POST", kind=SpanKind.CLIENT) as http_span:
            http_span.set_attribute("http.request.method", "POST")
            async with asyncio.timeout(min(timeouts.first_token, timeouts.total)):
                response = await open_stream(
                    self.services.upstream, payload, outgoing_headers(http_span)
                )
            http_span.set_attribute("http.response.status_code", response.status_code)
            return response

    def started(self) -> None:
        """The body began to flow."""
        self.services.metrics.stream_started()

    async def finish(self, record: StreamRecord) -> None:
        """Give back the lease, tell the breaker and the monitor, record what happened."""
        services = self.services
        conversation = None  # only an answered response can be continued
        if record.response_id is not None and record.usage is not None:
            conversation = Conversation(record.response_id, self.visitor.owner)
        await services.limiter.release(self.decision, conversation)
        if record.outcome in UPSTREAM_FAILURES:
            services.breaker.failure(self.permit)
        elif record.first_token_at is not None:
            services.breaker.success(self.permit)
            services.monitor.observe(None)
            services.ttft.observe(record.first_token_at - record.started, time.monotonic())
        else:
            services.breaker.give_back(self.permit)
        self._record(record)
        self.call.done(record.outcome, 200, record)

    def _record(self, record: StreamRecord) -> None:
        metrics, now, trace_id = self.services.metrics, time.monotonic(), self.call.trace_id
        metrics.stream_ended()
        usage = record.usage or {}
        output = int(usage.get("output_tokens") or 0)
        details = usage.get("output_tokens_details") or {}
        self._end_genai_span(record, output)
        if record.first_token_at is None:
            return
        metrics.first_token(record.first_token_at - record.started, trace_id)
        metrics.time_per_output_token(now - record.first_token_at, output, trace_id)
        metrics.tokens(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=output,
            reasoning_tokens=int(details.get("reasoning_tokens") or 0),
        )

    def _end_genai_span(self, record: StreamRecord, output_tokens: int) -> None:
        span = self.genai
        if span is trace.INVALID_SPAN:  # not tracing
            return
        if record.response_id:
            span.set_attribute("gen_ai.response.id", record.response_id)
        if record.usage:
            span.set_attribute(
                "gen_ai.usage.input_tokens", int(record.usage.get("input_tokens") or 0)
            )
            span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if record.ttft is not None:
            span.set_attribute("gen_ai.response.time_to_first_chunk", record.ttft)
        if record.outcome not in ("ok", "client_cancelled"):
            span.set_status(StatusCode.ERROR, record.outcome)
        span.end()


def rate_limit_headers(decision: Decision, window_seconds: int) -> dict[str, str]:
    """RateLimit headers (IETF draft) for the window that decided; none for the in-flight cap."""
    limit = decision.limit
    if limit is Limit.INFLIGHT or limit is Limit.CONVERSATION:
        return {}
    quota = str(decision.quota)
    return {
        "RateLimit-Limit": quota,
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.retry_after),
        "RateLimit-Policy": f'{quota};w={window_seconds};comment="{limit}"',
    }


def rejection(decision: Decision, headers: dict[str, str]) -> JsonAnswer:
    """A 429 saying whose limit it was and when to come back; a 503 when shed; 404 for a
    conversation that is not this visitor's."""
    wait = decision.retry_after
    if decision.limit is Limit.CONVERSATION:
        raise NotFound("no such conversation: previous_response_id is unknown or not yours")
    if decision.limit is Limit.INFLIGHT:
        raise Shed("the model is busy right now, try again in a moment", retry_after=wait)
    whose = "your" if decision.limit is Limit.VISITOR else "everyone's"
    body: dict[str, object] = {
        "error": f"too many requests: {whose} limit is spent, try again in {wait} s",
        "limit": str(decision.limit),
        "retry_after": wait,
    }
    headers["Retry-After"] = str(wait)  # the caller's dict, made for this answer alone
    return JsonAnswer(body, 429, headers)
