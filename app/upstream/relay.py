"""Relay the model's SSE events to the browser as they arrive, with first-token, idle and total
deadlines, and close the upstream stream at once when the visitor goes away.

Every event LM Studio sends counts: reasoning that comes as one `.done` event with no deltas
starts the first-token clock like a delta, a model visibly thinking (a reasoning item begun) is
held only to the total deadline, `response.incomplete` (the answer reached its token cap) ends
the stream normally, and frames without an `event:` line are read by their JSON `type`."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import httpx
import msgspec

from app.upstream.answer_errors import (
    CONTEXT_FULL_MESSAGE,
    EXPIRED_MESSAGE,
    RequestFault,
    public_message,
    request_fault,
)
from app.upstream.sse import (
    DATA_PREFIX,
    EVENT_PREFIX,
    Event,
    EventBatcher,
    parse_block,
    usual_shape,
)
from app.upstream.stream_deadline import StreamDeadline

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

    from app.upstream.client import StreamedAnswer, Timeouts

log = logging.getLogger("llmgw.relay")

OUTPUT_TEXT_DELTA = "response.output_text.delta"
TOKEN_EVENTS = frozenset(
    {
        OUTPUT_TEXT_DELTA,
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)
# The first output of any kind starts the first-token clock: reasoning sent whole, without
# deltas, included (seen from LM Studio: issue 18).
FIRST_OUTPUT_EVENTS = TOKEN_EVENTS | {
    "response.output_text.done",
    "response.reasoning_text.done",
    "response.reasoning_summary_text.done",
    # A function call's arguments are the model's output too (a tool round: app/rag).
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
}
# Events that show the model has begun to think: from then on only the total deadline holds
# until its first output.
THINKING_EVENTS = frozenset({"response.output_item.added", "response.reasoning_summary_part.added"})
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
FAILED_EVENTS = frozenset({"error", "response.failed"})
# The stream's normal ends: an answer whole, or cut short at its token cap (continuable).
END_EVENTS = frozenset({"response.completed", "response.incomplete"})
REBUILT_EVENTS = frozenset(
    {"response.created", "response.in_progress", "response.completed", "response.incomplete"}
)
# Passed events by their type's bytes: one in the usual shape is its own frame, so its bytes
# go on without being parsed or rebuilt.
_PASSED_KINDS = {kind.encode(): kind for kind in PASSED_EVENTS}
_FRAME_END = b"\n\n"
DRAIN_SECONDS = 0.5


class _Response(msgspec.Struct, omit_defaults=True):
    id: str | None = None
    status: str | None = None
    usage: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None


class _Typed(msgspec.Struct):
    """An event's own `type` field, for a frame that came without an `event:` line."""

    type: str | None = None
    error: object = None


class _Item(msgspec.Struct):
    type: str | None = None


class _Delta(msgspec.Struct):
    delta: str = ""


class _ItemAdded(msgspec.Struct):
    item: _Item = msgspec.field(default_factory=_Item)


class _Envelope(msgspec.Struct):
    response: _Response = msgspec.field(default_factory=_Response)


class _Rebuilt(msgspec.Struct):
    """What the browser gets of an event carrying the response object."""

    type: str
    response: _Response


ENVELOPE = msgspec.json.Decoder(_Envelope)
_typed = msgspec.json.Decoder(_Typed)
_item_added = msgspec.json.Decoder(_ItemAdded)
_delta = msgspec.json.Decoder(_Delta)
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
    thinking: bool = False  # a reasoning item began before any output
    incomplete: bool = False  # ended at its token cap: a normal end, continuable
    # Characters of text and reasoning deltas relayed, counted when `counts_text` is set: what
    # a visitor who leaves before the usage comes is charged for (app/chat/tokens.py).
    counts_text: bool = False
    text_chars: int = 0
    # The answer's own text (its output_text deltas, not its reasoning), kept in `text` while
    # `keeps_text`, the characters still to keep, is above 0: for its transcript
    # (app/chat/transcripts.py). Reaching its cap turns the keeping off.
    keeps_text: int = 0
    text: list[str] = field(default_factory=list)
    # Tokens of the answer's earlier rounds (a tool round's input and output: app/rag), spent
    # beside the last round's usage, which alone sizes the conversation.
    earlier_tokens: int = 0

    @property
    def ttft(self) -> float | None:
        """Seconds from admission to the first token, when one came."""
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def usage_tokens(self) -> int:
        """The input and output tokens of the usage the model reported (0 without one): a
        conversation's size after this answer."""
        usage = self.usage or {}
        return int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)

    @property
    def answer_text(self) -> str:
        """The answer's text kept so far (empty unless `keeps_text` was set)."""
        return "".join(self.text)


