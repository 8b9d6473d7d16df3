"""The chat models the model server lists, for keyed clients: what `GET /v1/models` shows and
what a keyed chat may name in `model`. Asked of the model server at most every few seconds per
replica (a chat should not wait on a listing), and again at once when a chat names a model
the last listing did not have (it may just have been downloaded).

The listings are read newest first, as the health check reads them (probe/model_catalog.py):
LM Studio's REST `/api/v1/models` and `/api/v0/models` name every downloaded model, loaded or
asleep (the next request loads it), and its kind, so embedding models are left out; OpenAI's
`/v1/models` serves a server that is not LM Studio."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from app.errors import ModelNotFound, UpstreamIncompatible
from app.upstream.client import ERROR_BODY_LIMIT, classify_status, mapped_transport_errors
from probe.model_catalog import CHAT_KINDS, Listing, parse

if TYPE_CHECKING:
    from app.upstream.client import UpstreamClient
    from probe.model_catalog import Catalog

LISTINGS = (Listing.REST_V1, Listing.REST_V0, Listing.OPENAI)
ACCEPT_JSON = {"Accept": "application/json"}
FRESH_SECONDS = 5.0


class ModelList:
    """The chat models the model server has, loaded or not, kept a few seconds."""

    def __init__(self, upstream: UpstreamClient, default: str) -> None:
        self._upstream = upstream
        self._default = default
        self._names: tuple[str, ...] = ()
        self._read_at = -FRESH_SECONDS

    async def names(self, *, fresh: bool = False) -> tuple[str, ...]:
        """The chat models' names, the server's order; read again when older than a moment."""
        if fresh or time.monotonic() - self._read_at >= FRESH_SECONDS:
            catalog = await _catalog(self._upstream)
            names = (entry.key for entry in catalog.entries if entry.kind in CHAT_KINDS)
            self._names = tuple(dict.fromkeys(names))
            self._read_at = time.monotonic()
        return self._names

    async def resolve(self, asked: str | None) -> str:
        """The model a keyed chat goes to: the one it names, when listed (404 otherwise), or
        the gateway's own (LLMGW_MODEL) when it names none."""
        if asked is None or asked == self._default:  # the gateway's own: not looked up
            return self._default
        if asked in await self.names():
            return asked
        # Read again at once (it may just have been downloaded), but at most every second: a
        # client naming models that do not exist does not make the gateway ask on each request.
        if time.monotonic() - self._read_at >= 1 and asked in await self.names(fresh=True):
            return asked
        raise ModelNotFound(f"the model '{asked}' does not exist", param="model")


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
