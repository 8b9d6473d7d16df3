"""Relay the model's SSE events to the browser as they arrive, with first-token, idle and total
deadlines, and close the upstream stream at once when the visitor goes away."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec

from app.upstream.sse import EVENT_PREFIX, Event, EventBatcher, parse_block, usual_shape
from app.upstream.stream_deadline import StreamDeadline

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

    from app.upstream.client import StreamedAnswer, Timeouts

log = logging.getLogger("llmgw.relay")

TOKEN_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)
# Passed on as they are; the events carrying the whole response object (created, in_progress,
# completed: it echoes the instructions and settings) are rebuilt, upstream errors replaced.
PASSED_EVENTS = TOKEN_EVENTS | {
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.done",
    "response.reasoning_text.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.done",
}
FAILED_EVENTS = frozenset({"error", "response.failed", "response.incomplete"})
REBUILT_EVENTS = ("response.created", "response.in_progress", "response.completed")
# Passed events by their type's bytes: one in the usual shape is its own frame, so its bytes
# go on without being parsed or rebuilt.
_PASSED_KINDS = {kind.encode(): kind for kind in PASSED_EVENTS}
_FRAME_END = b"\n\n"
DRAIN_SECONDS = 0.5


class _Response(msgspec.Struct):
    id: str | None = None
    status: str | None = None
    usage: dict[str, Any] | None = None


class _Envelope(msgspec.Struct):
    response: _Response = msgspec.field(default_factory=_Response)


class _Rebuilt(msgspec.Struct):
    """What the browser gets of an event carrying the response object."""

    type: str
    response: _Response


_envelope = msgspec.json.Decoder(_Envelope)
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class StreamRecord:
    """What one relayed stream did, for the log line, metrics and tests."""

    started: float
    first_token_at: float | None = None
    response_id: str | None = None
    usage: dict[str, Any] | None = None
    outcome: str = "ok"
    events: int = field(default=0)

    @property
    def ttft(self) -> float | None:
        """Seconds from admission to the first token, when one came."""
        return None if self.first_token_at is None else self.first_token_at - self.started


def sse_frame(event: str, data: bytes) -> bytes:
    """One SSE frame; multi-line data becomes several data lines, as the format demands."""
    return Event(event, data).frame()


def error_frame(code: str, message: str) -> bytes:
    """The SSE error event a visitor gets when the stream fails after it started."""
    body = {"type": "error", "error": {"code": code, "message": message}}
    return sse_frame("error", msgspec.json.encode(body))


async def relay(
    response: StreamedAnswer,
    timeouts: Timeouts,
    record: StreamRecord,
    finish: Callable[[StreamRecord], Awaitable[None]] | None = None,
    started: Callable[[], None] | None = None,
) -> AsyncGenerator[bytes, None]:
    """Yield browser-ready SSE frames, one write per batch of upstream events that arrived
    together; always closes the upstream response and then runs `finish` (release the lease,
    record the outcome), shielded from cancellation. `started` runs when the body starts to
    flow, so it pairs with `finish` exactly."""
    if started is not None:
        started()
    chunks = _body(response)
    batcher = EventBatcher()
    # Deadlines on the loop's clock, which is what timeouts run on (uvloop's is its own).
    loop = asyncio.get_running_loop()
    origin = record.started + (loop.time() - time.monotonic())
    total_deadline = origin + timeouts.total
    deadline = min(origin + timeouts.first_token, total_deadline)
    watch = StreamDeadline()
    try:
        while True:
            chunk = await _next_chunk(chunks, watch, deadline, total_deadline, record)
            if isinstance(chunk, _End):
                if chunk.frame:
                    yield chunk.frame
                return
            frames, last = _translate_batch(batcher.blocks(chunk), record)
            if record.first_token_at is not None:
                deadline = min(loop.time() + timeouts.idle, total_deadline)
            if frames:
                yield frames
            if last is not None:  # completed, or failed
                if last == "response.completed":
                    await _drain(chunks)
                return
    except asyncio.CancelledError:
        record.outcome = "client_cancelled"
        raise
    finally:
        watch.close()
        with anyio.CancelScope(shield=True):
            await _close(chunks, response, finish, record)


async def _close(
    chunks: AsyncGenerator[bytes, None],
    response: StreamedAnswer,
    finish: Callable[[StreamRecord], Awaitable[None]] | None,
    record: StreamRecord,
) -> None:
    await chunks.aclose()
    await response.aclose()
    if finish is not None:
        await finish(record)


@dataclass(frozen=True, slots=True)
class _End:
    """The upstream body ended (or failed, or ran out of time): the last frame to send."""

    frame: bytes = b""


def _body(response: StreamedAnswer) -> AsyncGenerator[bytes, None]:
    """The body as it comes off the wire when it is not compressed (the client asks for
    identity), skipping httpx's decoder and re-chunker; decoded when a server compressed it."""
    if response.headers.get("content-encoding", "identity") == "identity":
        return response.aiter_raw()  # type: ignore[return-value]  # an async generator
    return response.aiter_bytes()  # type: ignore[return-value]


