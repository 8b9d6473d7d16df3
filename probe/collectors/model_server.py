"""Is the model server answering, how fast, and has it a model loaded."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable

    from probe.collectors import Signals

DOWN: Signals = {"model_server_up": 0.0, "model_loaded": 0.0}


async def loaded_models(client: httpx.AsyncClient, listing: Any = None) -> list[str]:
    """Ids of loaded models: LM Studio's `/api/v0/models`, else `/v1/models` (`listing`)."""
    response = await client.get("/api/v0/models")
    if response.status_code == 404:  # not LM Studio: every listed model counts as loaded
        if listing is None:
            listing = (await client.get("/v1/models")).raise_for_status().json()
        return [str(entry["id"]) for entry in listing["data"]]
    entries = response.raise_for_status().json()["data"]
    return [str(entry["id"]) for entry in entries if entry.get("state") == "loaded"]


class ModelServerCollector:
    """`model_server_up`, `model_server_latency_seconds` (of `GET /v1/models`), `model_loaded`.

    A server that does not answer is down and has nothing loaded: both are 0, not unknown.
    """

    name = "model_server"

    def __init__(
        self, client: httpx.AsyncClient, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._clock = clock

    async def collect(self) -> Signals:
        """List the models, timing the call."""
        started = self._clock()
        try:
            response = await self._client.get("/v1/models")
        except httpx.HTTPError:
            return dict(DOWN)
        latency = {"model_server_latency_seconds": self._clock() - started}
        if not response.is_success:
            return DOWN | latency
        return {"model_server_up": 1.0, **latency, **await self._loaded(response.json())}

    async def _loaded(self, listing: Any) -> Signals:
        try:
            models = await loaded_models(self._client, listing)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return {}  # the server answers but will not say: model_loaded stays unknown
        return {"model_loaded": 1.0 if models else 0.0}
