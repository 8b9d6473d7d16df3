"""POST /v1/chat/completions and POST /v1/responses for keyed clients (the owner's tools, the
members'): validated, admitted against the key's own windows in one Redis round trip, relayed
to the model server with the same deadlines, breaker, cancellation and telemetry as /api/chat,
streamed or not. Refusals and failures come in OpenAI's error shape (app/server/openai_errors),
so the `openai` SDK raises its usual exceptions; a 429 names the limit that refused."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, post
from litestar.exceptions import HTTPException

from app.admission.decision import Decision, Limit, Scope, refusal
from app.chat.openai_bodies import Api, KeyedBounds, KeyedRequest, parse_keyed_request
from app.chat.tokens import estimate
from app.errors import BreakerOpen, ConversationExpired, GatewayError, NotFound, Shed, TooManyTokens
from app.rag.keyed import HEADER as POSTS_HEADER
from app.rag.keyed import Wanted, mode_of, wanted, with_posts
from app.rag.plan import may_read, posts_tokens
from app.server.chat_telemetry import Call, outcome_of, server_span
from app.server.routes.chat import SSE_HEADERS, UNAVAILABLE, rate_limit_headers
from app.server.routes.exchange import Exchange
from app.server.routes.raw_responses import EventStream, JsonAnswer, until_gone
from app.server.routes.routing import given_back, on_some_host, route_reason
from app.telemetry.tracing import current_span, span_in_use
from app.upstream.answer_errors import EXPIRED_MESSAGE
from app.upstream.client import RESPONSES_PATH
from app.upstream.hosts import UNAVAILABLE_MESSAGE
from app.upstream.openai_streams import ChatCompletionsAsIs, ResponsesAsIs

if TYPE_CHECKING:
    from litestar.types import ASGIApp

    from app.access.keys import ApiKey
    from app.protection.governor import PressureGovernor
    from app.server.services import Services
    from app.upstream.hosts import Host, Offer
    from app.upstream.relay import Dialect

CHAT_PATH = "/v1/chat/completions"
CLIENT_GONE = 499
RESPONSES_ASIS = ResponsesAsIs()


@post("/chat/completions", status_code=200, summary="OpenAI Chat Completions, for keys")
async def chat_completions(request: Request[Any, Any, Any]) -> ASGIApp:
    """A chat completion, streamed (SSE) or whole, in OpenAI's shape."""
    return await _keyed(request, Api.CHAT, CHAT_PATH)


@post("/responses", status_code=200, summary="OpenAI Responses, for keys")
async def responses(request: Request[Any, Any, Any]) -> ASGIApp:
    """A response, streamed (SSE) or whole, in OpenAI's shape."""
    return await _keyed(request, Api.RESPONSES, RESPONSES_PATH)


async def _keyed(request: Request[Any, Any, Any], api: Api, route: str) -> ASGIApp:
    services: Services = request.app.state.services
    key: ApiKey = request.state.api_key
    span = server_span(request.scope["headers"], route)
    call = Call(services, span, route=route, lane=str(key.lane), key=key.name)
    try:
        with span_in_use(span):
            response = await _answer(request, call, key, api)
    except (GatewayError, HTTPException) as exc:
        call.done(outcome_of(exc), exc.status_code)
        raise
    if isinstance(response, JsonAnswer) and response.status_code == 429:
        call.done(f"rate_limited_{call.refused_by}", 429)
    return response


async def _answer(
    request: Request[Any, Any, Any], call: Call, key: ApiKey, api: Api
) -> EventStream | JsonAnswer:
    services = call.services
    settings = services.settings
    bounds = KeyedBounds(settings.key_max_input_chars, settings.key_max_output_tokens)
    keyed = parse_keyed_request(await request.body(), api, bounds)
    posts = wanted(request.headers.get(POSTS_HEADER), keyed)  # asked for: the posts' tool
    if settings.log_content:
        call.content = str(keyed.body)[:500]
    if not services.hosts.offer_left():  # first: open breakers ask the model server nothing
        raise services.hosts.closed()
    # Once, before any host is tried: a listing that fails is no host's failure to retry.
    model = await services.models.resolve(keyed.body.model)
    return await on_some_host(
        call, lambda: _on_a_host(request, call, key, keyed, model, posts=posts)
    )


