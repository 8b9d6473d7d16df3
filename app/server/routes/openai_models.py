"""GET /v1/models for keyed clients: the chat models the model server has, in OpenAI's list.

The listings are read newest first, as the health check reads them (probe/model_catalog.py):
LM Studio's REST `/api/v1/models` and `/api/v0/models` name every downloaded model, loaded or
asleep (the next request loads it), and its kind, so embedding models are left out; OpenAI's
`/v1/models` serves a server that is not LM Studio."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, get

from app.errors import UpstreamIncompatible
from app.upstream.client import ERROR_BODY_LIMIT, classify_status, mapped_transport_errors
from probe.model_catalog import CHAT_KINDS, Listing, parse

if TYPE_CHECKING:
    from app.upstream.client import UpstreamClient
    from probe.model_catalog import Catalog

LISTINGS = (Listing.REST_V1, Listing.REST_V0, Listing.OPENAI)
ACCEPT_JSON = {"Accept": "application/json"}
OWNED_BY = "organization_owner"  # what LM Studio's /v1/models says of every model


@get("/models", summary="The models a key may use, in OpenAI's list shape")
async def list_models(request: Request[Any, Any, Any]) -> dict[str, object]:
    """Every chat model the model server lists, loaded or not."""
    catalog = await _catalog(request.app.state.services.upstream)
    names = dict.fromkeys(entry.key for entry in catalog.entries if entry.kind in CHAT_KINDS)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": OWNED_BY} for name in names]
    return {"object": "list", "data": data}


async def _catalog(upstream: UpstreamClient) -> Catalog:
    for listing in LISTINGS:
        with mapped_transport_errors():
            answer = await upstream.get(listing.value, headers=ACCEPT_JSON)
        if answer.status_code != 200:
            server, body = answer.headers.get("server"), answer.content[:ERROR_BODY_LIMIT]
            error = classify_status(answer.status_code, server, body)
            if error.outage is not None or answer.status_code >= 500:
                raise error
            continue  # no such listing here (an older LM Studio, or not LM Studio at all)
        try:
            catalog = parse(listing, answer.json())
        except ValueError:
            catalog = None
        if catalog is not None:  # else LM Studio's 200 "Unexpected endpoint" for a path it lacks
            return catalog
    raise UpstreamIncompatible("the model server does not list its models")
