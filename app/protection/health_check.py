"""The active health check through the tunnel: is the model server up, and what does it say of
LLMGW_MODEL (loaded, asleep, missing)? The listings are read newest first (probe/model_catalog.py):
LM Studio 0.4's `/api/v1/models`, the older `/api/v0/models`, then OpenAI's `/v1/models` for a
server that is not LM Studio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from app.protection.outage import OutageClass, TokenDoor, classify_response, token_door
from probe.model_catalog import Listing, ModelState, ModelView, parse

if TYPE_CHECKING:
    from app.protection.outage import OutageClass as Outage

CHECK_TIMEOUT = 3.0
BODY_LIMIT = 4096
LISTINGS = (Listing.REST_V1, Listing.REST_V0, Listing.OPENAI)
MISCONFIGURED = frozenset({ModelState.MISSING, ModelState.NOT_AN_LLM})
BUSY = 503  # the server answered that it cannot take more now


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What one check found. A refused token (`door`) says nothing of the model's health: it
    raises its alert, and the breaker goes by what chats show. A `busy` check got no answer
    in time, or a 503: a host that is only overloaded does both, so its `outage` stands only
    when several such checks come in a row (`app.protection.monitor`)."""

    outage: Outage | None = None
    model: ModelView | None = None
    door: TokenDoor | None = None
    busy: bool = False


async def check_upstream(
    client: httpx.AsyncClient, model: str, listings: tuple[Listing, ...] = LISTINGS
) -> HealthReport:
    """One check: the first listing the server has, read for `model`."""
    for listing in listings:
        try:
            answer = await client.get(listing.value, timeout=CHECK_TIMEOUT)
        except httpx.HTTPError as exc:
            return HealthReport(OutageClass.TUNNEL, busy=isinstance(exc, httpx.TimeoutException))
        report = _answered(listing, answer, model)
        if report is not None:
            return report
    return HealthReport()  # it answers, and says nothing of its models


def _answered(listing: Listing, answer: httpx.Response, model: str) -> HealthReport | None:
    """What one listing's answer says, or None when this server has no such listing."""
    if answer.status_code in (401, 403):
        return HealthReport(door=token_door(answer.content[:BODY_LIMIT]))
    if answer.status_code == BUSY:
        return HealthReport(OutageClass.MODEL_SERVER_DOWN, busy=True)
    if answer.status_code != 200:
        outage = _classified(answer)
        if outage is not None or listing is Listing.OPENAI:
            return HealthReport(outage or OutageClass.MODEL_SERVER_DOWN)
        return None  # an older LM Studio, or not LM Studio at all
    return _read(listing, answer, model)


def _read(listing: Listing, answer: httpx.Response, model: str) -> HealthReport | None:
    try:
        catalog = parse(listing, answer.json())
    except ValueError:
        return None
    if catalog is None:  # LM Studio's 200 "Unexpected endpoint" for a path it lacks
        return None
    view = catalog.view(model)
    return HealthReport(OutageClass.MODEL_MISSING if view.state in MISCONFIGURED else None, view)


def _classified(answer: httpx.Response) -> OutageClass | None:
    server = answer.headers.get("server")
    return classify_response(answer.status_code, server, answer.content[:BODY_LIMIT])
