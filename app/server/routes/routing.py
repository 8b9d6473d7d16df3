"""Where an admitted chat goes: the host its admission picked, with that host's payload, and
why it went there (a new conversation, a follow-up, a move, a wake, the fallback)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from app.errors import ConversationExpired, UpstreamError
from app.rag import tool
from app.rag.plan import fields, may_read, mode_for, question, reserved_for_posts
from app.rag.rounds import ToolLoop, search_posts, searched_frame, sources_frame
from app.server.routes.exchange import Exchange
from app.upstream.answer_errors import EXPIRED_MESSAGE
from app.upstream.client import build_payload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from app.admission.decision import Decision
    from app.chat.request import ChatRequest
    from app.protection.breaker import Permit
    from app.server.chat_telemetry import Call
    from app.server.services import Services
    from app.upstream.hosts import Host, Offer

_T = TypeVar("_T")


async def on_some_host(call: Call, once: Callable[[], Awaitable[_T]]) -> _T:
    """Run `once` (admit, pick a host, open its answer there). A host that fails before the
    answer starts (unreachable, down: its own failure, not the request's) has its breaker
    opened by that failure, and the chat is admitted again for another host while one is
    left: nothing reached the client yet, and no 5xx is needed while another can answer."""
    hosts = call.services.hosts
    tries = len(hosts.home) + (hosts.fallback is not None)
    for left in range(tries - 1, -1, -1):
        try:
            return await once()
        except UpstreamError as exc:
            if not left or exc.outage is None or not hosts.offer_left():
                raise
            call.retried(exc.outage)
    raise AssertionError("unreachable")  # pragma: no cover - the last try raises or returns


async def has_transcript(services: Services, response_id: str | None) -> bool:
    """Whether a conversation's turns are kept here (so it can go on without its host)."""
    transcripts = services.transcripts
    if response_id is None or transcripts is None:
        return False
    return await transcripts.load(response_id) is not None


async def routed_exchange(
    call: Call,
    offer: Offer,
    decision: Decision,
    owner: str,
    chat_request: ChatRequest,
    *,
    lost: bool = False,
) -> Exchange:
    """The admitted chat on the host its admission picked, with that host's payload: for a
    conversation that moved from a host that is out, its transcript instead of the previous
    response's id (none kept: the conversation cannot go on, and the visitor starts anew);
    likewise for one whose host has `lost` it (restarted since)."""
    services = call.services
    host, permit = offer.take(decision.host)
    call.routed(host.name, route_reason(decision, host, chat_request.previous_response_id))
    transcript = None
    previous, transcripts = chat_request.previous_response_id, services.transcripts
    if (decision.moved or lost) and previous is not None:
        try:
            transcript = None if transcripts is None else await transcripts.load(previous)
        except BaseException:  # the visitor left meanwhile: give back what was taken
            await given_back(call, decision, host, permit)
            raise
        if transcript is None:
            await given_back(call, decision, host, permit)
            raise ConversationExpired(EXPIRED_MESSAGE)
    exchange = Exchange(call, host, permit, decision, owner)
    exchange.turn = chat_request
    extra = await _reading_the_posts(exchange, chat_request)
    exchange.payload = build_payload(
        chat_request, services.settings, host.config, transcript, extra
    )
    return exchange


async def _reading_the_posts(exchange: Exchange, chat_request: ChatRequest) -> dict[str, Any]:
    """The request's fields for reading the posts on the exchange's host: the tool (its rounds
    then run in the exchange's stream), or the passages found for the visitor's words now."""
    services, posts = exchange.services, exchange.services.posts
    if may_read(services.settings, posts):  # reserved for it at admission (chat.py)
        exchange.rag_reserved = reserved_for_posts(chat_request, services.settings)
    mode = mode_for(services.settings, posts, exchange.host)
    if mode == "off" or posts is None:
        return {}
    if mode == "tools":
        exchange.rag = ToolLoop(exchange, posts)
        return fields(services.settings.instructions, mode)
    query = question(chat_request)
    try:
        passages = await search_posts(exchange, posts, query, mode)
    except BaseException:  # the visitor left meanwhile: give back what was taken
        await given_back(exchange.call, exchange.decision, exchange.host, exchange.permit)
        raise
    found = tool.sources(passages or [], set())
    exchange.prefix = [searched_frame(query)] + ([sources_frame(found)] if found else [])
    services.metrics.rag_answer(mode, 0, sourced=bool(found))
    return fields(services.settings.instructions, mode, passages)


async def given_back(call: Call, decision: Decision, host: Host, permit: Permit) -> None:
    """An admitted chat that will not be sent: its lease, its permit and its wake go back."""
    services = call.services
    with anyio.CancelScope(shield=True):
        await services.limiter.release(decision)
        host.breaker.give_back(permit)
        if decision.waker:
            await services.limiter.wake_ended(woke=False, awake_seconds=0, host=host.name)


def route_reason(decision: Decision, host: Host, continues: str | None) -> str:
    """Why the chat went to its host, for the routed metric."""
    if host.fallback:
        return "fallback"
    if decision.moved:
        return "moved"
    if decision.waker:
        return "waker"
    return "follow_up" if continues is not None else "new"
