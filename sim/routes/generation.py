"""The generation endpoints: OpenAI Responses and chat completions."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post

from sim.chat import build_chat_call, complete_chat, stream_chat
from sim.errors import json_response
from sim.responses_objects import build_call
from sim.responses_stream import complete_response, stream_response
from sim.routes.common import admit, event_stream, sim_state, unless_disconnected
from sim.schemas import ChatBody, ResponsesBody, decode_body


class GenerationController(Controller):
    """`POST /v1/responses` and `POST /v1/chat/completions`, streamed or not."""

    @post("/v1/responses", status_code=200)
    async def create_response(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """A response; `stream: true` sends Responses API events."""
        state = sim_state(request)
        body = decode_body(await request.body(), ResponsesBody)
        call = build_call(state, body)
        place = admit(state)
        if body.stream:
            return event_stream(stream_response(state, call, place), place)
        return json_response(
            await unless_disconnected(request, complete_response(state, call, place))
        )

    @post("/v1/chat/completions", status_code=200)
    async def create_chat_completion(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """A chat completion; `stream: true` sends `chat.completion.chunk` frames."""
        state = sim_state(request)
        body = decode_body(await request.body(), ChatBody)
        call = build_chat_call(state, body)
        place = admit(state)
        if body.stream:
            return event_stream(stream_chat(state, call, place), place)
        return json_response(await unless_disconnected(request, complete_chat(state, call, place)))
