"""Server-sent events of a streamed response, and the same generation run without streaming."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from sim.context import error_frame
from sim.engine import Generation, generate_all, paced
from sim.errors import ContextExhausted
from sim.responses_objects import (
    ResponseCall,
    answer_item,
    output_text_part,
    reasoning_item,
    response_object,
)
from sim.responses_request import remember
from sim.text import json_string

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from sim.capacity import Reservation
    from sim.state import SimState
    from sim.tool_calls import FunctionCall


class ResponseFrames:
    """Encodes one response's SSE frames, numbering them in order; deltas from pre-encoded bytes."""

    def __init__(self, call: ResponseCall) -> None:
        self._call = call
        self._sequence = -1
        self.reasoning_delta = self._delta_encoder(
            "response.reasoning_text.delta", call.reasoning_id, 0, b'"content_index":0,'
        )
        if call.function_call is None:
            kind, item_id, extra = (
                "output_text",
                call.message_id,
                b'"content_index":0,"logprobs":[],',
            )
        else:  # OpenAI's ResponseFunctionCallArgumentsDeltaEvent: no content part, no logprobs
            kind, item_id, extra = "function_call_arguments", call.function_call.item_id, b""
        self.answer_delta = self._delta_encoder(
            f"response.{kind}.delta", item_id, call.answer_index, extra
        )

    def event(self, kind: str, **fields: Any) -> bytes:
        """One `event: <kind>` frame whose data carries `type` and `sequence_number`."""
        fields["type"] = kind
        fields["sequence_number"] = self._next()
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), msgspec.json.encode(fields))

    def opening(self) -> bytes:
        """`response.created` then `response.in_progress`."""
        empty = response_object(self._call, completed=False)
        return self.event("response.created", response=empty) + self.event(
            "response.in_progress", response=empty
        )

    def reasoning_opening(self) -> bytes:
        """The reasoning item appears."""
        item = reasoning_item(self._call, "", completed=False)
        return self.event("response.output_item.added", output_index=0, item=item)

    def reasoning_closing(self) -> bytes:
        """The full reasoning text, then the finished reasoning item."""
        text = "".join(self._call.plan.script.reasoning)
        ids = {"item_id": self._call.reasoning_id, "output_index": 0, "content_index": 0}
        item = reasoning_item(self._call, text, completed=True)
        return self.event("response.reasoning_text.done", text=text, **ids) + self.event(
            "response.output_item.done", output_index=0, item=item
        )

    def answer_opening(self) -> bytes:
        """The message item and its empty text part appear, or the function call item."""
        index = self._call.answer_index
        item = answer_item(self._call, "", completed=False)
        added = self.event("response.output_item.added", output_index=index, item=item)
        if self._call.function_call is not None:
            return added
        part = self.event(
            "response.content_part.added", part=output_text_part(""), **self._text_ids()
        )
        return added + part

    def closing(self) -> bytes:
        """The answer's item closes, then `response.completed` (or `.incomplete`)."""
        final = "response.incomplete" if self._call.incomplete else "response.completed"
        frames = [self._answer_closing()] if self._call.plan.script.answer else []
        frames.append(self.event(final, response=response_object(self._call, completed=True)))
        return b"".join(frames)  # no answer item when the reasoning spent the whole budget

    def _answer_closing(self) -> bytes:
        text = "".join(self._call.plan.script.answer)
        function = self._call.function_call
        frames = self._text_done(text) if function is None else self._arguments_done(function, text)
        item = answer_item(self._call, text, completed=True)
        index = self._call.answer_index
        return frames + self.event("response.output_item.done", output_index=index, item=item)

    def _arguments_done(self, function: FunctionCall, arguments: str) -> bytes:
        # OpenAI's order: the arguments' `.done` (item id, index, whole arguments), then the
        # item's; LM Studio serves the Responses API as OpenAI documents it (docs responses.md).
        ids = {"item_id": function.item_id, "output_index": self._call.answer_index}
        return self.event("response.function_call_arguments.done", arguments=arguments, **ids)

    def _text_done(self, text: str) -> bytes:
        done = self.event("response.output_text.done", text=text, logprobs=[], **self._text_ids())
        part = output_text_part(text)
        return done + self.event("response.content_part.done", part=part, **self._text_ids())

    def error(self, message: str) -> dict[str, Any]:
        """An `error` event's data, as OpenAI's Responses streaming API shapes it."""
        return {
            "type": "error",
            "code": None,
            "message": message,
            "param": None,
            "sequence_number": self._next(),
        }

    def _text_ids(self) -> dict[str, Any]:
        index = self._call.answer_index
        return {"item_id": self._call.message_id, "output_index": index, "content_index": 0}

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    def _delta_encoder(
        self, kind: str, item_id: str, output_index: int, extra: bytes
    ) -> Callable[[str], bytes]:
        head = (
            b'event: %s\ndata: {"type":"%s","item_id":"%s","output_index":%d,'
            % (kind.encode(), kind.encode(), item_id.encode(), output_index)
            + extra
            + b'"delta":'
        )

        def encode(piece: str) -> bytes:
            return head + json_string(piece) + b',"sequence_number":%d}\n\n' % self._next()

        return encode


async def stream_response(
    state: SimState, call: ResponseCall, reservation: Reservation
) -> AsyncIterator[bytes]:
    """The SSE frames of one response, paced by the capacity model; stops when cancelled."""
    frames = ResponseFrames(call)
    try:
        async with Generation(state, call.plan, reservation) as generation:
            yield frames.opening()
            await generation.prefill()
            async for frame in _reasoning(state, generation, frames, call):
                yield frame
            if call.plan.script.answer:
                yield frames.answer_opening()
            async for frame in paced(generation, call.plan.script.answer, frames.answer_delta):
                yield frame
            generation.finish()
    except ContextExhausted as failure:
        yield error_frame(state, frames.error(failure.message))
        return
    remember(state, call)
    yield frames.closing()


async def _reasoning(
    state: SimState, generation: Generation, frames: ResponseFrames, call: ResponseCall
) -> AsyncIterator[bytes]:
    reasoning = call.plan.script.reasoning
    if not reasoning:
        return
    yield frames.reasoning_opening()
    if state.config.reasoning_done_only:
        # LM Studio sends the whole reasoning as one `response.reasoning_text.done`, no deltas
        # (earendil-works/pi#4191, #4193; no raw stream of it is public, see
        # tests/upstream/captures). The item's events stay around it: the Responses API opens
        # an item with `response.output_item.added` before the events naming its `item_id`,
        # and pi's handler (a thinking block made on that event, filled from `summary` at
        # `output_item.done`) shows the reported "no thinking" with them too.
        for _ in reasoning:
            await generation.next_token()  # decoded all the same, just not sent
    else:
        async for frame in paced(generation, reasoning, frames.reasoning_delta):
            yield frame
    yield frames.reasoning_closing()


async def complete_response(
    state: SimState, call: ResponseCall, reservation: Reservation
) -> dict[str, Any]:
    """Run the generation to its end and return the final response object."""
    await generate_all(state, call.plan, reservation)
    remember(state, call)
    return response_object(call, completed=True)