async def _on_a_host(
    request: Request[Any, Any, Any],
    call: Call,
    key: ApiKey,
    keyed: KeyedRequest,
    model: str,
    *,
    posts: Wanted | None = None,
) -> EventStream | JsonAnswer:
    """Admit the chat, pick its host in the same round trip, and answer from there."""
    services = call.services
    settings = services.settings
    api = keyed.api
    extra = _posts_reserve(keyed, key, services) if posts is not None else 0
    offer = services.hosts.offer()
    try:
        decision = await _admitted(call, key, keyed, offer, extra=extra)
    except BaseException:
        offer.give_back()
        raise
    headers = rate_limit_headers(decision, settings.window_seconds)
    if not decision.admitted:
        offer.give_back()
        call.refused_by = str(decision.limit)
        return _refusal(decision, headers, key)
    host, permit = offer.take(decision.host)
    call.routed(host.name, route_reason(decision, host, keyed.previous_response_id))
    if decision.moved:  # its host is out, and a keyed conversation keeps no transcript here
        await given_back(call, decision, host, permit)
        raise ConversationExpired(EXPIRED_MESSAGE)
    payload = keyed.payload(
        _model_on(host, model, services), None if host.fallback else settings.model_ttl
    )
    path = CHAT_PATH if api is Api.CHAT else RESPONSES_PATH
    dialect: Dialect = RESPONSES_ASIS
    if api is Api.CHAT:
        dialect = ChatCompletionsAsIs(include_usage=keyed.include_usage)
    output_cap = keyed.max_output_tokens
    exchange = Exchange(call, host, permit, decision, _owner(key), path, dialect, output_cap)
    exchange.payload = payload
    exchange.rag_reserved = extra  # reserved for the posts at admission
    if posts is not None:
        mode = mode_of(posts, exchange, keyed)
        headers[POSTS_HEADER] = mode
        try:
            payload = exchange.payload = await with_posts(exchange, keyed, payload, mode)
        except BaseException:  # the client left meanwhile: give back what was taken
            await given_back(call, decision, host, permit)
            raise
    await exchange.check_room(estimate(keyed.input_chars))
    if keyed.stream:
        upstream = await exchange.open(payload)
        return EventStream(exchange.stream(upstream), SSE_HEADERS | headers)
    body = await until_gone(request.receive, exchange.whole(payload, chat=api is Api.CHAT))
    if body is None:  # the client left: nobody reads this (nginx's "client closed request")
        return JsonAnswer(b"", CLIENT_GONE, {})
    return JsonAnswer(body, 200, headers)


def _posts_reserve(keyed: KeyedRequest, key: ApiKey, services: Services) -> int:
    """What a keyed request that asked for the posts reserves for them: never so much that it
    would not fit the key's token window it fits without them."""
    settings = services.settings
    if not may_read(settings, services.posts):
        return 0
    extra = posts_tokens(estimate(keyed.input_chars), settings)
    if key.limits.tokens > 0:
        base = estimate(keyed.input_chars) + keyed.max_output_tokens
        extra = max(0, min(extra, key.limits.tokens - base))
    return extra


def _model_on(host: Host, model: str, services: Services) -> str:
    """The model a keyed chat asks of its host: the one it named, except that the site's
    model (the first host's, which `/v1/models` lists) is each host's own there, and the
    fallback has only its own."""
    if host.fallback or model == services.hosts.home[0].model:
        return host.model
    return model


def _owner(key: ApiKey) -> str:
    """Who may continue a keyed response: the key, by name (no visitor's hashed id looks so)."""
    return f"key:{key.name}"


