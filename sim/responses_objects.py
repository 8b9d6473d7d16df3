"""Objects of the OpenAI Responses API as LM Studio returns them: response, output items, usage."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.tool_requests import NO_TOOLS, ToolRequest

if TYPE_CHECKING:
    from sim.engine import Plan
    from sim.tool_calls import FunctionCall


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
    # Input tokens of the system prompt and the tools: prefilled, not carried into a follow-up.
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
    tools: ToolRequest = NO_TOOLS
    # Set when the answer is a function call: `plan.script.answer` is then its arguments.
    function_call: FunctionCall | None = None
    question: str = ""  # the user's last words, kept with the stored conversation

    @property
    def answer_index(self) -> int:
        """`output_index` of the message or function call: after the reasoning item, if any."""
        return 1 if self.plan.script.reasoning else 0


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
        "tools": list(call.tools.echo),
        "tool_choice": call.tools.choice,
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
    """The completed output items: reasoning (when asked for), then the assistant message or
    the function call (none when the reasoning spent the whole budget)."""
    script = call.plan.script
    items = [answer_item(call, "".join(script.answer), completed=True)] if script.answer else []
    if not script.reasoning:
        return items
    return [reasoning_item(call, "".join(script.reasoning), completed=True), *items]


def answer_item(call: ResponseCall, text: str, *, completed: bool) -> dict[str, Any]:
    """The message, or the function call whose arguments `text` is."""
    if call.function_call is None:
        return message_item(call, text, completed=completed)
    return function_call_item(call, call.function_call, text, completed=completed)


def function_call_item(
    call: ResponseCall, function: FunctionCall, arguments: str, *, completed: bool
) -> dict[str, Any]:
    """A `function_call` item, its fields in the order LM Studio sends them (ids as in
    ahmedibrahim085/lmstudio-bridge-enhanced's capture, RESPONSES_API_IMPLEMENTATION_GUIDE.md)."""
    return {
        "id": function.item_id,
        "call_id": function.call_id,
        "type": "function_call",
        "name": function.name,
        "arguments": arguments,
        "status": _status(call, completed=completed),
    }


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
