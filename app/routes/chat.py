"""POST /api/chat: validate, identify, ask the breaker, admit in one Redis round trip, relay."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, post
from litestar.response import Stream

from app.admission import Decision, Limit
from app.chat_request import parse_chat_request
from app.errors import BreakerOpen, NotFound, Shed, UpstreamError, UpstreamTimeout
from app.relay import StreamRecord, relay
from app.upstream import build_payload, open_stream

if TYPE_CHECKING:
    import httpx

    from app.breaker import Permit
    from app.services import Services
    from app.visitor import Visitor

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Outcomes after which the upstream counts as failing, for the breaker.
UPSTREAM_FAILURES = frozenset({"upstream_error", "timeout"})


@post("/api/chat", status_code=200, summary="Chat with the model (SSE stream)")
async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
    """Stream the model's answer as Server-Sent Events, or refuse with a JSON error."""
    services: Services = request.app.state.services
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
    headers = rate_limit_headers(decision, services.settings.window_seconds)
    if not decision.admitted:
        services.breaker.give_back(permit)
        return rejection(decision, headers)
    record = StreamRecord(started=time.monotonic())
    upstream = await _open(
        services, build_payload(chat_request, services.settings), permit, decision
    )
    return Stream(
        relay(upstream, services.timeouts, record, _finisher(services, permit, decision, visitor)),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **headers},
    )


async def _open(
    services: Services, payload: bytes, permit: Permit, decision: Decision
) -> httpx.Response:
    timeouts = services.timeouts
    try:
        async with asyncio.timeout(min(timeouts.first_token, timeouts.total)):
            return await open_stream(services.upstream, payload)
    except (UpstreamError, TimeoutError) as exc:
        await services.limiter.release(decision)
        services.breaker.failure(permit)
        if isinstance(exc, UpstreamError):
            services.monitor.observe(exc.outage) if exc.outage else None
            raise
        raise UpstreamTimeout("the model server did not answer in time") from None


def _finisher(services: Services, permit: Permit, decision: Decision, visitor: Visitor) -> Any:
    async def finish(record: StreamRecord) -> None:
        await services.limiter.release(decision)
        if record.response_id is not None and record.usage is not None:
            await services.limiter.remember_conversation(record.response_id, visitor.owner)
        if record.outcome in UPSTREAM_FAILURES:
            services.breaker.failure(permit)
        elif record.first_token_at is not None:
            services.breaker.success(permit)
            services.monitor.observe(None)
            services.ttft.observe(record.first_token_at - record.started, time.monotonic())
        else:
            services.breaker.give_back(permit)

    return finish


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


def rejection(decision: Decision, headers: dict[str, str]) -> Response[dict[str, object]]:
    """A 429 saying whose limit it was and when to come back; a 503 when shed."""
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
    return Response(body, status_code=429, headers={**headers, "Retry-After": str(wait)})