def key_scopes(key: ApiKey, governor: PressureGovernor) -> tuple[Scope, ...]:
    """The key's own windows: its requests and tokens per window (0: none), shrunk under
    pressure by its lane's factor."""
    limits, lane = key.limits, key.lane
    requests, tokens = governor.scaled(limits.requests, lane), governor.scaled(limits.tokens, lane)
    return (Scope(f"key:{key.name}", Limit.KEY, requests, tokens),)


async def _admitted(
    call: Call, key: ApiKey, keyed: KeyedRequest, offer: Offer, *, extra: int = 0
) -> Decision:
    """Admission in the key's lane, against its windows and its streams at once, waiting in
    line for a place (or for the model to wake) as /api/chat does, ahead of lower lanes."""
    services = call.services
    settings = services.settings
    tokens = estimate(keyed.input_chars) + keyed.max_output_tokens + extra
    governor, lane = services.governor, key.lane
    concurrency = (key.name, key.limits.concurrency) if key.limits.concurrency else None

    async def attempt() -> Decision:
        slots = offer.slots(lane)
        if not slots:
            return refusal(Limit.NO_HOST, 0, 1.0, path="local")
        asleep = any(slot.asleep for slot in slots)
        return await services.limiter.admit(
            (),
            governor.limits(lane),
            continues=keyed.previous_response_id,
            owner=_owner(key),
            wake_seconds=settings.model_load_timeout if asleep else None,
            tokens=tokens,
            scopes=key_scopes(key, governor),
            lane=lane,
            concurrency=concurrency,
            hosts=slots,
        )

    with current_span("admission", on=call.tracing) as admission_span:
        decision = await attempt()
        if decision.limit in {Limit.INFLIGHT, Limit.WAKING} and not decision.admitted:
            wait = settings.model_load_timeout if decision.limit is Limit.WAKING else None
            decision, waited = await services.waiting_room.admit(attempt, decision, wait, lane)
            if waited is not None:
                services.metrics.queue_wait(waited, admitted=decision.admitted)
        admission_span.set_attribute("llmgw.admission.admitted", decision.admitted)
        admission_span.set_attribute("llmgw.admission.path", decision.path)
    services.metrics.admission("admitted" if decision.admitted else decision.limit, decision.path)
    return decision


def _refusal(decision: Decision, headers: dict[str, str], key: ApiKey) -> JsonAnswer:
    """A 429 in OpenAI's shape naming the limit (`type` requests or tokens, as OpenAI's API
    says it); a 503 when no place freed; 404 for a conversation not the key's; 400 for a
    request no token window can ever hold."""
    wait = decision.retry_after
    limit = decision.limit
    if limit is Limit.CONVERSATION:
        raise NotFound(
            "no such response: previous_response_id is unknown or not this key's",
            param="previous_response_id",
        )
    if limit in {Limit.INFLIGHT, Limit.WAKING}:
        raise Shed("the model is busy right now, try again in a moment", retry_after=wait)
    if limit in UNAVAILABLE:
        raise BreakerOpen(UNAVAILABLE_MESSAGE, retry_after=wait)
    asked = decision.reservation.tokens if decision.reservation else 0
    if limit is Limit.TOKENS and asked > key.limits.tokens:  # not its window shrunk for now
        raise TooManyTokens(
            f"this request needs about {asked} tokens, more than the {key.limits.tokens}"
            " allowed per window: send less, or lower max_tokens"
        )
    kind = "tokens" if limit is Limit.TOKENS else "requests"
    whose = decision.whose or limit
    message = f"rate limit reached: {_whose(whose)} {kind} per window, try again in {wait} s"
    if limit is Limit.CONCURRENCY:
        message = f"rate limit reached: this key's streams at once ({decision.quota})"
    error = {
        "message": message,
        "type": kind,
        "param": None,
        "code": "rate_limit_exceeded",
        "limit": str(limit),
    }
    headers["Retry-After"] = str(wait)
    return JsonAnswer({"error": error}, 429, headers)


def _whose(limit: Limit) -> str:
    return "this key's" if limit in {Limit.KEY, Limit.CONCURRENCY} else "everyone's"
