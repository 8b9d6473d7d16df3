"""POST /api/chat: validate, identify, ask the breaker, admit in one Redis round trip, relay."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from litestar import Request, post
from litestar.exceptions import HTTPException

from app.access.keys import Lane
from app.admission.decision import Decision, Limit, Scope, refusal
from app.chat.request import parse_chat_request
from app.chat.tokens import to_reserve
from app.errors import (
    BreakerOpen,
    ConversationExpired,
    GatewayError,
    NotFound,
    Shed,
    TooManyTokens,
)
from app.rag.plan import may_read, reserved_for_posts
from app.server.chat_telemetry import ROUTE, Call, outcome_of, server_span
from app.server.pass_gate import pass_scope
from app.server.routes.raw_responses import EventStream, JsonAnswer
from app.server.routes.routing import has_transcript, on_some_host, routed_exchange
from app.server.routes.waking import WakingChat
from app.telemetry.tracing import current_span, span_in_use
from app.upstream.hosts import UNAVAILABLE_MESSAGE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from litestar.types import ASGIApp
    from opentelemetry import trace

    from app.chat.request import ChatRequest
    from app.chat.visitor import Visitor
    from app.server.services import Services

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
WAKING_RETRY_SECONDS = 10
_NO_WINDOW = frozenset(
    {Limit.INFLIGHT, Limit.CONVERSATION, Limit.CONCURRENCY, Limit.NO_HOST, Limit.FALLBACK_BUDGET}
)  # a full waiting room while the model loads: come back soon
UNAVAILABLE = frozenset({Limit.NO_HOST, Limit.FALLBACK_BUDGET})


@post(ROUTE, status_code=200, summary="Chat with the model (SSE stream)")
async def chat(request: Request[Any, Any, Any]) -> ASGIApp:
    """Stream the model's answer as Server-Sent Events, or refuse with a JSON error."""
    services: Services = request.app.state.services
    span = server_span(request.scope["headers"], ROUTE)
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
    # A visitor pass, when one came or one is needed now (LLMGW_PASS): checked without Redis,
    # refused with a 401 before anything is spent or sent to the model.
    address = None if visitor.address is None else str(visitor.address)
    held = services.passes.check(request.headers.get("x-visitor-pass"), address)
    scopes: tuple[Scope, ...] = ()
    if held is not None:
        visitor = replace(visitor, pass_id=f"pass:{held.id}")
        scopes = (pass_scope(held),)
    elif (network := services.passes.network_scope(address)) is not None:
        scopes = (network,)  # adaptive: this network's chats without a pass, in the same trip
    call.visitor = visitor.owner[:12]  # a short prefix of the keyed hash: enough to follow one
    if services.settings.log_content:
        call.content = str(chat_request.input)[:500]
    try:
        return await on_some_host(call, lambda: _on_a_host(call, chat_request, visitor, scopes))
    except ConversationExpired:
        # Its host is up but forgot the conversation (LM Studio restarted): once more, from
        # the transcript kept here, if there is one.
        if not await has_transcript(services, chat_request.previous_response_id):
            raise
        retry = lambda: _on_a_host(call, chat_request, visitor, scopes, lost=True)  # noqa: E731
        return await on_some_host(call, retry)


