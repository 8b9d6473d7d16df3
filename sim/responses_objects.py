"""Objects of the OpenAI Responses API as LM Studio returns them: response, output items, usage."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.engine import Plan, is_cut, make_plan
from sim.errors import PreviousResponseUnknown
from sim.schemas import ResponsesBody, prompt_of
from sim.text import count_tokens

if TYPE_CHECKING:
    from sim.state import SimState


def _new_id(prefix: str, hex_bytes: int = 12) -> str:
    return prefix + secrets.token_hex(hex_bytes)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCall:
    """One `POST /v1/responses`, with the ids and settings its events repeat."""

    plan: Plan
    model: str
    previous_response_id: str | None
    store: bool
    # The system prompt and sampling, echoed in the response object as the real servers do.
    instructions: str | None = None
    temperature: float | None = None
    # Input tokens of the system prompt: prefilled, but not carried into a follow-up.
    instruction_tokens: int = 0
    max_output_tokens: int | None
    reasoning_effort: str | None
    # `--incomplete-at-limit`: an answer cut by max_output_tokens is "incomplete", as OpenAI's
    # Responses API reports it (`incomplete_details.reason: "max_output_tokens"`).
    incomplete: bool = False
    # LM Studio's ids are "resp_" + 48 hex digits (lmstudio-bug-tracker#1188).
    response_id: str = field(default_factory=lambda: _new_id("resp_", 24))
    message_id: str = field(default_factory=lambda: _new_id("msg_"))
    reasoning_id: str = field(default_factory=lambda: _new_id("rs_"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    @property
    def message_index(self) -> int:
        """`output_index` of the message item: it follows the reasoning item when there is one."""
        return 1 if self.plan.script.reasoning else 0


def build_call(state: SimState, body: ResponsesBody) -> ResponseCall:
    """Resolve the stored conversation and size the generation; 400 on a bad request."""
    prompt, chars = prompt_of(body.messages(), "input")
    # The system prompt is prefilled with the input, as a real model server does.
    instruction_tokens = count_tokens(len(body.instructions)) if body.instructions else 0
    input_tokens = (
        count_tokens(chars) + instruction_tokens + _stored_context(state, body.previous_response_id)
    )
    reasoning = body.wants_reasoning()
    plan = make_plan(state, prompt, input_tokens, body.max_output_tokens, reasoning=reasoning)
    effort = (body.reasoning.effort if body.reasoning else None) or "medium"
    cut = is_cut(state.config, body.max_output_tokens, reasoning=reasoning)
    return ResponseCall(
        incomplete=state.config.incomplete_at_limit and cut,
        plan=plan,
        model=state.config.model,
        previous_response_id=body.previous_response_id,
        store=body.store,
        max_output_tokens=body.max_output_tokens,
        reasoning_effort=effort if reasoning else None,
        instructions=body.instructions,
        temperature=body.temperature,
        instruction_tokens=instruction_tokens,
    )


def _stored_context(state: SimState, previous_response_id: str | None) -> int:
    if previous_response_id is None:
        return 0
    tokens = state.store.context_tokens(previous_response_id)
    if tokens is None:
        raise PreviousResponseUnknown(previous_response_id)
    return tokens


def remember(state: SimState, call: ResponseCall) -> None:
    """Store a completed response so a follow-up can name it (unless `store` is false)."""
    if call.store:
        conversation = max(0, call.plan.input_tokens - call.instruction_tokens)
        state.store.put(call.response_id, conversation + len(call.plan.script.answer))


def response_object(call: ResponseCall, *, completed: bool) -> dict[str, Any]:
    """The `response` of `response.created` / `in_progress` (empty) or `completed` (full)."""
    return {
        "id": call.response_id,
        "object": "response",
        "created_at": call.created_at,
        "status": _status(call, completed=completed),
        "model": call.model,
        "instructions": call.instructions,
        "temperature": 1.0 if call.temperature is None else call.temperature,
        "output": final_output(call) if completed else [],
        "previous_response_id": call.previous_response_id,
        "store": call.store,
        "max_output_tokens": call.max_output_tokens,
        "reasoning": {"effort": call.reasoning_effort, "summary": None},
        "text": {"format": {"type": "text"}},
        "tools": [],
        "tool_choice": "auto",
        "error": None,
        "incomplete_details": _incomplete_details(call, completed=completed),
        "usage": usage(call.plan) if completed else None,
    }


def _status(call: ResponseCall, *, completed: bool) -> str:
    if not completed:
        return "in_progress"
    return "incomplete" if call.incomplete else "completed"


def _incomplete_details(call: ResponseCall, *, completed: bool) -> dict[str, str] | None:
    return {"reason": "max_output_tokens"} if completed and call.incomplete else None


def usage(plan: Plan) -> dict[str, Any]:
    """Token usage; output tokens include the reasoning tokens, as OpenAI counts them."""
    return {
        "input_tokens": plan.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": plan.output_tokens,
        "output_tokens_details": {"reasoning_tokens": len(plan.script.reasoning)},
        "total_tokens": plan.input_tokens + plan.output_tokens,
    }


def final_output(call: ResponseCall) -> list[dict[str, Any]]:
    """The completed output items: reasoning (when asked for), then the assistant message."""
    script = call.plan.script
    items = [message_item(call, "".join(script.answer), completed=True)] if script.answer else []
    if not script.reasoning:
        return items
    return [reasoning_item(call, "".join(script.reasoning), completed=True), *items]


def reasoning_item(call: ResponseCall, text: str, *, completed: bool) -> dict[str, Any]:
    """A reasoning output item; its text is empty while in progress."""
    content = [{"type": "reasoning_text", "text": text}] if completed else []
    status = "completed" if completed else "in_progress"
    return {
        "id": call.reasoning_id,
        "type": "reasoning",
        "summary": [],
        "content": content,
        "status": status,
    }


def message_item(call: ResponseCall, text: str, *, completed: bool) -> dict[str, Any]:
    """The assistant message item; no content part while in progress."""
    return {
        "id": call.message_id,
        "type": "message",
        "status": _status(call, completed=completed),
        "role": "assistant",
        "content": [output_text_part(text)] if completed else [],
    }


def output_text_part(text: str) -> dict[str, Any]:
    """An `output_text` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
