"""How many predictions the model host runs at once, measured, and the gateway's caps to match.

Two small answers overlap: the second is sent once the first has begun to stream. If the
second's first token waits for the first's end, predictions run one at a time (LM Studio's MLX
engine, docs `0_app/5_advanced/parallel-requests.md`); if it comes while the first still streams,
they run in parallel (llama.cpp's Max Concurrent Predictions, 4 by default). LM Studio queues
what it cannot run rather than refusing it, out of the gateway's sight, with the first-token
timeout running: so the in-flight cap should be what the host runs at once, and the waiting room
the gateway's own.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from app.doctor.findings import (
    CONCURRENCY_TIMEOUT,
    TUNNEL_ADVICE,
    Clients,
    Finding,
    HopFailed,
    ok,
    warn,
)
from app.doctor.redaction import reason
from app.doctor.streamed_answer import AnswerTimes, payload, timed_answer
from app.doctor.upstream_calls import auth_headers

if TYPE_CHECKING:
    from app.doctor.targets import Target
    from app.settings import Settings

# A prompt no model answers in a word, cut at a few dozen tokens: long enough to overlap.
LONG = ("Count from 1 to 100, separated by spaces.", 64)
SHORT = ("Say OK.", 8)
LMSTUDIO_PARALLEL = 4  # Max Concurrent Predictions' default (docs parallel-requests.md)
MAX_QUEUE_WAIT = 60  # LLMGW_QUEUE_WAIT_SECONDS's upper bound (app/settings.py)
# The first answer must stream on for this many of its own first-token times after the second
# is sent, or a parallel host could not have shown it.
OVERLAP_NEEDED = 2.0


@dataclass(frozen=True, slots=True)
class Caps:
    """The gateway settings recommended for what was measured, for this host."""

    target: Target
    max_inflight: int
    queue_size: int
    queue_wait_seconds: int

    def text(self) -> str:
        return (
            f"{self.target.var('max_inflight')}={self.max_inflight}, "
            f"LLMGW_QUEUE_SIZE={self.queue_size}, "
            f"LLMGW_QUEUE_WAIT_SECONDS={self.queue_wait_seconds}"
        )

    def fit(self, settings: Settings) -> bool:
        current = (self.target.max_inflight, settings.queue_size, settings.queue_wait_seconds)
        return current == (self.max_inflight, self.queue_size, self.queue_wait_seconds)


async def check_concurrency(settings: Settings, clients: Clients) -> Finding:
    """Two overlapping small answers: one at a time, or in parallel; the caps to match."""
    try:
        async with asyncio.timeout(CONCURRENCY_TIMEOUT):
            first, second = await overlapping(settings, clients)
    except TimeoutError:
        return warn(
            f"two small answers took over {CONCURRENCY_TIMEOUT:g} s: not measured",
            "run it again when the model host is quiet (skip it: `llmgw doctor --no-concurrency`)",
        )
    except httpx.HTTPError as exc:
        raise HopFailed(f"a stream broke ({reason(exc)})", TUNNEL_ADVICE) from None
    if second.first is not None and second.first < first.end:
        return parallel(settings, clients.target, first, second)
    if first.end - second.sent >= OVERLAP_NEEDED * first.first_token:
        return serial(settings, clients.target, first, second)
    return warn(
        f"cannot tell: the first answer ended {first.end - second.sent:.2f} s after the second "
        "was sent, too soon to show whether they overlap",
        "run it again when the model host is quiet",
    )


async def overlapping(settings: Settings, clients: Clients) -> tuple[AnswerTimes, AnswerTimes]:
    """The long answer, and the short one sent at the long one's first output."""
    headers, started = auth_headers(clients.target), asyncio.Event()
    long_one = asyncio.create_task(
        timed_answer(clients, payload(settings, clients, *LONG), headers, started)
    )
    try:
        await started.wait()
        short_one = await timed_answer(clients, payload(settings, clients, *SHORT), headers)
        return await long_one, short_one
    finally:
        if not long_one.done():
            long_one.cancel()
            await asyncio.wait({long_one})
        elif not long_one.cancelled():
            long_one.exception()  # seen: raised above, or lost to the short one's failure


def serial(settings: Settings, target: Target, first: AnswerTimes, second: AnswerTimes) -> Finding:
    caps = recommended(settings, target, first, places=1)
    after = (second.first or second.end) - first.end
    detail = (
        f"one prediction at a time (as LM Studio's MLX engine runs them): the second answer's "
        f"first token came {after:.2f} s after the first answer ended, "
        f"{second.first_token:.2f} s after it was sent"
    )
    if target.max_inflight > 1:
        return warn(
            detail,
            f"set {caps.text()}: more streams would wait inside LM Studio, out of the gateway's "
            f"sight, their first-token timeouts running; {room(settings, first, caps)}",
        )
    return ok(detail, advice(caps, settings, first))


def parallel(
    settings: Settings, target: Target, first: AnswerTimes, second: AnswerTimes
) -> Finding:
    places = target.max_inflight if target.max_inflight > 1 else LMSTUDIO_PARALLEL
    caps = recommended(settings, target, first, places=places)
    detail = (
        f"in parallel (llama.cpp, or another engine with parallel slots): the second answer's "
        f"first token came after {second.first_token:.2f} s, while the first still streamed"
    )
    slots = (
        f"{target.var('max_inflight')}: the model's Max Concurrent Predictions (LM Studio's "
        f"default {LMSTUDIO_PARALLEL}; at least 2 here)"
    )
    return ok(detail, f"{advice(caps, settings, first)}; {slots}")


def advice(caps: Caps, settings: Settings, first: AnswerTimes) -> str:
    if caps.fit(settings):
        return f"the settings fit: {caps.text()}"
    return f"set {caps.text()}: {room(settings, first, caps)}"


def room(settings: Settings, first: AnswerTimes, caps: Caps) -> str:
    """Why the waiting room is sized so."""
    return (
        f"the longest answer ({settings.max_output_tokens} tokens) takes about "
        f"{math.ceil(longest_answer(settings, first))} s here, so a place frees about every "
        f"{caps.queue_wait_seconds} s: one chat may wait per place"
    )


def recommended(settings: Settings, target: Target, first: AnswerTimes, *, places: int) -> Caps:
    """`places` at once; the room holds one chat per place, for as long as one of `places`
    longest answers takes to end."""
    wait = math.ceil(longest_answer(settings, first) / places)
    return Caps(target, places, places, min(MAX_QUEUE_WAIT, max(1, wait)))


def longest_answer(settings: Settings, first: AnswerTimes) -> float:
    """Seconds an answer of LLMGW_MAX_OUTPUT_TOKENS takes, at the rate the long answer showed."""
    per_output = first.seconds_per_output() or first.total / max(first.outputs, 1)
    return first.first_token + per_output * settings.max_output_tokens
