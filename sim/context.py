"""The loaded context length, and the three ways LM Studio answers a conversation that overflows it.

400             lmstudio-bug-tracker#237 (#546 logs the same text): the bare-string 400 body
200             #2322 (captured in aaif-goose/goose#11318): HTTP 200, `text/event-stream`, one
                `event: error` frame `{"error": {"message"}, "message"}`; non-streamed, the
                same body as JSON with status 200
mid-generation  #1251: generation starts and fails once input + output fill the context
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from sim.config import Overflow
from sim.errors import ContextExhausted, ContextOverflow

if TYPE_CHECKING:
    from sim.state import SimState

ARCH = "nemotron_h"  # the architecture the model listings give the simulated LLM


def overflow_message(input_tokens: int, context_length: int) -> str:
    """#2322's wording (LM Studio 0.4.21) for an input that does not fit."""
    return (
        f"Input does not fit in context length. The input has {input_tokens} tokens, "
        f"but the context length only supports {context_length} tokens."
    )


def refuse_overflow(state: SimState, input_tokens: int) -> dict[str, Any] | None:
    """Raise the 400, or return the 200 form's body, when the input alone overflows."""
    limit = state.config.context_length
    if limit is None or input_tokens <= limit:
        return None
    form = state.config.overflow
    if form is Overflow.MID_GENERATION:
        return None  # it fails at its first token, in the stream
    state.counters.overflows += 1
    if form is Overflow.BAD_REQUEST:
        raise ContextOverflow(input_tokens, limit)
    message = overflow_message(input_tokens, limit)
    return {"error": {"message": message}, "message": message}


def tokens_before_exhaustion(state: SimState, input_tokens: int, output_tokens: int) -> int | None:
    """In mid-generation form: how many tokens decode before the context fills (None: all)."""
    limit = state.config.context_length
    if limit is None or state.config.overflow is not Overflow.MID_GENERATION:
        return None
    if input_tokens + output_tokens <= limit:
        return None
    return max(0, limit - input_tokens)


def exhausted(state: SimState) -> ContextExhausted:
    """The mid-generation error, counted."""
    state.counters.overflows += 1
    return ContextExhausted(state.config.context_length or 0, ARCH)


def error_frame(state: SimState, data: dict[str, Any]) -> bytes:
    """An SSE error frame; `--bare-error-frames` leaves out the `event:` line."""
    encoded = b"data: %s\n\n" % msgspec.json.encode(data)
    return encoded if state.config.bare_error_frames else b"event: error\n" + encoded