async def _on_a_host(
    call: Call,
    chat_request: ChatRequest,
    visitor: Visitor,
    scopes: tuple[Scope, ...] = (),
    *,
    lost: bool = False,
) -> EventStream | JsonAnswer:
    """Admit the chat, pick its host in the same round trip, and open its stream there."""
    services = call.services
    offer = services.hosts.offer()  # every breaker open: a 503 at once, no Redis, no upstream
    tokens = to_reserve(chat_request, services.settings)
    if may_read(services.settings, services.posts):  # its rounds or passages, refunded at its end
        tokens += reserved_for_posts(chat_request, services.settings)

    async def attempt(*, fallback_on_full: bool = False) -> Decision:
        slots = offer.slots(Lane.PUBLIC)  # asked again on each try: a model may have woken
        if not slots:
            return refusal(Limit.NO_HOST, 0, 1.0, path="local")
        asleep = any(slot.asleep for slot in slots)
        return await services.limiter.admit(
            visitor.ids,
            services.governor.limits(),
            continues=chat_request.previous_response_id,
            owner=visitor.owner,
            wake_seconds=services.settings.model_load_timeout if asleep else None,
            tokens=tokens,
            scopes=scopes,
            hosts=slots,
            fallback_on_full=fallback_on_full,
        )

    try:
        with current_span("admission", on=call.tracing) as admission_span:
            decision = await admitted(call, attempt, admission_span)
    except BaseException:
        offer.give_back()
        raise
    services.metrics.admission("admitted" if decision.admitted else decision.limit, decision.path)
    if decision.waker or decision.limit is Limit.WAKING:
        if not decision.admitted and services.waiting_room.full():
            offer.give_back()
            message = "the model is waking up, try again in a moment"
            raise Shed(message, retry_after=WAKING_RETRY_SECONDS)
        waking = WakingChat(call, offer, visitor, chat_request, decision, attempt)
        return EventStream(waking.stream(), SSE_HEADERS)
    headers = rate_limit_headers(decision, services.settings.window_seconds)
    if not decision.admitted:
        offer.give_back()
        call.refused_by = str(decision.limit)
        if decision.limit is Limit.VISITOR_PASS:  # its chats are used: the widget gets anew
            raise services.passes.spent()
        if decision.limit is Limit.PASS_NETWORK:  # its network is past normal: a pass, then
            raise services.passes.crowded()
        return rejection(decision, headers)
    exchange = await routed_exchange(call, offer, decision, visitor.owner, chat_request, lost=lost)
    await exchange.check_room(chat_request.estimated_tokens())
    upstream = await exchange.open(exchange.payload)
    return EventStream(exchange.stream(upstream), SSE_HEADERS | headers)


async def admitted(
    call: Call, attempt: Callable[..., Awaitable[Decision]], span: trace.Span
) -> Decision:
    """The admission, waiting briefly in line for a place when every host is full; then, with
    LLMGW_FALLBACK_ON_SHED, once more with the hosted fallback allowed."""
    services = call.services
    decision = await attempt()
    if decision.limit is Limit.INFLIGHT:  # shed: wait briefly in line for a place
        decision, waited = await services.waiting_room.admit(attempt, decision)
        if waited is not None:
            services.metrics.queue_wait(waited, admitted=decision.admitted)
            span.set_attribute("llmgw.admission.queued_seconds", waited)
        hosts = services.hosts
        if (
            decision.limit is Limit.INFLIGHT
            and hosts.fallback is not None
            and hosts.fallback_on_shed
        ):
            decision = await attempt(fallback_on_full=True)
    span.set_attribute("llmgw.admission.admitted", decision.admitted)
    span.set_attribute("llmgw.admission.path", decision.path)
    if decision.admitted:
        span.set_attribute("llmgw.host", decision.host)
    return decision


def rate_limit_headers(decision: Decision, window_seconds: int) -> dict[str, str]:
    """RateLimit headers (IETF draft) for the window that decided; none for the in-flight cap,
    a key's streams at once, or a key without windows."""
    limit = decision.limit
    if limit in _NO_WINDOW or decision.quota <= 0:
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
    conversation that is not this visitor's; 400 for a chat no token window can ever hold."""
    wait = decision.retry_after
    if decision.limit is Limit.CONVERSATION:
        raise NotFound("no such conversation: previous_response_id is unknown or not yours")
    if decision.limit is Limit.INFLIGHT:
        raise Shed("the model is busy right now, try again in a moment", retry_after=wait)
    if decision.limit in UNAVAILABLE:  # no host is up, and the fallback may not answer
        raise BreakerOpen(UNAVAILABLE_MESSAGE, retry_after=wait)
    if decision.never_fits and decision.reservation is not None:
        raise TooManyTokens(
            f"this chat needs about {decision.reservation.tokens} tokens, more than the"
            f" {decision.quota} allowed per window: send a shorter message, or start a new"
            " conversation"
        )
    body: dict[str, object] = {
        "error": _refused_because(decision, wait),
        "limit": str(decision.limit),
        "retry_after": wait,
    }
    headers["Retry-After"] = str(wait)  # the caller's dict, made for this answer alone
    return JsonAnswer(body, 429, headers)


def _refused_because(decision: Decision, wait: int) -> str:
    mine = (decision.whose or decision.limit) is Limit.VISITOR
    if decision.limit is Limit.TOKENS:
        spent = "your messages have used up your" if mine else "everyone has used up the"
        return f"too many tokens: {spent} token budget, try again in {wait} s"
    whose = "your" if mine else "everyone's"
    return f"too many requests: {whose} limit is spent, try again in {wait} s"
