"""Read the model server's catalog: the first of its listings that parses, newest first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe.model_catalog import Listing, ModelState, parse

if TYPE_CHECKING:
    import httpx

    from probe.collectors import Signals
    from probe.model_catalog import Catalog, ModelView

LISTINGS = (Listing.REST_V1, Listing.REST_V0, Listing.OPENAI)
NOT_SERVABLE = frozenset({ModelState.MISSING, ModelState.NOT_AN_LLM})
NOT_READ = object()  # the caller has not read this listing yet


async def read_catalog(client: httpx.AsyncClient, openai_body: object = NOT_READ) -> Catalog | None:
    """The catalog of the first listing that parses; `openai_body`: `/v1/models`, already read.

    An LM Studio without a path answers 200 "Unexpected endpoint" (lmstudio-bug-tracker #618):
    `parse` refuses that body and the next listing is asked.
    """
    for listing in LISTINGS:
        known = listing is Listing.OPENAI and openai_body is not NOT_READ
        body = openai_body if known else await _body(client, listing)
        if (catalog := parse(listing, body)) is not None:
            return catalog
    return None


async def _body(client: httpx.AsyncClient, listing: Listing) -> object:
    response = await client.get(listing.value)
    if not response.is_success:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def model_signals(view: ModelView, *, served_known: bool) -> Signals:
    """`model_loaded`, `model_available` (only when the served model is known), and
    `model_context_length` when the loaded instance says it."""
    signals = {"model_loaded": 1.0 if view.state is ModelState.READY else 0.0}
    if served_known:
        signals["model_available"] = 0.0 if view.state in NOT_SERVABLE else 1.0
    if view.state is ModelState.READY and view.context_length is not None:
        signals["model_context_length"] = float(view.context_length)
    return signals
