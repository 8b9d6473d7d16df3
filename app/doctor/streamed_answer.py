"""One streamed answer from `POST /v1/responses`, timed, and what a wrong answer means.

Wrong answers, told apart as the gateway tells them: a 404/405, or a 200 that is no event
stream (LM Studio before 0.3.29 answers the path it lacks with 200 and 'Unexpected endpoint',
lmstudio-bug-tracker #618), is `upstream_incompatible`; "No models loaded" is a model JIT loading
will not wake; anything else is diagnosed like any other error answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from httpx_sse import EventSource

from app.doctor.findings import INCOMPATIBLE_ADVICE, HopFailed
from app.doctor.upstream_calls import answer_failure, event_type, unexpected_endpoint

if TYPE_CHECKING:
    import asyncio

    import httpx

    from app.doctor.findings import Clients
    from app.settings import Settings

PATH = "/v1/responses"
ENDS = frozenset({"response.completed", "response.incomplete"})
FAILURES = frozenset({"error", "response.failed"})
# Output sent whole, with no deltas before it, is output all the same (issue 18).
WHOLE_OUTPUTS = frozenset(
    {
        "response.output_text.done",
        "response.reasoning_text.done",
        "response.reasoning_summary_text.done",
    }
)
MISSING_API_STATUSES = frozenset({404, 405})


@dataclass(slots=True)
class AnswerTimes:
    """When the request went, its first and last output came, and the answer ended (one clock:
    `time.perf_counter`), and how many pieces of output came."""

    sent: float
    first: float | None = None
    last: float | None = None
    end: float = 0.0
    outputs: int = 0

    @property
    def first_token(self) -> float:
        """Seconds from sending to the first output (to the end when there was none)."""
        return (self.end if self.first is None else self.first) - self.sent

    @property
    def total(self) -> float:
        return self.end - self.sent

    def seconds_per_output(self) -> float | None:
        """Seconds between outputs, once there were two."""
        if self.first is None or self.last is None or self.outputs < 2:
            return None
        return (self.last - self.first) / (self.outputs - 1)


def payload(
    settings: Settings, clients: Clients, prompt: str, max_output_tokens: int
) -> dict[str, object]:
    """A small streamed request for the host's model, with the gateway's `ttl` when it sets
    one."""
    body: dict[str, object] = {
        "model": clients.target.model,
        "input": prompt,
        "max_output_tokens": max_output_tokens,
        "stream": True,
        "store": False,
    }
    if settings.model_ttl is not None:
        body["ttl"] = settings.model_ttl
    return body


async def timed_answer(
    clients: Clients,
    body: dict[str, object],
    headers: dict[str, str],
    first_output: asyncio.Event | None = None,
) -> AnswerTimes:
    """Stream one answer to its end; `first_output` is set at its first output (or its end)."""
    times = AnswerTimes(time.perf_counter())
    try:
        async with clients.http.stream("POST", PATH, json=body, headers=headers) as response:
            if response.status_code != 200 or not is_event_stream(response):
                await response.aread()
                raise wrong_answer(response, clients)
            async for event in EventSource(response).aiter_sse():
                kind = event.event if event.event != "message" else event_type(event.data)
                if took_in(times, kind, first_output):
                    return times
                if kind in FAILURES:
                    raise HopFailed(f"the model failed: {event.data[:200]}", "see LM Studio's log")
    finally:
        if first_output is not None:
            first_output.set()
    raise HopFailed("the stream ended without response.completed", "see LM Studio's log")


def took_in(times: AnswerTimes, kind: str, first_output: asyncio.Event | None) -> bool:
    """Note one event's time; True at the answer's end."""
    now = time.perf_counter()
    if kind.endswith(".delta") or (kind in WHOLE_OUTPUTS and times.first is None):
        times.first = now if times.first is None else times.first
        times.last, times.outputs = now, times.outputs + 1
        if first_output is not None:
            first_output.set()
    if kind in ENDS:
        times.end = now
        return True
    return False


def is_event_stream(response: httpx.Response) -> bool:
    kind: str = response.headers.get("content-type", "")
    return kind.lower().startswith("text/event-stream")


def wrong_answer(response: httpx.Response, clients: Clients) -> HopFailed:
    """What an answer that is no 200 event stream means."""
    status, body = response.status_code, response.content[:4096]
    if b"no models loaded" in body.lower():
        return answer_failure(response, f"POST {PATH}", clients.target)
    if unexpected_endpoint(response):
        return HopFailed(
            f"upstream_incompatible: POST {PATH} answered {status} with LM Studio's 'Unexpected "
            "endpoint or method': this LM Studio has no Responses API (before 0.3.29)",
            INCOMPATIBLE_ADVICE,
        )
    if status == 200:
        kind = response.headers.get("content-type") or "no content type"
        return HopFailed(
            f"upstream_incompatible: POST {PATH} answered 200 with {kind}, not an event stream",
            INCOMPATIBLE_ADVICE,
        )
    if status in MISSING_API_STATUSES and b"model_not_found" not in body:
        return HopFailed(
            f"upstream_incompatible: POST {PATH} answered {status}: no Responses API here",
            INCOMPATIBLE_ADVICE,
        )
    return answer_failure(response, f"POST {PATH}", clients.target)
