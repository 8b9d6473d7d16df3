"""From a `POST /v1/responses` body to the call the sim will answer, and back into the store.

A follow-up names the stored conversation with `previous_response_id`; its input may carry
`function_call_output` items answering the stored response's function calls (OpenAI's
Responses API; LM Studio: "Stateful interactions via `previous_response_id`. Custom tool
calling", docs `1_developer/api-changelog.md`, 0.3.29). The stored conversation counts as
input, so an overgrown one is refused as any other (`sim/context.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.engine import is_cut, make_plan
from sim.errors import InvalidField, PreviousResponseUnknown, ToolCallUnknown
from sim.responses_objects import ResponseCall
from sim.schemas import content_text, prompt_of
from sim.state import StoredResponse
from sim.text import count_tokens
from sim.tool_calls import Reply, Turn, choose_reply
from sim.tool_requests import read_tools

if TYPE_CHECKING:
    from sim.schemas import InputItem, ResponsesBody
    from sim.state import SimState
    from sim.tool_requests import ToolRequest


def build_call(state: SimState, body: ResponsesBody) -> ResponseCall:
    """Resolve the stored conversation, choose the reply and size it; 400 on a bad request."""
    tools = read_tools(body)
    stored = _stored(state, body.previous_response_id)
    items = body.items()
    outputs = _outputs(items, stored)
    state.counters.tool_outputs += len(outputs)
    messages = [item for item in items if item.type == "message"]
    prompt, chars = prompt_of(messages, "input", _other_chars(items))
    question = prompt if messages else (stored.question if stored else "")
    reply = choose_reply(state, tools, Turn(question, tuple(outputs)))
    # The system prompt and the tools are prefilled with the input, as a real server does.
    instruction_tokens = count_tokens(len(body.instructions)) if body.instructions else 0
    prefix = instruction_tokens + tools.tokens
    context = stored.context_tokens if stored else 0
    return _call(
        state,
        body,
        reply,
        conversation_tokens=count_tokens(chars) + context,
        prefix_tokens=prefix,
        tools=tools,
        question=question,
    )


def _call(
    state: SimState,
    body: ResponsesBody,
    reply: Reply,
    *,
    conversation_tokens: int,
    prefix_tokens: int,
    tools: ToolRequest,
    question: str,
) -> ResponseCall:
    reasoning = body.wants_reasoning()
    limit = body.max_output_tokens
    input_tokens = conversation_tokens + prefix_tokens
    plan = make_plan(
        state,
        question,
        input_tokens,
        limit,
        reasoning=reasoning,
        opening=reply.opening,
        fixed=reply.pieces,
    )
    natural = None if reply.pieces is None else len(reply.pieces)
    cut = is_cut(state.config, limit, reasoning=reasoning, natural=natural)
    effort = (body.reasoning.effort if body.reasoning else None) or "medium"
    return ResponseCall(
        incomplete=state.config.incomplete_at_limit and cut,
        plan=plan,
        model=state.config.model,
        previous_response_id=body.previous_response_id,
        store=body.store,
        max_output_tokens=limit,
        reasoning_effort=effort if reasoning else None,
        instructions=body.instructions,
        temperature=body.temperature,
        instruction_tokens=prefix_tokens,
        tools=tools,
        function_call=reply.call,
        question=question,
    )


def _stored(state: SimState, previous_response_id: str | None) -> StoredResponse | None:
    if previous_response_id is None:
        return None
    stored = state.store.get(previous_response_id)
    if stored is None:
        raise PreviousResponseUnknown(previous_response_id)
    return stored


def _outputs(items: list[InputItem], stored: StoredResponse | None) -> list[str]:
    """The texts of the function outputs sent back, each answering a known call."""
    known = {item.call_id for item in items if item.type == "function_call" and item.call_id}
    known.update(stored.call_ids if stored else ())
    outputs = []
    for index, item in enumerate(items):
        if item.type != "function_call_output":
            continue
        if not item.call_id:
            raise InvalidField("Required", f"input.{index}.call_id", "missing_required_parameter")
        if item.call_id not in known:
            raise ToolCallUnknown(item.call_id)
        outputs.append(content_text(item.output))
    return outputs


def _other_chars(items: list[InputItem]) -> int:
    """Characters of the input that are not messages: calls repeated and outputs sent back."""
    return sum(
        len(content_text(item.output)) + len(item.name or "") + len(item.arguments or "")
        for item in items
        if item.type != "message"
    )


def remember(state: SimState, call: ResponseCall) -> None:
    """Count a finished call and store the response so a follow-up can name it (unless `store`
    is false)."""
    function = call.function_call
    if function is not None:
        state.counters.tool_calls += 1
    if call.store:
        conversation = max(0, call.plan.input_tokens - call.instruction_tokens)
        stored = StoredResponse(
            context_tokens=conversation + len(call.plan.script.answer),
            call_ids=(function.call_id,) if function is not None else (),
            question=call.question,
        )
        state.store.put(call.response_id, stored)
