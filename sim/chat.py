"""OpenAI chat completions as LM Studio serves them, streamed (`chat.completion.chunk`) or not."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from sim.context import error_frame
from sim.engine import Generation, Plan, generate_all, is_cut, make_plan, paced
from sim.errors import ContextExhausted
from sim.schemas import ChatBody, prompt_of
from sim.text import count_tokens, json_string

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from sim.capacity import Reservation
    from sim.state import SimState

DONE = b"data: [DONE]\n\n"
_PLACEHOLDER = "<piece>"  # split point of the pre-encoded delta chunk


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatCall:
    """One `POST /v1/chat/completions`."""

    plan: Plan
    model: str
    include_usage: bool
    finish_reason: str
    completion_id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(10))
    created: int = field(default_factory=lambda: int(time.time()))

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        """One `data:` frame holding a `chat.completion.chunk`."""
        body = {**self.header("chat.completion.chunk"), "choices": choices, **extra}
        return b"data: %s\n\n" % msgspec.json.encode(body)

    def usage(self) -> dict[str, int]:
        """Usage in chat completion terms."""
        prompt, completion = self.plan.input_tokens, self.plan.output_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def header(self, object_type: str) -> dict[str, Any]:
        """The fields every chunk and the final object start with."""
        # LM Studio repeats the model id as `system_fingerprint` (lmstudio-bug-tracker#378).
        return {
            "id": self.completion_id,
            "object": object_type,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.model,
        }


def build_chat_call(state: SimState, body: ChatBody) -> ChatCall:
    """Size the generation; a limit below the natural length cuts it (`length`)."""
    prompt, chars = prompt_of(body.messages or [], "messages")
    limit = body.token_limit()
    plan = make_plan(state, prompt, count_tokens(chars), limit, reasoning=False)
    finish_reason = "length" if is_cut(state.config, limit, reasoning=False) else "stop"
    return ChatCall(
        plan=plan,
        model=state.config.model,
        include_usage=body.include_usage(),
        finish_reason=finish_reason,
    )


def delta_encoder(call: ChatCall) -> Callable[[str], bytes]:
    """Encodes one content delta from pre-encoded halves; LM Studio repeats the role each time."""
    delta = {"role": "assistant", "content": _PLACEHOLDER}
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    head, tail = call.chunk([choice]).split(json_string(_PLACEHOLDER), 1)

    def encode(piece: str) -> bytes:
        return head + json_string(piece) + tail

    return encode


async def stream_chat(
    state: SimState, call: ChatCall, reservation: Reservation
) -> AsyncIterator[bytes]:
    """Content chunks, the finish chunk, the usage chunk when asked for, then `[DONE]`."""
    try:
        async with Generation(state, call.plan, reservation) as generation:
            await generation.prefill()
            async for frame in paced(generation, call.plan.script.answer, delta_encoder(call)):
                yield frame
            generation.finish()
    except ContextExhausted as failure:
        # #2322's error frame shape: the message both inside `error` and beside it.
        body = {"error": {"message": failure.message}, "message": failure.message}
        yield error_frame(state, body)
        return
    finish = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": call.finish_reason}
    usage = call.chunk([], usage=call.usage()) if call.include_usage else b""
    yield call.chunk([finish]) + usage + DONE


async def complete_chat(
    state: SimState, call: ChatCall, reservation: Reservation
) -> dict[str, Any]:
    """Run the generation to its end and return the `chat.completion` object."""
    await generate_all(state, call.plan, reservation)
    message = {"role": "assistant", "content": "".join(call.plan.script.answer)}
    choice = {"index": 0, "logprobs": None, "finish_reason": call.finish_reason, "message": message}
    return {**call.header("chat.completion"), "choices": [choice], "usage": call.usage()}
