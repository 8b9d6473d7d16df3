"""POST /api/chat: validate, identify, admit in one Redis round trip, then relay the stream."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, post
from litestar.response import Stream
from redis.exceptions import RedisError

from app.chat_request import parse_chat_request
from app.errors import ServiceUnavailable, UpstreamTimeout
from app.relay import StreamRecord, relay
from app.upstream import build_payload, open_stream

if TYPE_CHECKING:
    from app.admission import Decision
    from app.services import Services
    from app.visitor import Visitor

log = logging.getLogger("llmgw.chat")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
    decision = await _admit(services, visitor)
    headers = rate_limit_headers(decision, services.settings.window_seconds)
    if not decision.admitted:
        return rejection(decision, headers)
    record = StreamRecord(started=time.monotonic())
    payload = build_payload(chat_request, services.settings)
    upstream = await _open(services, payload, record)
    return Stream(
        relay(upstream, services.timeouts, record),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **headers},
    )


async def _admit(services: Services, visitor: Visitor) -> Decision:
    try:
        return await services.admitter.admit(visitor.ids)
    except RedisError as exc:
        log.warning("admission failed, Redis unavailable: %s", type(exc).__name__)
        raise ServiceUnavailable("the service is busy, try again soon", retry_after=5) from None


async def _open(services: Services, payload: bytes, record: StreamRecord) -> Any:
    timeouts = services.timeouts
    try:
        async with asyncio.timeout(min(timeouts.first_token, timeouts.total)):
            return await open_stream(services.upstream, payload)
    except TimeoutError:
        record.outcome = "timeout"
        raise UpstreamTimeout("the model server did not answer in time") from None


def rate_limit_headers(decision: Decision, window_seconds: int) -> dict[str, str]:
    """RateLimit headers (IETF draft) for the window that decided."""
    return {
        "RateLimit-Limit": str(decision.quota),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.retry_after),
        "RateLimit-Policy": f'{decision.quota};w={window_seconds};comment="{decision.limit}"',
    }


def rejection(decision: Decision, headers: dict[str, str]) -> Response[dict[str, object]]:
    """The 429 a visitor gets, saying whose limit it was and when to come back."""
    whose = "your" if decision.limit == "visitor" else "everyone's"
    wait = decision.retry_after
    body: dict[str, object] = {
        "error": f"too many requests: {whose} limit is spent, try again in {wait} s",
        "limit": str(decision.limit),
        "retry_after": decision.retry_after,
    }
    return Response(
        body, status_code=429, headers={**headers, "Retry-After": str(decision.retry_after)}
    )
