"""A tiny generation now and then: time to first token and decode speed, as a visitor sees them."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from probe.collectors.catalog import read_catalog
from probe.model_catalog import ModelState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from probe.collectors import Signals

FIRST_TOKEN_EVENTS = {"response.output_text.delta", "response.reasoning_text.delta"}
# Cheapest first: models that cannot switch reasoning off reject "none" with a 400.
EFFORTS = ("none", "minimal", "low")
# A request for a model not loaded would load it (JIT): the probe measures, it never loads.
MEASURABLE = frozenset({ModelState.READY, ModelState.UNKNOWN})
NOT_MEASURED = {
    ModelState.SLEEPING: "is asleep (a request would load it)",
    ModelState.MISSING: "is not downloaded",
    ModelState.NOT_AN_LLM: "is not an LLM",
}


class SyntheticFailed(Exception):
    """The synthetic generation did not complete."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One synthetic generation: TTFT, decode speed (if measurable) and when it finished."""

    ttft_seconds: float
    tokens_per_second: float | None
    finished_at: float


async def data_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON `data:` payloads of an SSE stream.

    Written by hand because httpx-sse is not in the `probe` extra; LM Studio sends each
    event's data on one line, which is all this reads.
    """
    async for line in response.aiter_lines():
        if line.startswith("data:") and (payload := line[5:].strip()) not in {"", "[DONE]"}:
            yield json.loads(payload)


def request_body(model: str, effort: str) -> dict[str, Any]:
    """The smallest streamed generation: a few tokens, reasoning as low as allowed, not stored."""
    return {
        "model": model,
        "input": "ping",
        "stream": True,
        "store": False,
        "max_output_tokens": 4,
        "reasoning": {"effort": effort},
    }


class SyntheticCollector:
    """Starts a measurement every `every` seconds in the background; reports the latest one.

    It names `model` (the served one, by default) and measures it only while it is loaded; with
    no model it names the LLM that is loaded. With `wait` (for `--once`), `collect` waits for
    the measurement it starts.
    """

    name = "synthetic"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        every: float,
        timeout: float,
        model: str | None = None,
        wait: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._every, self._timeout = client, every, timeout
        self._model, self._wait, self._clock = model, wait, clock
        self._effort = 0
        self._task: asyncio.Task[Measurement] | None = None
        self._started_at: float | None = None
        self._last: Measurement | None = None
        self._error: str | None = None

    async def collect(self) -> Signals:
        """The latest measurement with its age; raises if the latest one failed."""
        if self._task is None and self._due():
            self._started_at = self._clock()
            self._task = asyncio.create_task(self._measure())
        if self._task is not None and self._wait:
            await asyncio.wait({self._task})
        if self._task is not None and self._task.done():
            self._settle(self._task)
        if self._error is not None:
            raise SyntheticFailed(self._error)
        return self._signals()

    def _due(self) -> bool:
        return self._started_at is None or self._clock() - self._started_at >= self._every

    async def aclose(self) -> None:
        """Cancel a measurement still running, before the HTTP client closes."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None

    def _settle(self, task: asyncio.Task[Measurement]) -> None:
        self._task = None
        exc = TimeoutError() if task.cancelled() else task.exception()
        if exc is None:
            self._last, self._error = task.result(), None
        else:  # a failed measurement makes the older one meaningless too
            self._last, self._error = None, _describe(exc, self._timeout)

    def _signals(self) -> Signals:
        if self._last is None:
            return {}
        signals = {
            "synthetic_ttft_seconds": self._last.ttft_seconds,
            "synthetic_age_seconds": self._clock() - self._last.finished_at,
        }
        if self._last.tokens_per_second is not None:
            signals["synthetic_tokens_per_second"] = self._last.tokens_per_second
        return signals

    async def _measure(self) -> Measurement:
        async with asyncio.timeout(self._timeout):
            model = await self._loaded_target()
            while True:
                try:
                    return await self._generate(model, EFFORTS[self._effort])
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != 400 or self._effort + 1 == len(EFFORTS):
                        raise
                    self._effort += 1

    async def _loaded_target(self) -> str:
        catalog = await read_catalog(self._client)
        if catalog is None:
            if self._model is None:
                raise SyntheticFailed("the model server lists no model to measure")
            return self._model  # a server whose listings we cannot read: trust the setting
        view = catalog.view(self._model)
        if self._model is None:
            if not view.loaded_llms:
                raise SyntheticFailed("no LLM is loaded to measure")
            return view.loaded_llms[0]
        if view.state not in MEASURABLE:
            raise SyntheticFailed(f"{self._model} {NOT_MEASURED[view.state]}: not measured")
        return self._model

    async def _generate(self, model: str, effort: str) -> Measurement:
        started = self._clock()
        body = request_body(model, effort)
        async with self._client.stream("POST", "/v1/responses", json=body) as response:
            if response.is_error:
                await response.aread()
            response.raise_for_status()
            first, output_tokens = await self._read(response)
        return self._measurement(started, first, output_tokens)

    async def _read(self, response: httpx.Response) -> tuple[float, int]:
        first: float | None = None
        async for event in data_events(response):
            kind = event.get("type")
            if first is None and kind in FIRST_TOKEN_EVENTS:
                first = self._clock()
            elif kind == "response.completed" and first is not None:
                return first, int(event["response"]["usage"]["output_tokens"])
            elif kind in {"response.failed", "error"}:
                raise SyntheticFailed(f"the model server sent {kind}")
        raise SyntheticFailed("the stream ended without output and completion")

    def _measurement(self, started: float, first: float, output_tokens: int) -> Measurement:
        finished = self._clock()
        decoding = finished - first
        # The first token ends the TTFT; the rest are decoded in `decoding`.
        speed = (output_tokens - 1) / decoding if output_tokens > 1 and decoding > 0 else None
        return Measurement(first - started, speed, finished)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no completed generation within {timeout:g} s"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"the model server answered {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}"[:200]
