"""POST /api/chat: validate, identify, ask the breaker, admit in one Redis round trip, relay."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, post
from litestar.exceptions import HTTPException
from litestar.response import Stream

from app.admission import Decision, Limit
from app.chat_request import parse_chat_request
from app.errors import (
    BreakerOpen,
    GatewayError,
    NotFound,
    Shed,
    UpstreamError,
    UpstreamTimeout,
)
from app.relay import StreamRecord, relay
from app.upstream import build_payload, open_stream

if TYPE_CHECKING:
    import httpx

    from app.breaker import Permit
    from app.services import Services
    from app.visitor import Visitor

ROUTE = "/api/chat"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Outcomes after which the upstream counts as failing, for the breaker.
UPSTREAM_FAILURES = frozenset({"upstream_error", "timeout"})


@post(ROUTE, status_code=200, summary="Chat with the model (SSE stream)")
async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
    """Stream the model's answer as Server-Sent Events, or refuse with a JSON error."""
    services: Services = request.app.state.services
    arrived = time.monotonic()
    try:
        return await _chat(request, services, arrived)
    except (GatewayError, HTTPException) as exc:
        services.metrics.request_finished(ROUTE, outcome_of(exc), time.monotonic() - arrived)
        raise


def outcome_of(exc: Exception) -> str:
    """The outcome label of a refusal or failure that happened before the stream."""
    match exc:
        case BreakerOpen():
            return "breaker_open"
        case Shed():
            return "shed"
        case UpstreamTimeout():
            return "timeout"
        case UpstreamError():
            return "upstream_error"
        case _:
            return "bad_request"


async def _chat(
    request: Request[Any, Any, Any], services: Services, arrived: float
) -> Response[Any]:
    chat_request = parse_chat_request(await request.body(), services.bounds)
    visitor = services.identifier.identify(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        request.headers.get("x-thumbmark-id"),
    )
    permit = services.breaker.permit()
    if permit is None:  # the local fast path: no Redis, no upstream
        wait = max(1, round(services.breaker.retry_after()))
        raise BreakerOpen("the model is unavailable right now, try again soon", retry_after=wait)
    decision = await services.limiter.admit(
        visitor.ids,
        services.governor.limits(),
        continues=chat_request.previous_response_id,
        owner=visitor.owner,
    )
    services.metrics.admission("admitted" if decision.admitted else decision.limit, decision.path)
    headers = rate_limit_headers(decision, services.settings.window_seconds)
    if not decision.admitted:
        services.breaker.give_back(permit)
        return rejection(decision, headers, services, arrived)
    exchange = Exchange(services, permit, decision, visitor, arrived)
    upstream = await exchange.open(build_payload(chat_request, services.settings))
    return Stream(
        relay(upstream, services.timeouts, exchange.record, exchange.finish, exchange.started),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **headers},
    )


@dataclass(slots=True)
class Exchange:
    """One admitted chat: what it holds (a breaker permit, a lease) and how it ends."""

    services: Services
    permit: Permit
    decision: Decision
    visitor: Visitor
    arrived: float
    record: StreamRecord = field(default_factory=lambda: StreamRecord(started=time.monotonic()))

    async def open(self, payload: bytes) -> httpx.Response:
        """Open the upstream stream; on failure give back what was taken and say why."""
        services, timeouts = self.services, self.services.timeouts
        try:
            async with asyncio.timeout(min(timeouts.first_token, timeouts.total)):
                return await open_stream(services.upstream, payload)
        except (UpstreamError, TimeoutError) as exc:
            await services.limiter.release(self.decision)
            services.breaker.failure(self.permit)
            if isinstance(exc, UpstreamError):
                if exc.outage is not None:
                    services.metrics.upstream_failure(exc.outage)
                    services.monitor.observe(exc.outage)
                raise
            raise UpstreamTimeout("the model server did not answer in time") from None

    def started(self) -> None:
        """The body began to flow."""
        self.services.metrics.stream_started()

    async def finish(self, record: StreamRecord) -> None:
        """Give back the lease, tell the breaker and the monitor, record what happened."""
        services = self.services
        await services.limiter.release(self.decision)
        if record.outcome in UPSTREAM_FAILURES:
            services.breaker.failure(self.permit)
        elif record.first_token_at is not None:
            services.breaker.success(self.permit)
            services.monitor.observe(None)
            services.ttft.observe(record.first_token_at - record.started, time.monotonic())
        else:
            services.breaker.give_back(self.permit)
        if record.response_id is not None and record.usage is not None:
            await services.limiter.remember_conversation(record.response_id, self.visitor.owner)
        self._record(record)

    def _record(self, record: StreamRecord) -> None:
        metrics, now = self.services.metrics, time.monotonic()
        metrics.stream_ended()
        metrics.request_finished(ROUTE, record.outcome, now - self.arrived)
        if record.first_token_at is None:
            return
        metrics.first_token(record.first_token_at - record.started)
        usage = record.usage or {}
        output = int(usage.get("output_tokens") or 0)
        metrics.time_per_output_token(now - record.first_token_at, output)
        details = usage.get("output_tokens_details") or {}
        metrics.tokens(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=output,
            reasoning_tokens=int(details.get("reasoning_tokens") or 0),
        )


def rate_limit_headers(decision: Decision, window_seconds: int) -> dict[str, str]:
    """RateLimit headers (IETF draft) for the window that decided; none for the in-flight cap."""
    if decision.limit in (Limit.INFLIGHT, Limit.CONVERSATION):
        return {}
    return {
        "RateLimit-Limit": str(decision.quota),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.retry_after),
        "RateLimit-Policy": f'{decision.quota};w={window_seconds};comment="{decision.limit}"',
    }


def rejection(
    decision: Decision, headers: dict[str, str], services: Services, arrived: float
) -> Response[dict[str, object]]:
    """A 429 saying whose limit it was and when to come back; a 503 when shed; 404 for a
    conversation that is not this visitor's."""
    wait = decision.retry_after
    if decision.limit is Limit.CONVERSATION:
        raise NotFound("no such conversation: previous_response_id is unknown or not yours")
    if decision.limit is Limit.INFLIGHT:
        raise Shed("the model is busy right now, try again in a moment", retry_after=wait)
    whose = "your" if decision.limit is Limit.VISITOR else "everyone's"
    outcome = f"rate_limited_{decision.limit}"
    services.metrics.request_finished(ROUTE, outcome, time.monotonic() - arrived)
    body: dict[str, object] = {
        "error": f"too many requests: {whose} limit is spent, try again in {wait} s",
        "limit": str(decision.limit),
        "retry_after": wait,
    }
    return Response(body, status_code=429, headers={**headers, "Retry-After": str(wait)})