async def _next_chunk(
    chunks: AsyncIterator[bytes],
    watch: StreamDeadline,
    deadline: float,
    total_deadline: float,
    record: StreamRecord,
) -> bytes | _End:
    """The next network chunk by the deadline, or how the stream ends (deadlines are on the
    loop's clock)."""
    try:
        watch.begin(deadline)
        try:
            return await anext(chunks)
        except asyncio.CancelledError:
            if watch.expired():
                raise TimeoutError from None
            raise
        finally:
            watch.end()
    except StopAsyncIteration:
        if record.outcome == "ok" and record.usage is None:
            record.outcome = "upstream_error"
            return _End(error_frame("upstream_closed", "the model stopped before finishing"))
        return _End()
    except TimeoutError:
        return _End(_timeout_frame(record, total=deadline >= total_deadline))
    except httpx.HTTPError as exc:
        log.warning("upstream stream failed: %s", type(exc).__name__)
        record.outcome = "upstream_error"
        return _End(error_frame("upstream_failed", "the connection to the model was lost"))


def _translate_batch(blocks: list[bytes], record: StreamRecord) -> tuple[bytes, str | None]:
    """The frames of a batch of event blocks up to its last event that ends the stream, and
    that event."""
    frames = []
    for block in blocks:
        if (kind := _passed_as_is(block)) is not None:
            _count(kind, record)
            frames.append(block + _FRAME_END)
            continue
        event = parse_block(block)
        if event is None:  # a comment
            continue
        frame = _translate(event, record)
        if frame is not None:
            frames.append(frame)
        if event.event == "response.completed" or event.event in FAILED_EVENTS:
            return b"".join(frames), event.event
    return b"".join(frames), None


def _passed_as_is(block: bytes) -> str | None:
    """The type of a passed event in the usual shape, whose frame is its block as it came."""
    end = usual_shape(block)
    return _PASSED_KINDS.get(block[len(EVENT_PREFIX) : end]) if end > 0 else None


def _count(kind: str, record: StreamRecord) -> None:
    record.events += 1
    if kind in TOKEN_EVENTS and record.first_token_at is None:
        record.first_token_at = time.monotonic()


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows the last event (the chunked terminator), briefly, so the upstream
    connection goes back to the pool instead of being closed: a new TCP (and TLS) handshake
    per chat would cost more than the rest of the relay."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in chunks:
                pass
    except (TimeoutError, httpx.HTTPError):
        return


def _translate(event: Event, record: StreamRecord) -> bytes | None:
    kind = event.event
    _count(kind, record)
    if kind in PASSED_EVENTS:  # token deltas among them
        return event.frame()  # passed on as it came: no decoding, no re-encoding
    if kind in REBUILT_EVENTS:
        return _rebuilt(kind, event.raw, record)
    if kind in FAILED_EVENTS:
        record.outcome = "upstream_error"
        return error_frame("upstream_failed", "the model failed to answer")
    return None


def _rebuilt(kind: str, data: bytes, record: StreamRecord) -> bytes:
    """Pass on only the id, status and usage: not the model's instructions or settings."""
    try:
        upstream = _envelope.decode(data).response
    except msgspec.DecodeError:
        upstream = _Response()
    record.response_id = upstream.id or record.response_id
    if kind == "response.completed":
        record.usage = upstream.usage
    return sse_frame(kind, _encode(_Rebuilt(kind, upstream)))


def _timeout_frame(record: StreamRecord, *, total: bool) -> bytes:
    """The error for the deadline that passed: the total one, or the first token's or the
    idle gap's (whichever was in force is the one that fired)."""
    record.outcome = "timeout"
    if total:
        return error_frame("total_timeout", "the answer took too long and was cut off")
    if record.first_token_at is None:
        return error_frame("first_token_timeout", "the model did not start answering in time")
    return error_frame("idle_timeout", "the model stopped sending")