def sse_frame(event: str, data: bytes) -> bytes:
    """One SSE frame; multi-line data becomes several data lines, as the format demands."""
    return Event(event, data).frame()


def error_frame(code: str, message: str) -> bytes:
    """The SSE error event a visitor gets when the stream fails after it started."""
    body = {"type": "error", "error": {"code": code, "message": message}}
    return sse_frame("error", msgspec.json.encode(body))


class Dialect(Protocol):
    """What a relayed stream is made of on the client's side: the frames of a batch of
    upstream event blocks (and the event among them that ended the stream, if one did), and
    the error event the gateway sends when the stream fails after it started."""

    def translate(self, blocks: list[bytes], record: StreamRecord) -> tuple[bytes, str | None]:
        """The client's frames for these blocks, and `END` or `FAILED` when the stream ended."""
        ...

    def error_frame(self, code: str, message: str) -> bytes:
        """The event that tells the client the stream failed."""
        ...


END, FAILED = "end", "failed"


class VisitorsDialect:
    """The widget's stream: the Responses API's events, the response object rebuilt to its id,
    status and usage, the model server's errors replaced by the gateway's."""

    def translate(self, blocks: list[bytes], record: StreamRecord) -> tuple[bytes, str | None]:
        frames, last = _translate_batch(blocks, record)
        if last is None:
            return frames, None
        return frames, END if last in END_EVENTS else FAILED

    def error_frame(self, code: str, message: str) -> bytes:
        return error_frame(code, message)


VISITORS = VisitorsDialect()


async def relay(
    response: StreamedAnswer,
    timeouts: Timeouts,
    record: StreamRecord,
    finish: Callable[[StreamRecord], Awaitable[None]] | None = None,
    started: Callable[[], None] | None = None,
    *,
    dialect: Dialect = VISITORS,
    round_started: float | None = None,
) -> AsyncGenerator[bytes, None]:
    """Yield client-ready SSE frames in `dialect`, one write per batch of upstream events that
    arrived together; always closes the upstream response and then runs `finish` (release the
    lease, record the outcome), shielded from cancellation. `started` runs when the body
    starts to flow, so it pairs with `finish` exactly. A later round of one answer (after a
    tool call: app/rag) has its first-token budget from `round_started`; the total deadline
    is the answer's."""
    if started is not None:
        started()
    chunks = _body(response)
    batcher = EventBatcher()
    # Deadlines on the loop's clock, which is what timeouts run on (uvloop's is its own).
    loop = asyncio.get_running_loop()
    to_loop = loop.time() - time.monotonic()
    origin = record.started + to_loop
    total_deadline = origin + timeouts.total
    begun = origin if round_started is None else round_started + to_loop
    deadline = min(begun + timeouts.first_token, total_deadline)
    watch = StreamDeadline()
    try:
        while True:
            chunk = await _next_chunk(
                chunks, watch, deadline, total_deadline, record, dialect=dialect
            )
            if isinstance(chunk, _End):
                if chunk.frame:
                    yield chunk.frame
                return
            frames, last = dialect.translate(batcher.blocks(chunk), record)
            deadline = _deadline(record, deadline, loop.time() + timeouts.idle, total_deadline)
            if frames:
                yield frames
            if last is not None:  # completed, incomplete, or failed
                if last == END:
                    await _drain(chunks)
                return
    except asyncio.CancelledError:
        record.outcome = "client_cancelled"
        raise
    finally:
        watch.close()
        with anyio.CancelScope(shield=True):
            await _close(chunks, response, finish, record)


def _deadline(record: StreamRecord, current: float, idle: float, total: float) -> float:
    """The deadline for the next chunk: the idle gap once output flows; before it, the first
    token's, or the total one alone while the model is visibly thinking."""
    if record.first_token_at is not None:
        return min(idle, total)
    return total if record.thinking else current


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
    *,
    dialect: Dialect,
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
        if record.outcome == "ok" and record.usage is None and not record.incomplete:
            record.outcome = "upstream_error"
            message = "the model stopped before finishing"
            return _End(dialect.error_frame("upstream_closed", message))
        return _End()
    except TimeoutError:
        code, message = _timed_out(record, total=deadline >= total_deadline)
        return _End(dialect.error_frame(code, message))
    except httpx.HTTPError as exc:
        log.warning("upstream stream failed: %s", type(exc).__name__)
        record.outcome = "upstream_error"
        message = "the connection to the model was lost"
        return _End(dialect.error_frame("upstream_failed", message))


