"""The streams of keyed clients (/v1): the model server's own events, passed on as they came.

A keyed client is the owner's tool, or a member's, asking with its own sampling parameters: it
gets the whole response objects (which a visitor does not), so the `openai` SDK's stream helpers
find every field they read. The relay still reads each event for what the gateway must know:
the first output (the first-token clock, the idle deadline), the response's id, the usage the
stream's end settles tokens from, and how the stream ended. Errors the gateway adds (a
deadline, a lost connection) come in OpenAI's shape, which the SDK raises as `APIError`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from app.upstream.answer_errors import RequestFault, request_fault
from app.upstream.relay import (
    END,
    END_EVENTS,
    ENVELOPE,
    FAILED,
    FAILED_EVENTS,
    REBUILT_EVENTS,
    count_event,
    sse_frame,
    typed_event,
)
from app.upstream.sse import parse_block

if TYPE_CHECKING:
    from app.upstream.relay import StreamRecord

_FRAME_END = b"\n\n"
_DONE = b"[DONE]"


def keyed_error(code: str, message: str) -> dict[str, object]:
    """An error in OpenAI's shape, for an error event of a keyed stream."""
    return {"message": message, "type": "server_error", "param": None, "code": code}


def _fault_outcome(data: bytes) -> str:
    match request_fault(data):
        case RequestFault.CONTEXT_FULL:
            return "context_full"
        case RequestFault.CONVERSATION_EXPIRED:
            return "conversation_expired"
        case None:
            return "upstream_error"


class ResponsesAsIs:
    """`POST /v1/responses` for a keyed client: every event as it came."""

    def translate(self, blocks: list[bytes], record: StreamRecord) -> tuple[bytes, str | None]:
        frames = []
        for block in blocks:
            event = parse_block(block)
            if event is None:  # a comment
                continue
            if event.event == "message":  # no `event:` line: its JSON says what it is
                event = typed_event(event)
            kind = event.event
            count_event(kind, record, event.raw)
            frames.append(block + _FRAME_END)
            if kind in REBUILT_EVENTS:
                _read_response(kind, event.raw, record)
            if kind in END_EVENTS:
                return b"".join(frames), END
            if kind in FAILED_EVENTS:
                record.outcome = _fault_outcome(event.raw)
                return b"".join(frames), FAILED
        return b"".join(frames), None

    def error_frame(self, code: str, message: str) -> bytes:
        body = {"type": "error", "error": keyed_error(code, message)}
        return sse_frame("error", msgspec.json.encode(body))


def _read_response(kind: str, data: bytes, record: StreamRecord) -> None:
    try:
        response = ENVELOPE.decode(data).response
    except msgspec.DecodeError:
        return
    record.response_id = response.id or record.response_id
    if kind in END_EVENTS:
        record.usage = response.usage
        record.incomplete = kind == "response.incomplete"


class _ChatDelta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None  # LM Studio's reasoning, when kept apart
    reasoning: str | None = None
    tool_calls: list[Any] | None = None


class _ChatChoice(msgspec.Struct):
    delta: _ChatDelta = msgspec.field(default_factory=_ChatDelta)


class _ChatChunk(msgspec.Struct):
    choices: list[_ChatChoice] = msgspec.field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: Any = None


_chunk = msgspec.json.Decoder(_ChatChunk)


class ChatCompletionsAsIs:
    """`POST /v1/chat/completions` for a keyed client: every chunk as it came, but the usage
    chunk when the client did not ask for one (the gateway always asks, to settle tokens)."""

    def __init__(self, *, include_usage: bool) -> None:
        self.include_usage = include_usage

    def translate(self, blocks: list[bytes], record: StreamRecord) -> tuple[bytes, str | None]:
        frames = []
        for block in blocks:
            event = parse_block(block)
            if event is None:
                continue
            if event.raw.strip() == _DONE:
                frames.append(block + _FRAME_END)
                return b"".join(frames), END
            try:
                chunk = _chunk.decode(event.raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                frames.append(block + _FRAME_END)  # not ours to judge: the client reads it
                continue
            if chunk.error is not None:
                record.outcome = _fault_outcome(event.raw)
                frames.append(block + _FRAME_END)
                return b"".join(frames), FAILED
            _count_chunk(chunk, record)
            if chunk.usage is not None and not chunk.choices and not self.include_usage:
                continue
            frames.append(block + _FRAME_END)
        return b"".join(frames), None

    def error_frame(self, code: str, message: str) -> bytes:
        body = msgspec.json.encode({"error": keyed_error(code, message)})
        return b"data: " + body + _FRAME_END


def _count_chunk(chunk: _ChatChunk, record: StreamRecord) -> None:
    record.events += 1
    chars, tools = 0, False
    for choice in chunk.choices:
        delta = choice.delta
        chars += sum(len(text) for text in (delta.content, delta.reasoning_content) if text)
        chars += len(delta.reasoning or "")
        if delta.tool_calls:  # the arguments the model writes are output too
            tools = True
            chars += sum(len(msgspec.json.encode(call)) for call in delta.tool_calls)
    if record.counts_text:
        record.text_chars += chars
    if record.first_token_at is None and (chars or tools):
        record.first_token_at = time.monotonic()
    if chunk.usage is not None:
        record.usage = chat_usage(chunk.usage)


def chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Chat Completions' usage in the Responses API's names, which the gateway counts by."""
    details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "output_tokens_details": {"reasoning_tokens": int(details.get("reasoning_tokens") or 0)},
    }
