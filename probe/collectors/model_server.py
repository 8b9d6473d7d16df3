"""Is the model server answering, how fast, does it take the probe's token, and is the served
model loaded, asleep or missing.

A server that refuses the connection is down. One that does not answer in time, or answers 503,
may only be busy: `model_server_busy` counts such checks in a row, so that the gateway calls it
down only after a few (issue 15); `model_server_up` stays 0 for them, as older gateways read it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx

from probe.collectors.catalog import model_signals, read_catalog

if TYPE_CHECKING:
    from collections.abc import Callable

    from probe.collectors import Signals

DOWN: Signals = {"model_server_up": 0.0, "model_loaded": 0.0}
# LM Studio's Require Authentication refuses a missing or wrong token with 401 (docs
# `1_developer/0_core/authentication.md`); a proxy may say 403. Either way the server answered.
TOKEN_REFUSED = frozenset({401, 403})
BUSY = 503  # the server says it cannot take more now


class ModelServerCollector:
    """`model_server_up`, `model_server_busy`, `model_server_latency_seconds` (of
    `GET /v1/models`), `model_token_ok`, and the served model's `model_loaded`,
    `model_available`, `model_context_length`.

    A server that does not answer is down and has nothing loaded: both are 0, not unknown. One
    that refuses the token is up (chats pass another door), and its models are unknown.
    """

    name = "model_server"

    def __init__(
        self,
        client: httpx.AsyncClient,
        model: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._model = model
        self._clock = clock
        self._busy = 0  # checks in a row that got no answer in time, or a 503

    async def collect(self) -> Signals:
        """List the models, timing the call, then read the served model's state."""
        started = self._clock()
        self._busy += 1  # counted before the call: one the agent's time limit cuts short counts
        try:
            response = await self._client.get("/v1/models")
        except httpx.TimeoutException:
            return DOWN | {"model_server_busy": float(self._busy)}
        except httpx.HTTPError:
            self._busy = 0
            return DOWN | {"model_server_busy": 0.0}
        latency = {"model_server_latency_seconds": self._clock() - started}
        if response.status_code == BUSY:
            return DOWN | {"model_server_busy": float(self._busy)} | latency
        self._busy = 0
        answered = {"model_server_busy": 0.0, **latency}
        if response.status_code in TOKEN_REFUSED:
            return {"model_server_up": 1.0, "model_token_ok": 0.0, **answered}
        if not response.is_success:
            return DOWN | answered
        up = {"model_server_up": 1.0, "model_token_ok": 1.0, **answered}
        return up | await self._model_state(response)

    async def _model_state(self, openai_listing: httpx.Response) -> Signals:
        try:
            catalog = await read_catalog(self._client, _json(openai_listing))
        except httpx.HTTPError:
            return {}  # the server answers but will not say: the model's state stays unknown
        if catalog is None:
            return {}
        return model_signals(catalog.view(self._model), served_known=self._model is not None)


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