def _translate_batch(blocks: list[bytes], record: StreamRecord) -> tuple[bytes, str | None]:
    """The frames of a batch of event blocks up to its last event that ends the stream, and
    that event."""
    frames = []
    for block in blocks:
        if (kind := _passed_as_is(block)) is not None:
            count_event(kind, record, block[block.find(b"\n") + 1 + len(DATA_PREFIX) :])
            frames.append(block + _FRAME_END)
            continue
        event = parse_block(block)
        if event is None:  # a comment
            continue
        if event.event == "message":  # no `event:` line: its JSON says what it is
            event = typed_event(event)
        frame = _translate(event, record)
        if frame is not None:
            frames.append(frame)
        if event.event in END_EVENTS or event.event in FAILED_EVENTS:
            return b"".join(frames), event.event
    return b"".join(frames), None


def _passed_as_is(block: bytes) -> str | None:
    """The type of a passed event in the usual shape, whose frame is its block as it came."""
    end = usual_shape(block)
    return _PASSED_KINDS.get(block[len(EVENT_PREFIX) : end]) if end > 0 else None


def count_event(kind: str, record: StreamRecord, data: bytes) -> None:
    record.events += 1
    if (record.counts_text or record.keeps_text) and kind in TOKEN_EVENTS:
        text = _delta_text(data)
        if record.counts_text:
            record.text_chars += len(text)
        if record.keeps_text and kind == OUTPUT_TEXT_DELTA:
            _keep_text(record, text)
    if record.first_token_at is None:
        if kind in FIRST_OUTPUT_EVENTS:
            record.first_token_at = time.monotonic()
        elif kind in THINKING_EVENTS and not record.thinking:
            record.thinking = _begins_reasoning(kind, data)


def _keep_text(record: StreamRecord, text: str) -> None:
    """Keep an answer's delta, as much of it as the cap leaves room for."""
    kept = text[: record.keeps_text]
    record.text.append(kept)
    record.keeps_text -= len(kept)


def _delta_text(data: bytes) -> str:
    try:
        return _delta.decode(data).delta
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


def _begins_reasoning(kind: str, data: bytes) -> bool:
    """Whether an event that adds an item or a part shows the model thinking."""
    if kind == "response.reasoning_summary_part.added":
        return True
    try:
        return _item_added.decode(data).item.type == "reasoning"
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False


def typed_event(event: Event) -> Event:
    """A frame without an `event:` line, named by its JSON `type` (an `{"error": ...}` frame
    is an error): LM Studio has been seen sending such frames (issue 18)."""
    try:
        typed = _typed.decode(event.raw)
    except msgspec.DecodeError:
        return event
    if typed.type:
        return Event(typed.type, event.raw)
    return Event("error", event.raw) if typed.error is not None else event


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
    count_event(kind, record, event.raw)
    if kind in PASSED_EVENTS:  # token deltas among them
        return event.frame()  # passed on as it came: no decoding, no re-encoding
    if kind in REBUILT_EVENTS:
        return rebuilt(kind, event.raw, record)
    if kind in FAILED_EVENTS:
        return _failure_frame(event.raw, record)
    return None


def _failure_frame(data: bytes, record: StreamRecord) -> bytes:
    """The visitor's error event for an upstream error event: the request's own fault (the
    conversation too long, or gone) by its code, anything else with the model server's words."""
    match request_fault(data):
        case RequestFault.CONTEXT_FULL:
            record.outcome = "context_full"
            return error_frame("context_full", CONTEXT_FULL_MESSAGE)
        case RequestFault.CONVERSATION_EXPIRED:
            record.outcome = "conversation_expired"
            return error_frame("conversation_expired", EXPIRED_MESSAGE)
        case None:
            record.outcome = "upstream_error"
            said = public_message(data)
            message = (
                f"the model failed to answer: {said}" if said else "the model failed to answer"
            )
            return error_frame("upstream_failed", message)


def rebuilt(kind: str, data: bytes, record: StreamRecord) -> bytes:
    """Pass on only the id, status and usage: not the model's instructions or settings."""
    try:
        upstream = ENVELOPE.decode(data).response
    except msgspec.DecodeError:
        upstream = _Response()
    record.response_id = upstream.id or record.response_id
    if kind in END_EVENTS:
        record.usage = upstream.usage
        record.incomplete = kind == "response.incomplete"
    if kind != "response.incomplete":
        upstream.incomplete_details = None
    return sse_frame(kind, _encode(_Rebuilt(kind, upstream)))


def _timed_out(record: StreamRecord, *, total: bool) -> tuple[str, str]:
    """The error for the deadline that passed: the total one, or the first token's or the
    idle gap's (whichever was in force is the one that fired)."""
    record.outcome = "timeout"
    if total:
        return "total_timeout", "the answer took too long and was cut off"
    if record.first_token_at is None:
        return "first_token_timeout", "the model did not start answering in time"
    return "idle_timeout", "the model stopped sending"
